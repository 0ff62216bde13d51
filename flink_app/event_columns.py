"""The request event (schema v1) as Flink SQL columns over one raw record.

Records are read whole (``'format'='raw'``, one STRING column) so that nothing the format could
reject is dropped silently: every field is extracted with ``JSON_VALUE`` and ``TRY_CAST``, which
give NULL for bad JSON, a missing field or a wrong type, and :mod:`flink_app.stages` counts and
sets those rows aside. The fields are computed columns of the source table: computed once, before
the watermark, and shared by every branch of the plan (a view would be merged into each branch
and parse the JSON again there).
"""

from __future__ import annotations

from dataclasses import dataclass

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


def _field(path: str, sql_type: str | None = None) -> str:
    value = f"JSON_VALUE(`{RAW_COLUMN}`, '$.{path}')"
    return f"TRY_CAST({value} AS {sql_type})" if sql_type else value


# The fields the stages use, in schema v1's names (``id`` for deduplication). Others (method, path,
# user_agent, bytes_out) are not needed by any window, so they are not parsed at all.
EVENT_COLUMNS: tuple[ComputedColumn, ...] = (
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


# Arrival (processing) time: the deduplication keeps the first copy of an id to arrive.
ARRIVAL_COLUMN = ComputedColumn("arrival", "TIMESTAMP_LTZ(3)", "PROCTIME()")


def columns_ddl(watermark_delay_s: int) -> str:
    """The column list of a raw source table: the raw record, the parsed fields, the watermark."""
    lines = [f"`{RAW_COLUMN}` STRING"]
    lines += [column.ddl() for column in (*EVENT_COLUMNS, ARRIVAL_COLUMN)]
    lines.append(f"WATERMARK FOR `event_time` AS {watermark_expression(watermark_delay_s)}")
    return ",\n  ".join(lines)
