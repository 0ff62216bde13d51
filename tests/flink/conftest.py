"""Flink-test helpers: one JVM for the session (whichever test starts it: the job gives it its AWS
settings itself), small windows, streaming jobs run in-process, and one
labelled input (with its pure-Python and Flink backtests) shared by the backtest and streaming tests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flink_app import job
from flink_app.cli import BacktestResult, run_backtest
from flink_app.config import JobConfig
from flink_app.detect.backtest import backtest
from pulse_contract import Anomaly
from pulse_local.emulator import Emulator, free_port
from pulse_local.flink_rest import FlinkRest
from pulse_local.traffic import Injection, TrafficGenerator, TrafficSpec

# Small windows keep the tests short: a 4 s route window sliding by 2 s, 4 s client windows.
WINDOWS = {
    "route.size.s": "4",
    "route.slide.s": "2",
    "client.size.s": "4",
    "watermark.delay.s": "1",
    "idle.timeout.s": "2",
}
# Judged after 4 windows; the test traffic has no routine bursts, so they count as known soon after.
DETECT = {"route.warmup.windows": "4", "route.burst.warmup.windows": "8"}


@pytest.fixture(autouse=True)
def _needs_the_connector_jar(connector_jar: Path) -> Path:
    """Every job loads the connector JAR (it holds the function that parses each record): without
    it a Flink test is skipped or fails as ``connector_jar`` says, not half-way through a job."""
    return connector_jar


def small_config(*groups: dict[str, Any]) -> JobConfig:
    """A configuration with test-sized windows plus the given property groups."""
    return JobConfig.from_property_groups(
        [
            {"PropertyGroupId": "pulse.windows", "PropertyMap": WINDOWS},
            {"PropertyGroupId": "pulse.detect", "PropertyMap": DETECT},
            {
                "PropertyGroupId": "pulse.job",
                "PropertyMap": {"checkpoint.interval.s": "2", "python.bundle.time.ms": "100"},
            },
            *groups,
        ]
    )


def poll(condition: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.5) -> Any:
    """Call ``condition`` until it returns something truthy; fail naming ``what`` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(every_s)


class RunningJob:
    """A streaming job submitted to the local mini-cluster, with its REST API for metrics."""

    def __init__(self, client: Any, rest_port: int) -> None:
        self.client = client
        self.rest = FlinkRest.on_port(rest_port)

    def checkpoint(self, timeout_s: float = 60) -> str:
        """Take a checkpoint now (Flink's REST API) and return where it is stored."""
        job_id = str(self.client.get_job_id())
        trigger = self.rest.post(f"/jobs/{job_id}/checkpoints", {"checkpointType": "FULL"})["request-id"]

        def completed() -> int | None:
            answer = self.rest.get(f"/jobs/{job_id}/checkpoints/{trigger}")
            if answer["status"]["id"] != "COMPLETED":
                return None
            if answer["operation"].get("failure-cause"):
                pytest.fail(f"checkpoint failed: {answer['operation']['failure-cause']}")
            return int(answer["operation"]["checkpointId"])

        checkpoint_id = poll(completed, timeout_s, "the checkpoint")
        return str(self.rest.get(f"/jobs/{job_id}/checkpoints/details/{checkpoint_id}")["external_path"])

    def status(self) -> str:
        return str(self.client.get_job_status().result().name)

    def metric(self, name: str) -> int:
        """Sum over subtasks of the job's ``kinesisanalytics.<name>`` metric (0 while not yet reported)."""
        return self.rest.job_metric(str(self.client.get_job_id()), name)


@contextmanager
def running_job(config: JobConfig, flink_conf: dict[str, str] | None = None) -> Iterator[RunningJob]:
    """Submit the streaming job for ``config``; cancel it when the block ends."""
    rest_port = free_port()
    flink_conf = {"rest.port": str(rest_port), "metrics.fetcher.update-interval": "1000", **(flink_conf or {})}
    pipeline = job.build(config, bounded=False, flink_conf=flink_conf)
    client = job.execute_async(pipeline)
    running = RunningJob(client, rest_port)
    try:
        yield running
    finally:
        client.cancel().result()


START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: a fixed past, so watermarks never wait on the wall clock
MALFORMED_RECORDS = (
    "not json",
    '"a string"',
    '{"ts": "yesterday", "route": "/x"}',
    '{"v": 1}',
    json.dumps(
        {"v": 1, "ts": START_MS + 5000, "route": "/x", "status": "teapot", "latency_ms": 1, "client_ip": "10.9.9.9"}
    ),
    json.dumps(
        {"v": 1, "ts": START_MS + 6000, "route": "/x" * 20000, "status": 200, "latency_ms": 1, "client_ip": "10.9.9.9"}
    ),
)


