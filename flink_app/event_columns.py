"""The request event (schema v1) as Flink SQL columns over one raw record.

Records are read whole (``'format'='raw'``, one STRING column) so that nothing the format could
reject is dropped silently. Each record is parsed once, in the JVM, by the job's function
``PULSE_EVENT_FIELDS`` (``jars/src/main/java/dev/pulse/flink/EventFields.java``, in the connector
JAR): it returns whether the record is a JSON object and each field's text exactly as
``JSON_VALUE`` would (NULL for bad JSON, a missing field, a JSON null, an object or an array), and
``TRY_CAST`` types them, so that bad JSON, a missing field or a wrong type still give NULL and
:mod:`flink_app.stages` counts and sets those rows aside with the same reasons as before. The
fields are computed columns of the source table: computed once, before the watermark, in one
projection shared by every branch of the plan (a view would be merged into each branch and parse
the record again there). Flink 2.2 calls the function once per field read from it; the function
keeps its last record and result, so that one row is parsed once.
"""

from __future__ import annotations

from dataclasses import dataclass

from flink_app.jvm_functions import EVENT_FIELDS

RAW_COLUMN = "line"

# Event times outside [2000-01-01, 2100-01-01) are treated as garbage: one absurd timestamp in
# the future would otherwise push the watermark ahead and make every later event late.
MIN_EVENT_MS = 946_684_800_000
MAX_EVENT_MS = 4_102_444_800_000
# What an unusable timestamp maps to: far behind any watermark, so it never moves one.
INVALID_EVENT_TIME_MS = 0


@dataclass(frozen=True)
class ComputedColumn:
    name: str
    sql_type: str
    expression: str

    def ddl(self) -> str:
        return f"`{self.name}` AS {self.expression}"


# The JVM function that parses a record once (flink_app/jvm_functions.py); its result's fields are
# read by name below (EventFields.RESULT_TYPE declares them).
FIELDS_FUNCTION = EVENT_FIELDS.name


def _parsed(name: str) -> str:
    return f"{FIELDS_FUNCTION}(`{RAW_COLUMN}`).`{name}`"


def _field(path: str, sql_type: str | None = None) -> str:
    value = _parsed(path)  # the text JSON_VALUE(line, '$.<path>') gives
    return f"TRY_CAST({value} AS {sql_type})" if sql_type else value


# The fields the stages use, in schema v1's names (``id`` for deduplication), and whether the record
# is a JSON object at all (the reason of a rejected record). Others (method, path, user_agent,
# bytes_out) are not needed by any window: the parse skips them.
EVENT_COLUMNS: tuple[ComputedColumn, ...] = (
    # The record's length in characters (the oversized check), CHAR_LENGTH(line) from the parse: there
    # it is not counted when every byte is one character, where each branch's own CHAR_LENGTH scanned
    # the whole record again (JFR: a tenth of the SQL stages' CPU).
    ComputedColumn("record_chars", "INT", _parsed("chars")),
    ComputedColumn("json_object", "BOOLEAN", _parsed("is_object")),
    ComputedColumn("id", "STRING", _field("id")),
    ComputedColumn("route", "STRING", _field("route")),
    ComputedColumn("status", "INT", _field("status", "INT")),
    ComputedColumn("latency_ms", "DOUBLE", _field("latency_ms", "DOUBLE")),
    ComputedColumn("client_ip", "STRING", _field("client_ip")),
    ComputedColumn(
        "event_time",
        "TIMESTAMP_LTZ(3)",
        "TO_TIMESTAMP_LTZ(COALESCE(CASE WHEN {ts} >= {lo} AND {ts} < {hi} THEN {ts} END, {bad}), 3)".format(
            ts=_field("ts", "BIGINT"), lo=MIN_EVENT_MS, hi=MAX_EVENT_MS, bad=INVALID_EVENT_TIME_MS
        ),
    ),
)


MAX_INTERVAL_DAYS = 99  # DAY TO SECOND's default day precision is two digits


def sql_interval(ms: int) -> str:
    """A Flink SQL interval literal of exactly ``ms`` milliseconds, from one millisecond to 99 days.

    ``INTERVAL 'n' SECOND`` allows two digits only (``'300' SECOND`` fails to parse, and
    ``SECOND(5)`` is refused), and a fractional literal such as ``'0.001' SECOND`` evaluates to
    zero; ``DAY TO SECOND(3)`` holds any whole number of milliseconds in that range.
    """
    if ms < 0 or ms >= (MAX_INTERVAL_DAYS + 1) * 86_400_000:
        raise ValueError(f"interval of {ms} ms is outside 0 .. {MAX_INTERVAL_DAYS} days")
    seconds, millis = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}' DAY TO SECOND(3)"


def watermark_expression(watermark_delay_s: int) -> str:
    """The newest event time less the delay and one millisecond.

    A window ``[start, end)`` fires once the watermark reaches ``end - 1``, i.e. once an event at
    least ``watermark.delay.s`` past its end has arrived; a timer at ``t`` fires once an event is
    more than the delay past ``t``. The same convention as Flink's bounded out-of-orderness strategy
    and as the pure-Python backtest (:mod:`flink_app.detect.backtest`).
    """
    return f"`event_time` - {sql_interval(watermark_delay_s * 1000 + 1)}"


def columns_ddl(watermark_delay_s: int) -> str:
    """The column list of a raw source table: the raw record, the parsed fields, the watermark."""
    lines = [f"`{RAW_COLUMN}` STRING"]
    lines += [column.ddl() for column in EVENT_COLUMNS]
    lines.append(f"WATERMARK FOR `event_time` AS {watermark_expression(watermark_delay_s)}")
    return ",\n  ".join(lines)
