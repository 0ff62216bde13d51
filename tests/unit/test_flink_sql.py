"""The job's SQL and DDL rendered from configuration, and the operator's rules without Flink."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pyflink.datastream.state import StateTtlConfig

from flink_app import sinks, sources, stages
from flink_app.config import ConfigError, JobConfig
from flink_app.detect.clients import CandidateFloors
from flink_app.detect.model import ClientWindow, RouteWindow
from flink_app.detection_operator import (
    ANOMALY_COLUMNS,
    SubjectDetection,
    anomaly_values,
    client_state_ttl,
    window_from_values,
)
from flink_app.event_columns import EVENT_COLUMNS, sql_interval
from flink_app.jvm_functions import FUNCTIONS, TOP_COUNT
from pulse_contract import Anomaly

ARN = "arn:aws:kinesis:eu-west-1:123456789012:stream/pulse-events"


def config(*groups: dict[str, Any]) -> JobConfig:
    return JobConfig.from_property_groups(list(groups))


def group(name: str, **values: str) -> dict[str, Any]:
    return {"PropertyGroupId": f"pulse.{name}", "PropertyMap": {k.replace("_", "."): v for k, v in values.items()}}


def test_kinesis_source_ddl_carries_the_stream_region_position_and_endpoint() -> None:
    ddl = sources.source_ddl(
        config(
            {
                "PropertyGroupId": "pulse.source",
                "PropertyMap": {
                    "stream.arn": ARN,
                    "init.position": "TRIM_HORIZON",
                    "aws.endpoint": "http://127.0.0.1:5000",
                },
            },
            {"PropertyGroupId": "pulse.windows", "PropertyMap": {"watermark.delay.s": "7"}},
        )
    )

    assert "'connector' = 'kinesis'" in ddl
    assert f"'stream.arn' = '{ARN}'" in ddl
    assert "'aws.region' = 'eu-west-1'" in ddl  # taken from the ARN
    assert "'source.init.position' = 'TRIM_HORIZON'" in ddl
    assert "'aws.endpoint' = 'http://127.0.0.1:5000'" in ddl
    assert "'format' = 'raw'" in ddl and "`line` STRING" in ddl
    # the newest event time less the delay and 1 ms (a window closes once an event is the delay past its end)
    assert "WATERMARK FOR `event_time` AS `event_time` - INTERVAL '0 00:00:07.001' DAY TO SECOND(3)" in ddl


def test_kinesis_source_without_endpoint_talks_to_aws() -> None:
    ddl = sources.source_ddl(config({"PropertyGroupId": "pulse.source", "PropertyMap": {"stream.arn": ARN}}))
    assert "aws.endpoint" not in ddl
    assert "'source.init.position' = 'LATEST'" in ddl


def test_file_source_is_monitored_only_when_an_interval_is_set() -> None:
    bounded = sources.source_ddl(config(group("source", kind="filesystem", path="/data/in")))
    monitored = sources.source_ddl(
        config(
            {
                "PropertyGroupId": "pulse.source",
                "PropertyMap": {"kind": "filesystem", "path": "/data/in", "monitor.interval.s": "2"},
            }
        )
    )

    assert "'connector' = 'filesystem'" in bounded and "monitor-interval" not in bounded
    assert "'source.monitor-interval' = '2000 ms'" in monitored


def test_dynamodb_sink_ddl_upserts_on_pk_and_sk() -> None:
    ddl = sinks.anomaly_sink_ddl(
        config(
            {"PropertyGroupId": "pulse.source", "PropertyMap": {"stream.arn": ARN}},
            {"PropertyGroupId": "pulse.sink", "PropertyMap": {"table.name": "anoms", "aws.endpoint": "http://e:1"}},
        )
    )

    assert "'connector' = 'dynamodb'" in ddl
    assert "'table-name' = 'anoms'" in ddl
    assert "'aws.region' = 'eu-west-1'" in ddl
    assert "'aws.endpoint' = 'http://e:1'" in ddl
    assert "PRIMARY KEY (`pk`, `sk`) NOT ENFORCED" in ddl
    # the connector keeps one record per key and batch only for the PARTITIONED BY columns
    assert ") PARTITIONED BY (`pk`, `sk`) WITH (" in ddl
    for name, sql_type in ANOMALY_COLUMNS:
        assert f"`{name}` {sql_type}" in ddl


def test_every_anomaly_sink_carries_every_field_of_the_record() -> None:
    # given the record shape (Anomaly.to_record) and both sinks of a streaming run
    record_fields = set(Anomaly("spike", "route", "/a", 0, 60_000, 90.0, 10.0, 8.0, "medium", 1, 2).to_record())
    dynamodb = sinks.anomaly_sink_ddl(config({"PropertyGroupId": "pulse.source", "PropertyMap": {"stream.arn": ARN}}))
    jsonl = sinks.anomaly_sink_ddl(config(group("sink", kind="jsonl", path="/tmp/out")))
    # then each has a column per field, phase included
    assert {name for name, _ in ANOMALY_COLUMNS} == record_fields
    for ddl in (dynamodb, jsonl):
        assert "`phase` STRING" in ddl
        for name in record_fields:
            assert f"`{name}` " in ddl, name


def test_quotes_in_values_cannot_break_out_of_the_options() -> None:
    ddl = sinks.anomaly_sink_ddl(config(group("sink", kind="jsonl", path="/tmp/it's")))
    assert "'path' = '/tmp/it''s'" in ddl


@pytest.mark.parametrize(
    ("groups", "named"),
    [
        ([group("sink", flush_timeout_ms="soon")], "pulse.sink: flush.timeout.ms"),
        ([group("job", rejected_sample_size="-1")], "pulse.job: rejected.sample.size"),
        ([group("source", kind="filesystem")], "pulse.source"),
        ([group("windows", route_size_s="30", route_slide_s="7")], "route.size.s must be a multiple"),
    ],
)
def test_configuration_errors_name_the_key(groups: list[dict[str, Any]], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        config(*groups)


def test_a_kinesis_run_without_a_region_source_fails_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"pulse\.source: stream\.arn"):
        sources.source_ddl(config(group("source", stream_arn="not-an-arn")))


def test_every_detector_model_field_is_a_sql_column() -> None:
    assert stages.model_fields_missing_from_sql() == []


def test_only_valid_rows_are_events_and_rejected_rows_get_a_reason() -> None:
    c = config(group("windows", max_record_bytes="1000"))
    assert "`record_chars` <= 1000" in stages.events_sql(c)
    assert any(column.name == "record_chars" and column.expression.endswith(".`chars`") for column in EVENT_COLUMNS)
    side = stages.side_records_sql(c)
    assert f"({stages.valid_condition(c)}) IS NOT TRUE" in side  # NULL fields are rejected too
    for reason in ("oversized", "bad_json", "bad_ts", "missing_or_mistyped_field", "out_of_range_field"):
        assert f"'{reason}'" in side
    # a usable event is late when a window slice holding it has closed: route slides, client windows
    late = stages.late_condition(config(group("windows", route_size_s="30", route_slide_s="5", client_size_s="20")))
    assert "MOD(" in late and ", 5)" in late and ", 20)" in late
    assert f"{stages.valid_condition(c)} AND {stages.late_condition(c)}" in side


def test_route_windows_carry_the_mean_log_latency_as_the_detectors_compute_it() -> None:
    sql = stages.route_windows_sql(config())
    assert "AVG(LN(GREATEST(`latency_ms`, CAST(0.001 AS DOUBLE)))) AS latency_log_mean" in sql
    assert ("latency_log_mean", "DOUBLE") in stages.WINDOW_COLUMNS


def test_route_windows_carry_the_busiest_clients_count() -> None:
    # given the route window SQL
    sql = stages.route_windows_sql(config())
    # then one aggregation per route and window gives it, with the job's own aggregate function
    assert sql.count("GROUP BY") == 1
    assert sql.rstrip().endswith("GROUP BY `route`, window_start, window_end")
    assert f"{TOP_COUNT.name}(`client_ip`) AS top_client_count" in sql
    assert TOP_COUNT in FUNCTIONS
    assert ("top_client_count", "BIGINT") in stages.WINDOW_COLUMNS
    assert "top_client_count" in stages.ROUTE_COLUMNS


def test_only_candidate_client_windows_go_on_and_the_population_counts_every_client() -> None:
    # given detector floors (clear level 0.5 of 300 requests, 30 scans, 8 auth failures)
    c = config(group("detect", alert_clear_score="0.5", burst_min_count="300", scan_min_count="30", auth_min_count="8"))
    # then the per-client side of the join is filtered with the same floors as CandidateFloors
    floors = CandidateFloors.from_settings(c.detect)
    condition = "c.`count` >= 150 OR GREATEST(c.unmatched, c.not_found) >= 15 OR c.auth_failures >= 4"
    assert (floors.count, floors.scans, floors.auth) == (150, 15, 4)
    assert stages.client_candidate_condition(c.detect) == condition
    assert stages.client_windows_sql(c).rstrip().endswith(f"WHERE {condition}")
    # and the population is computed over the unfiltered per-client counts
    assert f"FROM `{stages.CLIENT_COUNTS}`" in stages.client_population_sql(c)
    assert "WHERE" not in stages.client_population_sql(c)


def test_window_sql_uses_the_configured_sizes() -> None:
    c = config(group("windows", route_size_s="30", route_slide_s="5", client_size_s="20"))
    assert (
        "HOP(TABLE `events`, DESCRIPTOR(`event_time`),\n"
        "               INTERVAL '0 00:00:05.000' DAY TO SECOND(3), INTERVAL '0 00:00:30.000' DAY TO SECOND(3))"
    ) in stages.route_windows_sql(c)
    assert (
        "TUMBLE(TABLE `events`, DESCRIPTOR(`event_time`), INTERVAL '0 00:00:20.000' DAY TO SECOND(3))"
        in stages.client_counts_sql(c)
    )


@pytest.mark.parametrize(
    ("ms", "literal"),
    [
        (1, "INTERVAL '0 00:00:00.001' DAY TO SECOND(3)"),
        (300_000, "INTERVAL '0 00:05:00.000' DAY TO SECOND(3)"),
        (86_400_000, "INTERVAL '1 00:00:00.000' DAY TO SECOND(3)"),
        (86_400_000 + 5_001, "INTERVAL '1 00:00:05.001' DAY TO SECOND(3)"),
    ],
)
def test_intervals_are_exact_milliseconds_over_the_whole_range(ms: int, literal: str) -> None:
    assert sql_interval(ms) == literal


def test_window_settings_range_from_a_second_to_a_day() -> None:
    day = config(group("windows", route_size_s="86400", route_slide_s="3600", client_size_s="86400"))
    assert "INTERVAL '1 00:00:00.000' DAY TO SECOND(3)" in stages.route_windows_sql(day)
    with pytest.raises(ConfigError, match=r"route\.size\.s"):
        config(group("windows", route_size_s="86401", route_slide_s="1"))


def test_rows_become_model_windows() -> None:
    base = {name: None for name, _ in stages.WINDOW_COLUMNS}
    route = window_from_values(
        {
            **base,
            "subject_type": "route",
            "subject": "/a",
            "window_start": 0,
            "window_end": 10,
            "count": 3,
            "errors_4xx": 1,
            "errors_5xx": 0,
            "latency_mean": 2.0,
            "latency_max": 3.0,
            "latency_log_mean": 0.5,
            "top_client_count": 2,
        }
    )
    client = window_from_values(
        {
            **base,
            "subject_type": "client",
            "subject": "10.0.0.1",
            "window_start": 0,
            "window_end": 10,
            "count": 3,
            "distinct_routes": 2,
            "unmatched": 0,
            "not_found": 1,
            "auth_failures": 0,
            "pop_clients": 4,
            "pop_mean_count": 2.5,
            "pop_std_count": 0.5,
        }
    )
    assert route == RouteWindow("/a", 0, 10, 3, 1, 0, 2.0, 3.0, 0.5, 2)
    assert client == ClientWindow("10.0.0.1", 0, 10, 3, 2, 0, 1, 0, 4, 2.5, 0.5)


def test_anomaly_values_follow_the_sink_columns() -> None:
    anomaly = Anomaly("spike", "route", "/a", 0, 60_000, 90.0, 10.0, 8.0, "medium", 123, 456)
    assert dict(zip([n for n, _ in ANOMALY_COLUMNS], anomaly_values(anomaly), strict=True)) == anomaly.to_record()


@dataclass
class RecordingEngine:
    """An engine whose deadline is always ``last window end + 10``, recording calls."""

    calls: list[tuple[str, int]] = field(default_factory=list)

    def on_route_window(self, state: Any, window: RouteWindow) -> tuple[Any, list[Anomaly]]:
        self.calls.append(("window", window.window_end))
        return {"last": window.window_end}, []

    def on_client_window(self, state: Any, window: ClientWindow) -> tuple[Any, list[Anomaly]]:
        self.calls.append(("client", window.window_end))
        return {"last": window.window_end}, []

    def silence_deadline(self, state: Any) -> int | None:
        return state["last"] + 10

    def on_silence(self, state: Any, now_ms: int) -> tuple[Any, list[Anomaly]]:
        self.calls.append(("silence", now_ms))
        return {"last": now_ms}, [Anomaly("silence", "route", "/a", now_ms - 10, now_ms, 0, 1, 1, "low", 0, 0)]


def route_window(end: int) -> RouteWindow:
    return RouteWindow("/a", end - 4, end, 1, 0, 0, 1.0, 1.0)


def client_window(end: int) -> ClientWindow:
    return ClientWindow("10.0.0.1", end - 4, end, 200, 1, 0, 0, 0, 1, 200.0, 0.0)


def test_a_window_after_a_passed_deadline_is_preceded_by_silence() -> None:
    engine = RecordingEngine()
    detection = SubjectDetection(engine)  # type: ignore[arg-type]
    first = detection.on_window(None, route_window(10), None)
    assert first.deadline == 20

    on_time = detection.on_window(first.state, route_window(20), first.deadline)  # end == deadline: not silent
    late = detection.on_window(on_time.state, route_window(50), on_time.deadline)  # deadline 30 < 50

    assert engine.calls == [("window", 10), ("window", 20), ("silence", 30), ("window", 50)]
    assert [a.kind for a in late.anomalies] == ["silence"]
    assert late.deadline == 60


def test_client_windows_arm_the_engines_deadline_like_route_windows() -> None:
    # given a client whose engine asks for a deadline (the end of a cool-down)
    engine = RecordingEngine()
    detection = SubjectDetection(engine)  # type: ignore[arg-type]
    first = detection.on_window(None, client_window(4), None)
    # when its next window ends after that deadline
    later = detection.on_window(first.state, client_window(40), first.deadline)
    # then the deadline is armed and acted on before the window, as for a route
    assert first.deadline == 14
    assert engine.calls == [("client", 4), ("silence", 14), ("client", 40)]
    assert later.deadline == 50


def test_a_watermark_judges_the_windows_it_closed_in_order_then_the_deadlines_it_passed() -> None:
    # given windows that arrived out of order (a client's come through several join subtasks)
    engine = RecordingEngine()
    detection = SubjectDetection(engine)  # type: ignore[arg-type]
    pending = sorted([route_window(30), route_window(10), route_window(60)], key=lambda w: w.window_end)

    # when the watermark reaches 29 (closes windows ending by 30), then 45
    first, left = detection.advance(None, pending, watermark=29)
    second, rest = detection.advance(first.state, left, watermark=45)

    # then windows are judged in window_end order (the deadline 20 passed before the window ending at 30),
    # the window ending at 60 waits, and the deadline 40 (passed by 45, not by 29) is acted on with the
    # watermark, once
    assert engine.calls == [("window", 10), ("silence", 20), ("window", 30), ("silence", 45)]
    assert (first.windows, first.silence_checks, [w.window_end for w in left]) == (2, 1, [60])
    assert (second.windows, second.silence_checks, [w.window_end for w in rest]) == (0, 1, [60])
    assert second.deadline == 55 and [a.window_end for a in second.anomalies] == [45]


def test_a_watermark_that_closes_nothing_does_nothing() -> None:
    engine = RecordingEngine()
    step, left = SubjectDetection(engine).advance({"last": 10}, [route_window(60)], watermark=19)  # type: ignore[arg-type]
    assert engine.calls == [] and (step.windows, step.silence_checks) == (0, 0) and len(left) == 1


def test_client_state_expires_a_configured_time_after_its_last_window() -> None:
    # given the default configuration and a shorter one
    default, short = config(), config(group("job", client_state_ttl_h="1.5"))
    # then the TTL is refreshed by every write (one per window) and an expired value may still be read
    # until cleaned up, which keeps the Python worker's state cache on
    ttl = client_state_ttl(default.job.client_state_ttl_h)
    assert ttl.get_ttl().to_milliseconds() == 24 * 3_600_000
    assert client_state_ttl(short.job.client_state_ttl_h).get_ttl().to_milliseconds() == 5_400_000
    assert ttl.get_update_type() == StateTtlConfig.UpdateType.OnCreateAndWrite
    assert ttl.get_state_visibility() == StateTtlConfig.StateVisibility.ReturnExpiredIfNotCleanedUp
    with pytest.raises(ConfigError, match=r"pulse\.job: client\.state\.ttl\.h"):
        config(group("job", client_state_ttl_h="0"))


def test_events_are_deduplicated_by_id_on_arrival_unless_switched_off() -> None:
    deduplicated = stages.events_sql(config())
    assert "ROW_NUMBER() OVER (PARTITION BY `id` ORDER BY `arrival` ASC)" in deduplicated
    assert deduplicated.endswith("WHERE copy = 1")
    assert "ROW_NUMBER" not in stages.events_sql(config(group("job", dedup_ttl_s="0")))
    # an event needs an id to be deduplicated: without one it is rejected
    assert "`id` IS NOT NULL" in stages.valid_condition(config())


def test_the_candidate_filter_follows_the_client_window_size() -> None:
    c = config(group("windows", route_size_s="1800", route_slide_s="1800", client_size_s="1800"))
    condition = "c.`count` >= 3600 OR GREATEST(c.unmatched, c.not_found) >= 300 OR c.auth_failures >= 150"
    assert stages.client_candidate_condition(c.detect, 1_800_000) == condition
    assert stages.client_windows_sql(c).rstrip().endswith(f"WHERE {condition}")
