"""Backtest on the local mini-cluster: labelled traffic through the whole job gives exactly the records
of the pure-Python backtest (flink_app/detect/backtest.py), and the SQL stages compute exactly the
reference windows (flink_app/detect/windows.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flink_app import job, sources, stages
from flink_app.cli import backtest_config, run_backtest
from flink_app.config import WindowConfig
from flink_app.detect.backtest import backtest
from flink_app.detect.clients import CandidateFloors
from flink_app.detect.model import ClientWindow, RouteWindow
from flink_app.detect.windows import WindowGeometry, aggregate
from flink_app.detection_operator import window_from_values
from pulse_contract import KINDS, Anomaly
from pulse_local.evaluation import evaluate
from pulse_local.traffic import write_jsonl
from tests.flink.conftest import FlinkBacktest, LabelledInput, comparable, small_config

pytestmark = [pytest.mark.flink, pytest.mark.slow]


def test_the_labelled_input_exercises_every_kind(labelled_input: LabelledInput) -> None:
    # The comparisons below are only as good as their input: every injected kind is found by the reference.
    evaluation = evaluate(labelled_input.expected, labelled_input.labels)
    assert evaluation.missed == []
    assert {label.kind for label in labelled_input.labels} == set(KINDS)
    assert {"open", "escalate", "end"} <= {a.phase for a in labelled_input.expected}


def test_backtest_writes_exactly_the_records_of_the_pure_python_backtest(
    labelled_input: LabelledInput, flink_backtest: FlinkBacktest
) -> None:
    # given labelled traffic with every kind injected and malformed lines (the flink_backtest fixture)
    # then every record but its wall-clock fields is the pure-Python backtest's: keys, phases, figures
    assert comparable(flink_backtest.result.anomalies) == comparable(labelled_input.expected)
    # and nothing is judged after the last regular watermark (not the end-of-input one)
    assert max(a.window_end for a in flink_backtest.result.anomalies) <= labelled_input.last_watermark


def test_backtest_output_is_one_record_per_line_in_key_order(flink_backtest: FlinkBacktest) -> None:
    records = [json.loads(line) for line in flink_backtest.output_lines]
    assert len(records) == len(flink_backtest.result.anomalies)
    assert [Anomaly.from_record(r).to_record() for r in records] == records  # the contract's shape, phase included
    assert [(r["pk"], r["sk"]) for r in records] == sorted((r["pk"], r["sk"]) for r in records)


def test_the_sql_stages_compute_the_reference_windows(labelled_input: LabelledInput, tmp_path: Path) -> None:
    # given the labelled input as a bounded file
    source = labelled_input.write(tmp_path / "events.jsonl")
    config = backtest_config(labelled_input.config, source, tmp_path / "unused.jsonl")
    # when the SQL stages' aggregate table is written out (every window, also those the end of input closes)
    t_env = job.create_environment(config, bounded=True).t_env
    t_env.execute_sql(sources.source_ddl(config))  # type: ignore[attr-defined]
    columns = ", ".join(f"`{name}` {sql_type}" for name, sql_type in stages.WINDOW_COLUMNS)
    t_env.execute_sql(
        f"CREATE TEMPORARY TABLE windows_out ({columns}) WITH ("  # type: ignore[attr-defined]
        f"'connector' = 'filesystem', 'path' = '{tmp_path / 'windows'}', 'format' = 'json')"
    )
    stages.register(t_env, config).windows.execute_insert("windows_out").wait()  # type: ignore[arg-type]
    windows = [
        window_from_values(json.loads(line))
        for part in sorted((tmp_path / "windows").rglob("part-*"))
        for line in part.read_text().splitlines()
    ]
    # then the client windows are exactly the reference's candidates, population figures to the last bit
    reference = aggregate(labelled_input.events, WindowGeometry.from_config(config.windows))
    admit = CandidateFloors.from_settings(config.detect).admit
    clients = sorted((w for w in windows if isinstance(w, ClientWindow)), key=lambda w: (w.window_end, w.client_ip))
    assert clients == [w for w in reference.client_windows if admit(w)]
    assert 0 < len(clients) < len(reference.client_windows) / 100  # the candidate filter does filter
    # and the route windows are the reference's: counts exactly, latency sums to rounding in the last bits
    routes = sorted((w for w in windows if isinstance(w, RouteWindow)), key=lambda w: (w.window_end, w.route))
    assert len(routes) == len(reference.route_windows)
    for got, want in zip(routes, reference.route_windows, strict=True):
        assert (
            got.route,
            got.window_start,
            got.window_end,
            got.count,
            got.errors_4xx,
            got.errors_5xx,
            got.latency_max,
            got.top_client_count,
        ) == (
            want.route,
            want.window_start,
            want.window_end,
            want.count,
            want.errors_4xx,
            want.errors_5xx,
            want.latency_max,
            want.top_client_count,
        )
        assert got.latency_mean == pytest.approx(want.latency_mean, rel=1e-12)
        assert got.latency_log_mean == pytest.approx(want.latency_log_mean, rel=1e-12, abs=1e-12)


def test_backtest_of_an_empty_file_writes_an_empty_output(tmp_path: Path) -> None:
    source = tmp_path / "events.jsonl"
    write_jsonl([], source)
    output = tmp_path / "anomalies.jsonl"

    result = run_backtest(small_config(), source, output)

    assert result.anomalies == []
    assert output.read_text() == ""


def test_coarse_windows_of_minutes_run_and_match_the_pure_python_backtest(
    labelled_input: LabelledInput, tmp_path: Path
) -> None:
    # given five-minute windows sliding by a minute and a 30 s delay (what a user with coarse traffic sets:
    # these failed to parse as `INTERVAL '300' SECOND`)
    windows = {"route.size.s": "300", "route.slide.s": "60", "client.size.s": "300", "watermark.delay.s": "30"}
    config = labelled_input.config.model_copy(update={"windows": WindowConfig.model_validate(windows)})
    source = labelled_input.write(tmp_path / "events.jsonl")

    # when
    result = run_backtest(config, source, tmp_path / "anomalies.jsonl")

    # then the job ran over those windows and says what the reference says
    expected = backtest(
        labelled_input.events,
        config.detect,
        WindowGeometry.from_config(config.windows),
        watermark_delay_ms=config.windows.watermark_delay_s * 1000,
    ).anomalies
    assert expected, "the reference finds something at this window size"
    assert comparable(expected) != comparable(labelled_input.expected)  # the window size mattered
    assert comparable(result.anomalies) == comparable(expected)
