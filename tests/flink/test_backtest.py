"""Backtest: a bounded file of events through the whole job gives exactly the expected anomalies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flink_app.cli import run_backtest
from flink_app.detect.model import Anomaly
from pulse_local.steady import Spike, steady
from pulse_local.traffic import write_jsonl
from tests.flink.conftest import small_config
from tests.flink.reference import expected_anomalies

pytestmark = [pytest.mark.flink, pytest.mark.slow]

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SPIKED = "/api/r1/{item_id}"
MALFORMED = ["not json", '"a string"', '{"ts": "yesterday", "route": "/x"}', '{"v": 1}',
             json.dumps({"v": 1, "ts": START_MS + 5000, "route": "/x", "status": "teapot", "latency_ms": 1,
                         "client_ip": "10.9.9.9"}),
             json.dumps({"v": 1, "ts": START_MS + 6000, "route": "/x" * 20000, "status": 200, "latency_ms": 1,
                         "client_ip": "10.9.9.9"})]


def comparable(anomaly: Anomaly) -> tuple[object, ...]:
    """Everything but the wall-clock fields (detected_at, ttl)."""
    return (anomaly.pk, anomaly.sk, anomaly.kind, anomaly.window_start, anomaly.window_end, anomaly.severity,
            round(anomaly.observed, 6), round(anomaly.expected, 3), round(anomaly.score, 3))


def test_backtest_writes_exactly_the_expected_anomalies(tmp_path: Path) -> None:
    # given: two minutes of steady traffic on 4 routes, a tenfold spike on one, and malformed lines
    events: list[object] = list(steady(START_MS, 120_000, rate_per_s=40, routes=4, clients=25,
                                       spikes=(Spike(SPIKED, START_MS + 80_000, 2_000, 400),)))
    for offset, line in enumerate(MALFORMED):
        events.insert(100 + offset * 500, line)
    source = tmp_path / "events.jsonl"
    with source.open("w") as out:
        for item in events:
            out.write((item if isinstance(item, str) else json.dumps(item)) + "\n")
    config = small_config()
    expected = expected_anomalies([e for e in events if not isinstance(e, str)], config)
    assert any(a.kind == "spike" and a.subject == SPIKED for a in expected), "the test data must hold a spike"

    # when
    output = tmp_path / "anomalies.jsonl"
    result = run_backtest(config, source, output)

    # then: one anomaly per line, in DESIGN.md's record shape, exactly the expected ones
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [Anomaly.from_record(line).to_record() for line in lines] == lines
    assert [comparable(Anomaly.from_record(line)) for line in lines] == [comparable(a) for a in expected]
    assert len(result.anomalies) == len(expected)


def test_backtest_of_an_empty_file_writes_an_empty_output(tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    write_jsonl([], source)
    output = tmp_path / "anomalies.jsonl"

    result = run_backtest(small_config(), source, output)

    assert result.anomalies == []
    assert output.read_text() == ""
