"""Flink-test helpers: one JVM for the session, small windows, streaming jobs run in-process."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from flink_app import job
from flink_app.config import JobConfig
from flink_app.operator import METRIC_GROUP
from pulse_local.emulator import free_port

# Small windows keep the tests short: a 4 s route window sliding by 2 s, 4 s client windows.
WINDOWS = {"route.size.s": "4", "route.slide.s": "2", "client.size.s": "4",
           "watermark.delay.s": "1", "idle.timeout.s": "2"}
DETECT = {"warmup.windows": "4"}


def small_config(*groups: dict[str, Any]) -> JobConfig:
    """A configuration with test-sized windows plus the given property groups."""
    return JobConfig.from_property_groups([
        {"PropertyGroupId": "pulse.windows", "PropertyMap": WINDOWS},
        {"PropertyGroupId": "pulse.detect", "PropertyMap": DETECT},
        {"PropertyGroupId": "pulse.job", "PropertyMap": {"checkpoint.interval.s": "2",
                                                         "python.bundle.time.ms": "100"}},
        *groups,
    ])


@pytest.fixture(scope="session", autouse=True)
def _jvm_settings() -> None:
    """The JVM starts once per session and keeps the environment it started with: the AWS SDK
    must not speak CBOR to the emulator, whichever test starts it."""
    os.environ["CBOR_ENABLED"] = "false"
    os.environ["AWS_CBOR_DISABLE"] = "true"
    if "-Daws.cborEnabled=false" not in os.environ.get("JVM_ARGS", ""):
        os.environ["JVM_ARGS"] = (os.environ.get("JVM_ARGS", "") + " -Daws.cborEnabled=false").strip()


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
        self.rest = f"http://127.0.0.1:{rest_port}"

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.rest + path, timeout=5) as response:
            return json.load(response)

    def status(self) -> str:
        return str(self.client.get_job_status().result().name)

    def metric(self, name: str) -> int:
        """Sum over subtasks of the job's ``kinesisanalytics.<name>`` metric (0 while not yet reported)."""
        name = f"{METRIC_GROUP}.{name}"
        job_id = str(self.client.get_job_id())
        total = 0
        for vertex in self._get(f"/jobs/{job_id}")["vertices"]:
            base = f"/jobs/{job_id}/vertices/{vertex['id']}/metrics"
            wanted = [m["id"] for m in self._get(base) if m["id"].split(".", 2)[-1] == name]
            if wanted:
                total += sum(int(float(m["value"])) for m in self._get(f"{base}?get={','.join(wanted)}"))
        return total


@contextmanager
def running_job(config: JobConfig) -> Iterator[RunningJob]:
    """Submit the streaming job for ``config``; cancel it when the block ends."""
    rest_port = free_port()
    flink_conf = {"rest.port": str(rest_port), "metrics.fetcher.update-interval": "1000"}
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
    json.dumps({"v": 1, "ts": START_MS + 5000, "route": "/x", "status": "teapot", "latency_ms": 1,
                "client_ip": "10.9.9.9"}),
    json.dumps({"v": 1, "ts": START_MS + 6000, "route": "/x" * 20000, "status": 200, "latency_ms": 1,
                "client_ip": "10.9.9.9"}),
)


def incident(start_ms: int, seconds: int, spiked_route: str, spike_at_s: int) -> list[dict[str, Any]]:
    """Steady traffic on 4 routes (40 requests/s) with a tenfold two-second spike on one route."""
    from pulse_local.steady import Spike, steady

    spike = Spike(spiked_route, start_ms + spike_at_s * 1000, 2_000, 400)
    return list(steady(start_ms, seconds * 1000, rate_per_s=40, routes=4, clients=25, spikes=(spike,)))
