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


# The fields the stages use, in schema v1's names. Others (id, method, path, user_agent,
# bytes_out) are not needed by any window, so they are not parsed at all.
EVENT_COLUMNS: tuple[ComputedColumn, ...] = (
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


def columns_ddl(watermark_delay_s: int) -> str:
    """The column list of a raw source table: the raw record, the parsed fields, the watermark."""
    lines = [f"`{RAW_COLUMN}` STRING"]
    lines += [column.ddl() for column in EVENT_COLUMNS]
    lines.append(f"WATERMARK FOR `event_time` AS `event_time` - INTERVAL '{watermark_delay_s}' SECOND")
    return ",\n  ".join(lines)
