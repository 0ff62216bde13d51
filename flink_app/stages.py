"""The SQL stages between the raw source and the detectors, all in the JVM.

1. **Validation and deduplication.** A raw row is an event when its size, event time and fields
   are usable (:func:`valid_condition`); every other row is *rejected* with a reason
   (:func:`reject_reason`) and goes to a side branch that counts it, never to the windows. Events
   come at least once (client retries, replays): of the copies of an ``id`` that arrive within
   ``pulse.job`` ``dedup.ttl.s``, the first is kept (``ROW_NUMBER`` over arrival time, which Flink
   runs as an insert-only deduplication; its state expires after that time).
2. **Route windows.** Sliding (HOP) windows per route: count, 4xx, 5xx, mean, max and mean log
   latency, and the busiest single client's count.
3. **Client windows.** Tumbling windows per client IP: count, distinct routes, unmatched paths,
   404s, 401/403s; the population's figures for the same window (clients, mean and standard
   deviation of the count, over every client) are a cascaded window aggregate joined back by
   window. Only *candidate* client windows go on (:func:`client_candidate_condition`): the detectors
   ignore the others, and they are nearly all of a long tail of visitors.
4. **Late records.** A usable event whose windows had already closed when it arrived (its route or
   client window slice ended at or before the watermark) is dropped by the window operators; a side
   branch names it ``late`` so that it is counted, not lost without a trace.
5. **One stream into Python.** Both kinds of window in one table (:data:`WINDOW_COLUMNS`), plus
   one row per rejected or late record (``subject_type`` ``rejected`` or ``late``, the reason as
   ``subject``, the record's start as ``detail``), keyed downstream by ``subject_type#subject``.
   The side rows travel with the windows, from the same source instance, so that one reader of the
   stream serves everything and lateness is judged against the watermark the windows see; the
   operator counts them in metrics and keeps no state for them.

Window bounds are epoch milliseconds (BIGINT), computed in the session time zone, which the job
pins to UTC. :mod:`flink_app.detect.windows` is the executable specification of every column.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from flink_app.config import JobConfig
from flink_app.detect.clients import CandidateFloors
from flink_app.detect.model import ClientWindow, RouteWindow
from flink_app.detect.settings import DetectSettings
from flink_app.detect.windows import MIN_LATENCY_MS
from flink_app.event_columns import INVALID_EVENT_TIME_MS, RAW_COLUMN, sql_interval
from flink_app.jvm_functions import TOP_COUNT
from flink_app.sources import RAW_EVENTS
from pulse_contract import UNMATCHED_ROUTE
from pulse_contract.request_event import MAX_ID_CHARS, STATUS_RANGE

if TYPE_CHECKING:
    from pyflink.table import StreamTableEnvironment, Table

EVENTS = "events"
ROUTE_WINDOWS = "route_windows"
CLIENT_COUNTS = "client_counts"
CLIENT_POPULATION = "client_population"
CLIENT_WINDOWS = "client_windows"
WINDOWS = "windows"
SIDE_RECORDS = "side_records"
DETECTION_INPUT = "detection_input"

REJECTED = "rejected"  # subject_type of a record that is not a usable event
LATE = "late"  # subject_type of a usable event its windows had closed for
SIDE_SUBJECT_TYPES = (REJECTED, LATE)

MAX_SUBJECT_CHARS = 512
REJECTED_SAMPLE_CHARS = 256

# The aggregate stream's columns, in order, with their SQL types. Route rows leave the client
# columns NULL and client rows the route columns. Names are the detect.model field names.
WINDOW_COLUMNS: tuple[tuple[str, str], ...] = (
    ("subject_type", "STRING"),
    ("subject", "STRING"),
    ("window_start", "BIGINT"),
    ("window_end", "BIGINT"),
    ("count", "BIGINT"),
    ("errors_4xx", "BIGINT"),
    ("errors_5xx", "BIGINT"),
    ("latency_mean", "DOUBLE"),
    ("latency_max", "DOUBLE"),
    ("latency_log_mean", "DOUBLE"),
    ("top_client_count", "BIGINT"),
    ("distinct_routes", "BIGINT"),
    ("unmatched", "BIGINT"),
    ("not_found", "BIGINT"),
    ("auth_failures", "BIGINT"),
    ("pop_clients", "BIGINT"),
    ("pop_mean_count", "DOUBLE"),
    ("pop_std_count", "DOUBLE"),
    ("detail", "STRING"),  # side rows only: the start of the record
)
ROUTE_COLUMNS = (
    "count",
    "errors_4xx",
    "errors_5xx",
    "latency_mean",
    "latency_max",
    "latency_log_mean",
    "top_client_count",
)
CLIENT_COLUMNS = (
    "count",
    "distinct_routes",
    "unmatched",
    "not_found",
    "auth_failures",
    "pop_clients",
    "pop_mean_count",
    "pop_std_count",
)


def _epoch_s(column: str) -> str:
    """A timestamp column's whole epoch seconds, in the session zone (the job pins it to UTC)."""
    return f"UNIX_TIMESTAMP(DATE_FORMAT({column}, 'yyyy-MM-dd HH:mm:ss'))"


