"""What monitoring costs a Lambda client: the handler under its real runtime client, per delivery mode.

Three execution environments of ``lambda_api.handler.handler``, each the real runtime interface
client (awslambdaric) under the local Lambda runtime (``pulse_local.lambda_runtime``: Runtime and
Extensions APIs, freezing the process between invocations), against one embedded moto:

- off: ``PULSE_PUBLISHER=off``;
- in_request: ``PULSE_LAMBDA_DELIVERY=in_request`` (PutRecords before the handler returns);
- after_response: the default (the internal extension puts the events after the response).

Invocations go to one environment at a time, in blocks that rotate between them, which cancels
most drift of a shared machine, each environment paced like steady traffic: one request every
``--interval-ms`` (10 ms), or right after the previous one when that took longer. The pacing
matters: a process that did anything at all for a few milliseconds since its last request
(delivering events, or merely waiting) runs the next one with cold caches, up to twice as slowly
as back to back; unpaced, the unmonitored environment alone would run hot. With two or more CPUs
the runtimes are pinned to one CPU, moto and this process (the local runtime's server) to another.

Per invocation the local runtime records the client-visible time (invocation handed to the
runtime -> response posted: what API Gateway waits for) and the billed time (-> the runtime and
every extension done). At the end every stream is read back: each monitored invocation must be
exactly one event, with nothing in the fallback log.

    .venv/bin/python bench/lambda_overhead.py                      # 3 x 2,000 invocations, ~1.5 min
    .venv/bin/python bench/lambda_overhead.py --invocations 5000 --interval-ms 20

The last line is ``name=value`` pairs, among them lambda_after_response_added_p50_ms (client-visible
p50, after-response minus off; goal <= 1 ms), lambda_in_request_added_p50_ms, the p99s, the billed
time each mode adds, and the machine's load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from pulse_local.apigw import http_api_event
from pulse_local.emulator import Emulator, create_stream, read_records, start_moto
from pulse_local.lambda_runtime import Invocation, LocalLambdaRuntime

ROOT = Path(__file__).resolve().parent.parent

HANDLER = "lambda_api.handler.handler"
MODES = ("off", "in_request", "after_response")
# A realistic mix: catalog reads, a user's orders, search, a miss, health.
PATHS = ("/items/7", "/items/23", "/users/3/orders", "/users/11", "/search?q=lamp", "/items/999", "/health")


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def stream_keys(emulator: Emulator, stream: str) -> list[str]:
    """Every record's partition key (the event id) on the stream."""
    return [record["partition_key"] for record in read_records(emulator, stream)]


def pin(pid: int | None, cpus: set[int]) -> None:
    if pid and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(pid, cpus)


def environments(emulator: Emulator, workdir: Path) -> dict[str, tuple[LocalLambdaRuntime, str | None, Path]]:
    """One local Lambda environment per mode: (runtime, stream or None, fallback log)."""
    made: dict[str, tuple[LocalLambdaRuntime, str | None, Path]] = {}
    for mode in MODES:
        fallback = workdir / f"lambda-{mode}.fallback.log"
        fallback.unlink(missing_ok=True)
        env = {**emulator.env, "PULSE_FALLBACK_LOG": str(fallback)}
        stream = None
        if mode == "off":
            env["PULSE_PUBLISHER"] = "off"
        else:
            stream = f"bench-{mode.replace('_', '-')}-{uuid.uuid4().hex[:8]}"
            create_stream(emulator, stream, shards=4)  # moto's put cost grows with a shard's length
            env.update({"PULSE_STREAM_NAME": stream, "PULSE_LAMBDA_DELIVERY": mode})
        runtime = LocalLambdaRuntime(HANDLER, env, log_path=workdir / f"lambda-{mode}.log")
        runtime.start()
        pin(runtime.pid, {0})
        made[mode] = (runtime, stream, fallback)
    return made


