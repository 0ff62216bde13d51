"""The job's SQL and DDL rendered from configuration, and the operator's rules without Flink."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from flink_app import sinks, sources, stages
from flink_app.config import ConfigError, JobConfig
from flink_app.detect.model import Anomaly, ClientWindow, RouteWindow
from flink_app.operator import ANOMALY_COLUMNS, SubjectDetection, anomaly_values, window_from_values

ARN = "arn:aws:kinesis:eu-west-1:123456789012:stream/pulse-events"


def config(*groups: dict[str, Any]) -> JobConfig:
    return JobConfig.from_property_groups(list(groups))


def group(name: str, **values: str) -> dict[str, Any]:
    return {"PropertyGroupId": f"pulse.{name}", "PropertyMap": {k.replace("_", "."): v for k, v in values.items()}}


def test_kinesis_source_ddl_carries_the_stream_region_position_and_endpoint() -> None:
    ddl = sources.source_ddl(config(
        {"PropertyGroupId": "pulse.source", "PropertyMap": {
            "stream.arn": ARN, "init.position": "TRIM_HORIZON", "aws.endpoint": "http://127.0.0.1:5000"}},
        {"PropertyGroupId": "pulse.windows", "PropertyMap": {"watermark.delay.s": "7"}}))

    assert "'connector' = 'kinesis'" in ddl
    assert f"'stream.arn' = '{ARN}'" in ddl
    assert "'aws.region' = 'eu-west-1'" in ddl  # taken from the ARN
    assert "'source.init.position' = 'TRIM_HORIZON'" in ddl
    assert "'aws.endpoint' = 'http://127.0.0.1:5000'" in ddl
    assert "'format' = 'raw'" in ddl and "`line` STRING" in ddl
    assert "WATERMARK FOR `event_time` AS `event_time` - INTERVAL '7' SECOND" in ddl


def test_kinesis_source_without_endpoint_talks_to_aws() -> None:
    ddl = sources.source_ddl(config({"PropertyGroupId": "pulse.source", "PropertyMap": {"stream.arn": ARN}}))
    assert "aws.endpoint" not in ddl
    assert "'source.init.position' = 'LATEST'" in ddl


def test_file_source_is_monitored_only_when_an_interval_is_set() -> None:
    bounded = sources.source_ddl(config(group("source", kind="filesystem", path="/data/in")))
    monitored = sources.source_ddl(config({"PropertyGroupId": "pulse.source", "PropertyMap": {
        "kind": "filesystem", "path": "/data/in", "monitor.interval.s": "2"}}))

    assert "'connector' = 'filesystem'" in bounded and "monitor-interval" not in bounded
    assert "'source.monitor-interval' = '2000 ms'" in monitored


def test_dynamodb_sink_ddl_upserts_on_pk_and_sk() -> None:
    ddl = sinks.anomaly_sink_ddl(config(
        {"PropertyGroupId": "pulse.source", "PropertyMap": {"stream.arn": ARN}},
        {"PropertyGroupId": "pulse.sink", "PropertyMap": {"table.name": "anoms", "aws.endpoint": "http://e:1"}}))

    assert "'connector' = 'dynamodb'" in ddl
    assert "'table-name' = 'anoms'" in ddl
    assert "'aws.region' = 'eu-west-1'" in ddl
    assert "'aws.endpoint' = 'http://e:1'" in ddl
    assert "PRIMARY KEY (`pk`, `sk`) NOT ENFORCED" in ddl
    for name, sql_type in ANOMALY_COLUMNS:
        assert f"`{name}` {sql_type}" in ddl


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
    assert "CHAR_LENGTH(`line`) <= 1000" in stages.events_sql(c)
    rejected = stages.rejected_sql(c)
    assert f"({stages.valid_condition(c)}) IS NOT TRUE" in rejected  # NULL fields are rejected too
    for reason in ("oversized", "bad_json", "bad_ts", "missing_or_mistyped_field", "out_of_range_field"):
        assert f"'{reason}'" in rejected


def test_window_sql_uses_the_configured_sizes() -> None:
    c = config(group("windows", route_size_s="30", route_slide_s="5", client_size_s="20"))
    assert "HOP(TABLE `events`, DESCRIPTOR(`event_time`),\n               INTERVAL '5' SECOND, INTERVAL '30' SECOND)" \
        in stages.route_windows_sql(c)
    assert "TUMBLE(TABLE `events`, DESCRIPTOR(`event_time`), INTERVAL '20' SECOND)" in stages.client_counts_sql(c)


def test_rows_become_model_windows() -> None:
    base = {name: None for name, _ in stages.WINDOW_COLUMNS}
    route = window_from_values({**base, "subject_type": "route", "subject": "/a", "window_start": 0,
                                "window_end": 10, "count": 3, "errors_4xx": 1, "errors_5xx": 0,
                                "latency_mean": 2.0, "latency_max": 3.0})
    client = window_from_values({**base, "subject_type": "client", "subject": "10.0.0.1", "window_start": 0,
                                 "window_end": 10, "count": 3, "distinct_routes": 2, "unmatched": 0,
                                 "not_found": 1, "auth_failures": 0, "pop_clients": 4, "pop_mean_count": 2.5,
                                 "pop_std_count": 0.5})
    assert route == RouteWindow("/a", 0, 10, 3, 1, 0, 2.0, 3.0)
    assert client == ClientWindow("10.0.0.1", 0, 10, 3, 2, 0, 1, 0, 4, 2.5, 0.5)


def test_anomaly_values_follow_the_sink_columns() -> None:
    anomaly = Anomaly("spike", "route", "/a", 0, 60_000, 90.0, 10.0, 8.0, "medium", 123, 456)
    assert dict(zip([n for n, _ in ANOMALY_COLUMNS], anomaly_values(anomaly), strict=True)) == anomaly.to_record()


@dataclass
class RecordingEngine:
    """An engine whose route deadline is always ``last window end + 10``, recording calls."""

    calls: list[tuple[str, int]] = field(default_factory=list)

    def on_route_window(self, state: Any, window: RouteWindow) -> tuple[Any, list[Anomaly]]:
        self.calls.append(("window", window.window_end))
        return {"last": window.window_end}, []

    def on_client_window(self, state: Any, window: ClientWindow) -> tuple[Any, list[Anomaly]]:
        self.calls.append(("client", window.window_end))
        return state, []

    def silence_deadline(self, state: Any) -> int | None:
        return state["last"] + 10

    def on_silence(self, state: Any, now_ms: int) -> tuple[Any, list[Anomaly]]:
        self.calls.append(("silence", now_ms))
        return {"last": now_ms}, [Anomaly("silence", "route", "/a", now_ms - 10, now_ms, 0, 1, 1, "low", 0, 0)]


def route_window(end: int) -> RouteWindow:
    return RouteWindow("/a", end - 4, end, 1, 0, 0, 1.0, 1.0)


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


def test_client_windows_arm_no_deadline() -> None:
    engine = RecordingEngine()
    step = SubjectDetection(engine).on_window(None, ClientWindow("10.0.0.1", 0, 4, 1, 1, 0, 0, 0, 1, 1.0, 0.0), 5)  # type: ignore[arg-type]
    assert step.deadline is None and engine.calls == [("client", 4)]