def _epoch_ms(column: str) -> str:
    # Window bounds are whole seconds (sizes and slides are configured in seconds).
    return f"{_epoch_s(column)} * 1000"


def valid_condition(config: JobConfig) -> str:
    """SQL predicate: this raw row is a usable event."""
    # `json_object` is implied by the fields below, and the raw format never gives a NULL record; naming
    # them makes every branch of the plan read the same columns of the source (the side rows need both),
    # so that the planner gives them one projection: one parse, one count of the record's characters.
    return (
        f"`{RAW_COLUMN}` IS NOT NULL AND `record_chars` <= {config.windows.max_record_bytes}"
        " AND `json_object`"
        f" AND `event_time` > TO_TIMESTAMP_LTZ({INVALID_EVENT_TIME_MS}, 3)"
        f" AND `id` IS NOT NULL AND CHAR_LENGTH(`id`) BETWEEN 1 AND {MAX_ID_CHARS}"
        f" AND `route` IS NOT NULL AND CHAR_LENGTH(`route`) BETWEEN 1 AND {MAX_SUBJECT_CHARS}"
        f" AND `client_ip` IS NOT NULL AND CHAR_LENGTH(`client_ip`) BETWEEN 1 AND {MAX_SUBJECT_CHARS}"
        f" AND `status` BETWEEN {STATUS_RANGE[0]} AND {STATUS_RANGE[1]}"
        " AND `latency_ms` >= 0"
    )


def reject_reason(config: JobConfig) -> str:
    """SQL expression naming why a row is not an event (evaluated on rejected rows only)."""
    return (
        "CASE"
        f" WHEN `record_chars` > {config.windows.max_record_bytes} THEN 'oversized'"
        " WHEN NOT `json_object` THEN 'bad_json'"  # `line` IS JSON OBJECT, from the one parse
        f" WHEN `event_time` <= TO_TIMESTAMP_LTZ({INVALID_EVENT_TIME_MS}, 3) THEN 'bad_ts'"
        " WHEN `id` IS NULL OR `route` IS NULL OR `client_ip` IS NULL OR `status` IS NULL OR `latency_ms` IS NULL"
        " THEN 'missing_or_mistyped_field'"
        " ELSE 'out_of_range_field' END"
    )


def events_sql(config: JobConfig) -> str:
    """The usable events, each ``id`` once (unless ``dedup.ttl.s`` is 0)."""
    columns = "`route`, `status`, `latency_ms`, `client_ip`, `event_time`"
    # Arrival time is taken here, not as a column of the source: every branch then reads the source's
    # one projection (the parse), which the planner shares only when their columns are the same.
    valid = f"SELECT `id`, {columns}, PROCTIME() AS `arrival` FROM `{RAW_EVENTS}` WHERE {valid_condition(config)}"
    if not config.job.dedup_ttl_s:
        return f"SELECT {columns} FROM ({valid})"
    return (
        f"SELECT {columns} FROM ("
        f"SELECT *, ROW_NUMBER() OVER (PARTITION BY `id` ORDER BY `arrival` ASC) AS copy FROM ({valid})"
        ") WHERE copy = 1"
    )


def _slice_closed(size_s: int) -> str:
    """SQL predicate: the window slice of ``size_s`` seconds holding the row's event time has closed.

    Windows are aligned to the epoch (the session zone is UTC) and a slice ``[start, end)`` fires once
    the watermark reaches ``end - 1``: after that the window operator drops the row.
    """
    epoch_s = _epoch_s("`event_time`")
    slice_last_ms = f"({epoch_s} - MOD({epoch_s}, {size_s}) + {size_s}) * 1000 - 1"
    return f"TO_TIMESTAMP_LTZ({slice_last_ms}, 3) <= CURRENT_WATERMARK(`event_time`)"