def incident(start_ms: int, seconds: int, spiked_route: str, spike_at_s: int) -> list[dict[str, Any]]:
    """Steady traffic on 4 routes (40 requests/s) with a tenfold two-second spike on one route."""
    from pulse_local.steady import Spike, steady

    spike = Spike(spiked_route, start_ms + spike_at_s * 1000, 2_000, 400)
    return list(steady(start_ms, seconds * 1000, rate_per_s=40, routes=4, clients=25, spikes=(spike,)))


# --- one labelled input for the backtest and streaming tests ------------------------------------------

# 78 minutes of realistic traffic (~43 000 events), one injection of each of the eight kinds, default
# windows and detector settings: a few seconds of job time.
LABELLED_SPEC = TrafficSpec(seed=424242, duration_s=4_680, peak_rps=12.0, start_phase=0.45)


@dataclass(frozen=True)
class LabelledInput:
    """Labelled events as a JSON-lines file (malformed lines included) and what they must give."""

    lines: list[str]  # as written, in order: some events twice (at-least-once delivery)
    malformed: int  # how many of ``lines`` are malformed
    events: list[dict[str, Any]]  # the valid ones
    labels: list[Injection]
    config: JobConfig
    expected: list[Anomaly]  # the pure-Python backtest (flink_app/detect/backtest.py) of ``events``
    last_watermark: int  # the last regular watermark: newest event time - delay - 1 ms

    def write(self, path: Path, lines: Iterable[str] | None = None) -> Path:
        scratch = path.with_name("." + path.name)  # a monitored directory ignores hidden files
        scratch.write_text("".join(line + "\n" for line in (self.lines if lines is None else lines)))
        scratch.rename(path)
        return path


def malformed_lines(near: dict[str, Any]) -> list[str]:
    """Records the job must count and set aside; those with a usable ``ts`` take ``near``'s, so that
    they do not move the watermark."""
    ts = near["ts"]
    return [
        "not json",
        '"a string"',
        '{"ts": "yesterday", "route": "/x"}',
        '{"v": 1}',
        json.dumps({**near, "status": "teapot"}),
        json.dumps({**near, "ts": ts, "route": "/x" * 20_000}),
    ]


@pytest.fixture(scope="session")
def labelled_input() -> LabelledInput:
    generator = TrafficGenerator(LABELLED_SPEC)
    labels = generator.plan(per_kind=1)
    events = list(generator.events(labels))
    # Every 50th event is delivered twice (a client retry): the job counts it once.
    lines = [json.dumps(e) for n, e in enumerate(events) for _ in range(2 if n % 50 == 25 else 1)]
    # Malformed lines at the end of the first half (the streaming test writes the halves as two files).
    half = len(lines) // 2
    bad = malformed_lines(json.loads(lines[half - 1]))
    lines = lines[:half] + bad + lines[half:]
    config = JobConfig.from_property_groups(
        [
            {
                "PropertyGroupId": "pulse.job",
                "PropertyMap": {"checkpoint.interval.s": "2", "python.bundle.time.ms": "100"},
            },
        ]
    )
    delay_ms = config.windows.watermark_delay_s * 1000
    expected = backtest(events, config.detect, watermark_delay_ms=delay_ms).anomalies
    last_watermark = max(e["ts"] for e in events) - delay_ms - 1
    return LabelledInput(lines, len(bad), events, labels, config, expected, last_watermark)


@dataclass(frozen=True)
class FlinkBacktest:
    result: BacktestResult
    output_lines: list[str]


@pytest.fixture(scope="session")
def flink_backtest(labelled_input: LabelledInput, tmp_path_factory: pytest.TempPathFactory) -> FlinkBacktest:
    """``python -m flink_app backtest``'s code path on the labelled input, at the default parallelism."""
    scratch = tmp_path_factory.mktemp("backtest")
    source = labelled_input.write(scratch / "events.jsonl")
    output = scratch / "anomalies.jsonl"
    result = run_backtest(labelled_input.config, source, output)
    return FlinkBacktest(result, output.read_text().splitlines())


def comparable(records: Iterable[Anomaly | dict[str, Any]]) -> list[dict[str, Any]]:
    """Records without their wall-clock fields (detected_at, ttl), sorted by key and phase."""
    out = []
    for record in records:
        values = record.to_record() if isinstance(record, Anomaly) else Anomaly.from_record(record).to_record()
        del values["detected_at"], values["ttl"]
        out.append(values)
    return sorted(out, key=lambda r: (r["pk"], r["sk"], r["phase"]))


def job_groups(emulator: Emulator, stream_arn: str, table: str) -> list[dict[str, Any]]:
    """Property groups of a streaming job from a Kinesis stream of the emulator to one of its tables."""
    return [
        {
            "PropertyGroupId": "pulse.source",
            "PropertyMap": {
                "stream.arn": stream_arn,
                "aws.endpoint": emulator.endpoint,
                "init.position": "TRIM_HORIZON",
            },
        },
        {
            "PropertyGroupId": "pulse.sink",
            "PropertyMap": {"table.name": table, "aws.endpoint": emulator.endpoint, "aws.region": emulator.region},
        },
    ]
