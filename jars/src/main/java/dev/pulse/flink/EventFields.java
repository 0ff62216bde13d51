package dev.pulse.flink;

import org.apache.flink.metrics.Counter;
import org.apache.flink.table.annotation.DataTypeHint;
import org.apache.flink.table.data.GenericRowData;
import org.apache.flink.table.data.RowData;
import org.apache.flink.table.data.StringData;
import org.apache.flink.table.data.binary.BinaryStringData;
import org.apache.flink.table.functions.FunctionContext;
import org.apache.flink.table.functions.ScalarFunction;

import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonFactory;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonParser;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.core.JsonToken;

import java.io.IOException;

/**
 * The fields of one request event (schema v1), read from its raw JSON record in one parse.
 *
 * <p>{@code PULSE_EVENT_FIELDS(line)} returns {@code ROW<is_object, id, route, status, latency_ms,
 * client_ip, ts, chars>}: whether the record is a JSON object (what {@code line IS JSON OBJECT} says), and
 * each field as {@code JSON_VALUE(line, '$.<field>')} gives it: the text of a scalar (a number as
 * Jackson reads it with big decimals for fractions, as Flink's JSON functions do), NULL for a missing
 * field, a JSON null, an object or an array, and NULL for every field of a record that is not a JSON
 * object or not JSON at all; and {@code chars}, what {@code CHAR_LENGTH(line)} gives (the record's
 * length for the size check, not counted when every byte is a character). The job casts and validates these strings in SQL, as it did with
 * {@code JSON_VALUE}, so that what is rejected, and why, does not change; a Flink test checks both
 * against each other on records of every kind.
 *
 * <p>Flink 2.2 generates a separate call for each field read from the result ({@code f(line).id},
 * {@code f(line).route}, ...), so the function keeps a private copy of its last input and its
 * result: the calls for one row parse it once. It is deterministic (the same record always gives
 * the same row), so the cache can only ever save work; comparing with a copy, never with the
 * caller's string, keeps it right when the caller reuses objects. The {@code
 * kinesisanalytics.parsedRecords} counter counts real parses.
 */
public class EventFields extends ScalarFunction {

    /** The event fields of the result row, in order after {@code is_object}; {@code chars} comes last. */
    static final String[] FIELDS = {"id", "route", "status", "latency_ms", "client_ip", "ts"};

    public static final String RESULT_TYPE =
            "ROW<is_object BOOLEAN NOT NULL, id STRING, route STRING, status STRING,"
                    + " latency_ms STRING, client_ip STRING, ts STRING, chars INT NOT NULL>";

    // Default features and read constraints, as the ObjectMapper behind Flink's JSON functions.
    private static final JsonFactory JSON = new JsonFactory();

    private transient BinaryStringData lastLine;
    private transient RowData lastFields;
    private transient Counter parsed;

    @Override
    public void open(FunctionContext context) throws Exception {
        parsed = context.getMetricGroup().addGroup("kinesisanalytics").counter("parsedRecords");
    }

    public @DataTypeHint(value = RESULT_TYPE, bridgedTo = RowData.class) RowData eval(
            @DataTypeHint(value = "STRING", bridgedTo = StringData.class) StringData line) {
        if (line == null) {
            return null;
        }
        if (line.equals(lastLine)) {
            return lastFields;
        }
        byte[] bytes = line.toBytes();
        // A private copy: with object reuse the caller's string may point at memory that the next
        // record overwrites, so the cache must never compare against it.
        BinaryStringData copy = BinaryStringData.fromBytes(bytes);
        RowData fields = parse(copy, bytes);
        lastLine = copy;
        lastFields = fields;
        if (parsed != null) {
            parsed.inc();
        }
        return fields;
    }

    /** The fields of one record, whose UTF-8 bytes are {@code bytes} (no cache, no metric). */
    static RowData parse(BinaryStringData line, byte[] bytes) {
        String[] values = new String[FIELDS.length];
        boolean ascii = ascii(bytes);
        boolean object;
        try {
            object = read(parser(line, bytes, ascii), values);
        } catch (IOException | RuntimeException e) {
            object = false; // not JSON, or not readable as Flink's JSON functions read it
        }
        GenericRowData row = new GenericRowData(FIELDS.length + 2);
        row.setField(0, object);
        row.setField(FIELDS.length + 1, ascii ? bytes.length : line.numChars());
        for (int i = 0; i < FIELDS.length; i++) {
            // A record that is not a JSON object has no fields (JSON_VALUE gives NULL on any error).
            row.setField(i + 1, object && values[i] != null ? StringData.fromString(values[i]) : null);
        }
        return row;
    }

    private static JsonParser parser(StringData line, byte[] bytes, boolean ascii) throws IOException {
        if (ascii) {
            // ASCII reads the same as bytes or as text; anything else is decoded as Flink does for
            // JSON_VALUE (StringData.toString), so that malformed UTF-8 is treated alike.
            return JSON.createParser(bytes);
        }
        return JSON.createParser(line.toString());
    }

    private static boolean ascii(byte[] bytes) {
        for (byte b : bytes) {
            if (b < 0) {
                return false;
            }
        }
        return true;
    }

    /**
     * Reads one JSON value to its end (what follows it is ignored, as Flink's JSON functions ignore
     * it) and fills {@code values} from its top-level members when it is an object; returns whether
     * it is one. Whatever makes Flink's JSON functions fail makes this throw: a syntax error or a
     * read limit anywhere in the value, and a number that cannot be read as Flink reads every number
     * of the record (an integer, or a big decimal for a fraction).
     */
    private static boolean read(JsonParser p, String[] values) throws IOException {
        try (p) {
            JsonToken token = p.nextToken();
            if (token == null) {
                throw new IOException("no content");
            }
            if (token != JsonToken.START_OBJECT) {
                return false; // a scalar or an array: not an object, so no fields whatever follows
            }
            int depth = 1;
            int member = -1; // index of the current top-level member in FIELDS, -1 if not wanted
            while (true) {
                token = p.nextToken();
                if (token == null) {
                    throw new IOException("unterminated object");
                }
                String text = null;
                switch (token) {
                    case FIELD_NAME:
                        if (depth == 1) {
                            member = index(p.currentName());
                        }
                        continue;
                    case START_OBJECT:
                    case START_ARRAY:
                        if (depth == 1 && member >= 0) {
                            values[member] = null; // not a scalar: JSON_VALUE gives NULL in lax mode
                        }
                        depth++;
                        continue;
                    case END_OBJECT:
                    case END_ARRAY:
                        if (--depth == 0) {
                            return true;
                        }
                        continue;
                    case VALUE_STRING:
                        text = depth == 1 && member >= 0 ? p.getText() : null;
                        break;
                    case VALUE_NUMBER_INT:
                        text = p.getNumberValue().toString();
                        break;
                    case VALUE_NUMBER_FLOAT:
                        text = p.getDecimalValue().toString();
                        break;
                    case VALUE_TRUE:
                        text = "true";
                        break;
                    case VALUE_FALSE:
                        text = "false";
                        break;
                    default: // VALUE_NULL
                        break;
                }
                if (depth == 1 && member >= 0) {
                    values[member] = text; // a repeated member: the last one counts
                }
            }
        }
    }

    private static int index(String name) {
        for (int i = 0; i < FIELDS.length; i++) {
            if (FIELDS[i].equals(name)) {
                return i;
            }
        }
        return -1;
    }
}