def late_condition(config: JobConfig) -> str:
    """SQL predicate over a usable event: some window operator drops it as late.

    Route windows slide, so their slices are ``route.slide.s`` long; client windows tumble. The cheap
    test (at or behind the watermark) comes first: only such rows compute their slices.
    """
    w = config.windows
    return (
        "CURRENT_WATERMARK(`event_time`) IS NOT NULL AND `event_time` <= CURRENT_WATERMARK(`event_time`)"
        f" AND ({_slice_closed(w.route_slide_s)} OR {_slice_closed(w.client_size_s)})"
    )


def side_records_sql(config: JobConfig) -> str:
    """Rejected and late records as rows of :data:`WINDOW_COLUMNS` (reason as ``subject``)."""
    sample = f"SUBSTRING(`{RAW_COLUMN}`, 1, {REJECTED_SAMPLE_CHARS})"

    def select(subject_type: str, reason: str, condition: str) -> str:
        parts = [f"'{subject_type}' AS subject_type", f"{reason} AS subject", "CAST(NULL AS BIGINT) AS window_start"]
        parts.append("CAST(NULL AS BIGINT) AS window_end")
        parts += [f"CAST(NULL AS {sql_type}) AS `{name}`" for name, sql_type in WINDOW_COLUMNS[4:-1]]
        parts.append(f"{sample} AS detail")
        return f"SELECT {', '.join(parts)} FROM `{RAW_EVENTS}` WHERE {condition}"

    valid = valid_condition(config)
    # IS NOT TRUE, not NOT: a NULL field makes the condition NULL, and NOT NULL is NULL too.
    rejected = select(REJECTED, reject_reason(config), f"({valid}) IS NOT TRUE")
    late = select(LATE, f"'{LATE}'", f"{valid} AND {late_condition(config)}")
    return f"{rejected}\nUNION ALL\n{late}"


# True of every event (validation requires each of these columns). Both kinds of window filter on it:
# the planner prunes each query's columns below the deduplication, and two queries that read
# different columns of it get a deduplication each (two shuffles by `id`, two states); naming every
# column in both gives them the same one.
REQUIRED_EVENT_COLUMNS = ("route", "status", "latency_ms", "client_ip")
EVERY_EVENT = " AND ".join(f"`{name}` IS NOT NULL" for name in REQUIRED_EVENT_COLUMNS)


def route_windows_sql(config: JobConfig) -> str:
    """Per route and HOP window, with ``top_client_count`` (the busiest client's requests), which
    ``PULSE_TOP_COUNT`` (flink_app/jvm_functions.py) gives in the same aggregation."""
    w = config.windows
    return f"""
SELECT 'route' AS subject_type, `route` AS subject,
  {_epoch_ms("window_start")} AS window_start_ms, {_epoch_ms("window_end")} AS window_end_ms,
  COUNT(*) AS `count`,
  CAST(SUM(CASE WHEN `status` >= 400 AND `status` < 500 THEN 1 ELSE 0 END) AS BIGINT) AS errors_4xx,
  CAST(SUM(CASE WHEN `status` >= 500 THEN 1 ELSE 0 END) AS BIGINT) AS errors_5xx,
  AVG(`latency_ms`) AS latency_mean,
  MAX(`latency_ms`) AS latency_max,
  AVG(LN(GREATEST(`latency_ms`, CAST({MIN_LATENCY_MS!r} AS DOUBLE)))) AS latency_log_mean,
  {TOP_COUNT.name}(`client_ip`) AS top_client_count
FROM TABLE(HOP(TABLE `{EVENTS}`, DESCRIPTOR(`event_time`),
               {sql_interval(w.route_slide_s * 1000)}, {sql_interval(w.route_size_s * 1000)}))
WHERE {EVERY_EVENT}
GROUP BY `route`, window_start, window_end"""


def client_counts_sql(config: JobConfig) -> str:
    return f"""
SELECT `client_ip`, window_start, window_end, window_time,
  COUNT(*) AS `count`,
  COUNT(DISTINCT `route`) AS distinct_routes,
  CAST(SUM(CASE WHEN `route` = '{UNMATCHED_ROUTE}' THEN 1 ELSE 0 END) AS BIGINT) AS unmatched,
  CAST(SUM(CASE WHEN `status` = 404 THEN 1 ELSE 0 END) AS BIGINT) AS not_found,
  CAST(SUM(CASE WHEN `status` IN (401, 403) THEN 1 ELSE 0 END) AS BIGINT) AS auth_failures
FROM TABLE(TUMBLE(TABLE `{EVENTS}`, DESCRIPTOR(`event_time`), {sql_interval(config.windows.client_size_s * 1000)}))
WHERE {EVERY_EVENT}
GROUP BY `client_ip`, window_start, window_end, window_time"""


