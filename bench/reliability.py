"""Reliability figures: what a Kinesis outage costs a Lambda environment, and buffered shutdown within a deadline.

1. Lambda environment hold time per invocation (the runtime's response post to the extension's
   next call: how long Lambda keeps the environment after the client has its answer), through the
   local Lambda runtime (``pulse_local.lambda_runtime``) with after-response delivery: Kinesis
   healthy (the embedded emulator), Kinesis refused (a closed loopback port) with the circuit
   breaker, and refused without it (``PULSE_BREAKER_FAILURES`` too high to open). Each run also
   counts ``events_lost``: requests minus the ids on the stream or in the fallback log.
2. Buffered shutdown: 10,000 events queued in front of a black-holed Kinesis (a loopback listener
   that accepts and never answers), ``close()`` against a 30 s deadline: the drain time and the
   events neither on the stream nor in the fallback log.

    .venv/bin/python bench/reliability.py            # ~1 min
    .venv/bin/python bench/reliability.py --invocations 200

The last line holds every figure as name=value.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lambda_api.events import RequestEvent  # noqa: E402
from lambda_api.publishers.delivery import KinesisDelivery, kinesis_client  # noqa: E402
from lambda_api.publishers.fallback import FallbackLog, read_fallback_lines  # noqa: E402
from lambda_api.publishers.kinesis import BufferedKinesisPublisher  # noqa: E402
from pulse_local.apigw import http_api_event  # noqa: E402
from pulse_local.emulator import Emulator, create_stream, read_records, start_moto  # noqa: E402
from pulse_local.lambda_runtime import LocalLambdaRuntime  # noqa: E402

HANDLER = "lambda_api.handler.handler"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class BlackHole:
    """A loopback listener that accepts connections and never answers."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        self.server.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                connection, _ = self.server.accept()
                self.held.append(connection)
            except OSError:
                continue

    def close(self) -> None:
        self.stop.set()
        for connection in self.held:
            connection.close()
        self.server.close()


def fallback_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with path.open() as lines:
        return {entry.record.partition_key for entry in read_fallback_lines(lines) if not isinstance(entry, ValueError)}


def lambda_hold(
    emulator: Emulator, workdir: Path, scenario: str, invocations: int, interval_s: float
) -> dict[str, float]:
    stream = f"bench-rel-{uuid.uuid4().hex[:8]}"
    create_stream(emulator, stream, shards=1)
    fallback = workdir / f"{scenario}.fallback.log"
    env = {**emulator.env, "PULSE_STREAM_NAME": stream, "PULSE_FALLBACK_LOG": str(fallback)}
    if scenario != "healthy":
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{closed_port()}"
    if scenario == "refused_no_breaker":
        env["PULSE_BREAKER_FAILURES"] = "1000"
    holds: list[float] = []
    clients: list[float] = []
    with LocalLambdaRuntime(HANDLER, env, log_path=workdir / f"{scenario}.log") as runtime:
        for n in range(invocations):
            invocation = runtime.invoke(http_api_event("GET", f"/items/{n % 7 + 1}"), wait="complete")
            if invocation.response_at is None or invocation.completed_at is None:
                raise RuntimeError(f"{scenario}: invocation {n} did not complete ({invocation.outcome})")
            holds.append((invocation.completed_at - invocation.response_at) * 1000)
            clients.append(invocation.client_ms)
            pause = invocation.queued_at + interval_s - time.monotonic()
            if pause > 0:
                time.sleep(pause)
    on_stream = {record["partition_key"] for record in read_records(emulator, stream)}
    found = on_stream | fallback_ids(fallback)
    figures = {
        "hold_p50_ms": round(statistics.median(holds), 2),
        "hold_p99_ms": round(percentile(holds, 99), 2),
        "client_p99_ms": round(percentile(clients, 99), 2),
        "events_lost": invocations - len(found),
        "on_stream": len(on_stream),
    }
    print(f"lambda {scenario:20} " + " ".join(f"{key}={value}" for key, value in figures.items()))
    return figures


def shutdown_drain(workdir: Path, queued: int, deadline_s: float) -> dict[str, float]:
    hole = BlackHole()
    fallback = workdir / "shutdown.fallback.log"
    try:
        # Loopback only: the black hole is the endpoint; the credentials are dummies it never checks.
        os.environ.update(
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{hole.port}", AWS_DEFAULT_REGION="us-east-1",
            AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        )  # fmt: skip
        client = kinesis_client(0.2, 0.5)
        publisher = BufferedKinesisPublisher(
            KinesisDelivery("pulse-events", client), FallbackLog(str(fallback)),
            budget_s=5.0, flush_interval_s=60, max_events=queued, shutdown_deadline_s=deadline_s,
        )  # fmt: skip
        ids = []
        for _ in range(queued):
            event = RequestEvent(1, uuid.uuid4().hex, time.time_ns() // 1_000_000, "GET", "/items/{item_id}", "",
                                 200, 1.0, "192.0.2.1", "bench", 10)  # fmt: skip
            ids.append(event.id)
            publisher.publish(event)
        started = time.monotonic()
        publisher.close()
        took = time.monotonic() - started
    finally:
        hole.close()
    lost = len(set(ids) - fallback_ids(fallback))
    print(f"shutdown: {queued} queued, black-holed Kinesis, deadline {deadline_s:.0f} s: {took:.2f} s, lost {lost}")
    return {"shutdown_drain_s": round(took, 2), "shutdown_events_lost": lost, "shutdown_deadline_s": deadline_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--invocations", type=int, default=100, help="per Lambda scenario")
    parser.add_argument("--rps", type=float, default=50.0, help="pace of one Lambda environment")
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--deadline-s", type=float, default=30.0)
    args = parser.parse_args()
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="pulse-reliability-") as tmp:
        workdir = Path(tmp)
        emulator = start_moto(log_path=workdir / "moto.log")
        emulator.apply_env()
        try:
            for scenario in ("healthy", "refused", "refused_no_breaker"):
                for key, value in lambda_hold(emulator, workdir, scenario, args.invocations, 1 / args.rps).items():
                    figures[f"lambda_{scenario}_{key}"] = value
        finally:
            emulator.restore_env()
            emulator.stop()
        figures.update(shutdown_drain(workdir, args.queued, args.deadline_s))
    print(json.dumps(figures), file=sys.stderr)
    print(" ".join(f"{key}={value}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