def run(
    emulator: Emulator, invocations: int, warmup: int, block: int, interval_s: float, workdir: Path
) -> dict[str, Any]:
    events = []
    for path in PATHS:
        raw_path, _, query = path.partition("?")
        events.append(http_api_event("GET", raw_path, query=query, user_agent="pulse-bench/1"))
    envs = environments(emulator, workdir)
    measured: dict[str, list[Invocation]] = {mode: [] for mode in MODES}

    def paced(runtime: LocalLambdaRuntime, n: int) -> Invocation:
        invocation = runtime.invoke(events[n % len(events)], wait="complete")
        pause = invocation.queued_at + interval_s - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        return invocation

    try:
        for runtime, _, _ in envs.values():
            for n in range(warmup):
                paced(runtime, n)
        order = list(MODES)
        for start in range(0, invocations, block):
            for mode in order:
                runtime = envs[mode][0]
                for n in range(start, min(start + block, invocations)):
                    invocation = paced(runtime, n)
                    status = invocation.payload()["statusCode"]
                    if status not in (200, 404):
                        raise RuntimeError(f"{mode}: unexpected status {status}")
                    measured[mode].append(invocation)
            order = order[1:] + order[:1]
    finally:
        for runtime, _, _ in envs.values():
            runtime.close()

    figures: dict[str, Any] = {}
    client = {mode: [i.client_ms for i in measured[mode]] for mode in MODES}
    billed = {mode: [i.duration_ms for i in measured[mode]] for mode in MODES}
    for mode in MODES:
        p50, p99 = statistics.median(client[mode]), percentile(client[mode], 99)
        b50 = statistics.median(billed[mode])
        print(
            f"lambda {mode:14} client p50={p50:.3f} ms p99={p99:.3f} ms  billed p50={b50:.3f} ms  n={len(client[mode])}"
        )
        figures[f"lambda_{mode}_p50_ms"] = round(p50, 3)
        figures[f"lambda_{mode}_p99_ms"] = round(p99, 3)
        figures[f"lambda_{mode}_billed_p50_ms"] = round(b50, 3)
    for mode in ("in_request", "after_response"):
        figures[f"lambda_{mode}_added_p50_ms"] = round(
            statistics.median(client[mode]) - statistics.median(client["off"]), 3
        )
        figures[f"lambda_{mode}_added_p99_ms"] = round(percentile(client[mode], 99) - percentile(client["off"], 99), 3)
        added_billed = statistics.median(billed[mode]) - statistics.median(billed["off"])
        figures[f"lambda_{mode}_billed_added_p50_ms"] = round(added_billed, 3)
        _, stream, fallback = envs[mode]
        assert stream is not None
        keys = stream_keys(emulator, stream)
        lines = fallback.read_text().splitlines() if fallback.exists() else []
        fell_back = {json.loads(line)["partition_key"] for line in lines}
        # every invocation (warm-up included) is one event: on the stream or in the fallback log. A call that
        # timed out after the emulator stored its records is in both (at least once, as documented).
        figures[f"lambda_{mode}_events_missing"] = invocations + warmup - len(set(keys) | fell_back)
        figures[f"lambda_{mode}_events_duplicated"] = len(keys) - len(set(keys))
        figures[f"lambda_{mode}_events_fallback"] = len(lines)
        figures[f"lambda_{mode}_events_fallback_also_on_stream"] = len(fell_back & set(keys))
    return figures


def measure(
    invocations: int = 2000,
    warmup: int = 100,
    block: int = 50,
    interval_ms: float = 10.0,
    workdir: Path | None = None,
) -> dict[str, Any]:
    """The figures, with an embedded moto of their own (``bench/api_overhead.py`` calls this too)."""
    workdir = workdir or ROOT / "bench" / "out"
    workdir.mkdir(parents=True, exist_ok=True)
    emulator = start_moto(log_path=workdir / "moto-lambda.log")
    pin(emulator.process.pid if emulator.process else None, {1})
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    pin(os.getpid(), {1})
    try:
        figures = run(emulator, invocations, warmup, block, interval_ms / 1000.0, workdir)
    finally:
        emulator.stop()
        if affinity is not None:
            os.sched_setaffinity(0, affinity)
    figures["lambda_interval_ms"] = interval_ms
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--invocations", type=int, default=2000, help="measured invocations per mode (>= 2,000)")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured invocations per mode first")
    parser.add_argument("--block", type=int, default=50, help="invocations per mode before rotating")
    parser.add_argument("--interval-ms", type=float, default=10.0, help="one request per environment this often")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    began = time.monotonic()
    figures = measure(args.invocations, args.warmup, args.block, args.interval_ms)
    figures["lambda_bench_s"] = round(time.monotonic() - began, 1)
    # Other work on the machine skews every figure; say how busy it was.
    figures["load_avg_1m"] = round(max(load_before, os.getloadavg()[0]), 2)
    print(" ".join(f"{name}={value}" for name, value in figures.items()))


if __name__ == "__main__":
    main()