def client_population_sql(config: JobConfig) -> str:
    # A cascaded window aggregate: the per-client rows grouped again by their (same) window.
    return f"""
SELECT window_start, window_end,
  COUNT(*) AS pop_clients,
  AVG(CAST(`count` AS DOUBLE)) AS pop_mean_count,
  STDDEV_POP(CAST(`count` AS DOUBLE)) AS pop_std_count
FROM `{CLIENT_COUNTS}`
GROUP BY window_start, window_end"""


def client_candidate_condition(settings: DetectSettings, size_ms: int = 60_000, alias: str = "c") -> str:
    """SQL predicate over a client-count row: the window (``size_ms`` long) is a candidate for the
    client detectors.

    The same floors as :meth:`flink_app.detect.clients.CandidateFloors.admit`, which the pure-Python
    backtest applies.
    """
    floors = CandidateFloors.from_settings(settings, size_ms)
    return (
        f"{alias}.`count` >= {floors.count}"
        f" OR GREATEST({alias}.unmatched, {alias}.not_found) >= {floors.scans}"
        f" OR {alias}.auth_failures >= {floors.auth}"
    )


def client_windows_sql(config: JobConfig) -> str:
    # A window join: both sides are window aggregates of the same windows, so the join emits
    # once per window when the watermark passes it and keeps no state beyond it. The population
    # covers every client; the candidate filter applies to the per-client side only.
    return f"""
SELECT 'client' AS subject_type, c.`client_ip` AS subject,
  {_epoch_ms("c.window_start")} AS window_start_ms, {_epoch_ms("c.window_end")} AS window_end_ms,
  c.`count`, c.distinct_routes, c.unmatched, c.not_found, c.auth_failures,
  p.pop_clients, p.pop_mean_count, COALESCE(p.pop_std_count, 0.0) AS pop_std_count
FROM `{CLIENT_COUNTS}` c JOIN `{CLIENT_POPULATION}` p
  ON c.window_start = p.window_start AND c.window_end = p.window_end
WHERE {client_candidate_condition(config.detect, config.windows.client_size_s * 1000)}"""


def windows_sql() -> str:
    """Route and client windows as one table of :data:`WINDOW_COLUMNS`."""

    def select(source: str, present: tuple[str, ...]) -> str:
        parts = ["subject_type", "subject", "window_start_ms AS window_start", "window_end_ms AS window_end"]
        for name, sql_type in WINDOW_COLUMNS[4:]:
            parts.append(
                f"CAST(`{name}` AS {sql_type}) AS `{name}`"
                if name in present
                else f"CAST(NULL AS {sql_type}) AS `{name}`"
            )
        return f"SELECT {', '.join(parts)} FROM `{source}`"

    return f"{select(ROUTE_WINDOWS, ROUTE_COLUMNS)}\nUNION ALL\n{select(CLIENT_WINDOWS, CLIENT_COLUMNS)}"


@dataclass(frozen=True)
class Stages:
    """The tables the job wires onward."""

    windows: Table  # route and client windows
    detection_input: Table  # the windows and the side rows: what crosses into Python


def register(t_env: StreamTableEnvironment, config: JobConfig) -> Stages:
    """Register every stage as a temporary view over :data:`flink_app.sources.RAW_EVENTS`."""
    views = (
        (EVENTS, events_sql(config)),
        (ROUTE_WINDOWS, route_windows_sql(config)),
        (CLIENT_COUNTS, client_counts_sql(config)),
        (CLIENT_POPULATION, client_population_sql(config)),
        (CLIENT_WINDOWS, client_windows_sql(config)),
        (WINDOWS, windows_sql()),
        (SIDE_RECORDS, side_records_sql(config)),
        (DETECTION_INPUT, f"SELECT * FROM `{WINDOWS}` UNION ALL SELECT * FROM `{SIDE_RECORDS}`"),
    )
    for name, sql in views:
        t_env.create_temporary_view(name, t_env.sql_query(sql))
    return Stages(windows=t_env.from_path(WINDOWS), detection_input=t_env.from_path(DETECTION_INPUT))


def model_fields_missing_from_sql() -> list[str]:
    """Detector model fields that no SQL column produces (must be empty; checked by a unit test)."""
    produced = {name for name, _ in WINDOW_COLUMNS}
    route = {f.name for f in fields(RouteWindow)} - {"route"}
    client = {f.name for f in fields(ClientWindow)} - {"client_ip"}
    return sorted((route | client) - produced)
