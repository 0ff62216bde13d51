"""What monitoring costs the API: server throughput and Lambda latency, monitoring on vs off.

Server: the example app under uvicorn on loopback (one worker each), three times: with
``PULSE_PUBLISHER=off``; with the buffered Kinesis publisher delivering into an embedded moto
server ("on"); and with the same publisher delivering to a minimal local endpoint that accepts
PutRecords and stores nothing ("fake": what the publisher costs without an emulator working on
the same machine). A closed-loop load generator in another process (keep-alive HTTP/1.1 over raw
sockets, so the server, not the generator, is the bottleneck) drives one server at a time in
short windows, in rotating order, which cancels most of the drift of a shared machine. With
two or more CPUs the servers are pinned to one CPU and the generator, moto and the fake endpoint
to another, moto and the endpoint at the lowest priority so that they never starve the generator.
Figures: requests per second (median of the windows; ratios are medians over rounds of on/off)
and the server's CPU time per request. At the end the servers stop gracefully and the stream is
read back: every request served with monitoring on must be exactly one event.

Lambda: the handler invoked in-process with API Gateway v2 events: off; on with the per-request
publisher and the emulator round trip; on with the same publisher over a stubbed Kinesis client
(everything but the network). Invocations of the three are interleaved in blocks.

    .venv/bin/python bench/api_overhead.py            # ~1.5 minutes
    .venv/bin/python bench/api_overhead.py --quick    # ~40 seconds, noisier

The last line is ``name=value`` pairs, among them server_rps_ratio (on/off),
server_rps_ratio_fake_kinesis, server_cpu_ratio (CPU per request off/on: the throughput ratio a
dedicated core would give), lambda_p50_added_ms (emulator round trip) and
lambda_stub_p50_added_ms (publisher stubbed), and the machine's load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from pulse_local.emulator import Emulator, create_stream, free_port, read_records, start_moto

ROOT = Path(__file__).resolve().parent.parent

# A realistic mix: catalog reads, a user's orders, search, a miss, health.
PATHS = ("/items/7", "/items/23", "/users/3/orders", "/users/11", "/search?q=lamp", "/items/999", "/health")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process (Linux /proc); 0 where unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


# Load generator (its own process)


async def _connection(port: int, until: float, counts: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    requests = [f"GET {p} HTTP/1.1\r\nHost: bench\r\nUser-Agent: pulse-bench/1\r\n\r\n".encode() for p in PATHS]
    position = random.randrange(len(requests))
    try:
        while time.perf_counter() < until:
            writer.write(requests[position % len(requests)])
            position += 1
            head = await reader.readuntil(b"\r\n\r\n")
            start = head.find(b"content-length:") + 15
            await reader.readexactly(int(head[start : head.find(b"\r\n", start)]))
            counts["requests"] += 1
            if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.1 404")):
                counts["unexpected"] += 1
    finally:
        writer.close()


async def _window(port: int, pid: int, concurrency: int, seconds: float) -> dict[str, Any]:
    counts = {"requests": 0, "unexpected": 0}
    cpu_before, began = cpu_seconds(pid), time.perf_counter()
    until = began + seconds
    await asyncio.gather(*(_connection(port, until, counts) for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    return {**counts, "rps": counts["requests"] / elapsed, "server_cpu_s": cpu_seconds(pid) - cpu_before}


async def _schedule(args: argparse.Namespace) -> dict[str, Any]:
    servers = {}
    for spec in args.servers.split(","):  # name:port:pid
        name, port, pid = spec.split(":")
        servers[name] = (int(port), int(pid))
    report: dict[str, Any] = {}
    for config, (port, pid) in servers.items():  # warm-up, not measured
        report[f"warmup_{config}"] = (await _window(port, pid, args.concurrency, args.warmup))["requests"]
    windows = []
    order = list(servers)
    for n in range(args.pairs):
        for config in order if n % 2 == 0 else reversed(order):
            port, pid = servers[config]
            windows.append({"config": config, "pair": n, **await _window(port, pid, args.concurrency, args.window)})
    return {**report, "windows": windows}


def load_generator_main(args: argparse.Namespace) -> None:
    report = asyncio.run(_schedule(args))
    print(json.dumps({**report, "generator_cpu_s": time.process_time()}))


# A Kinesis endpoint that costs (almost) nothing: PutRecords accepted, nothing stored. It separates
# what the publisher costs the server from what an emulator working on the same machine costs it.


async def _fake_kinesis_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).lower()
            start = head.find(b"content-length:") + 15
            body = await reader.readexactly(int(head[start : head.find(b"\r\n", start)]))
            entry = {
                "SequenceNumber": "49590338271490256608559692538361571095921575989136588898",
                "ShardId": "shardId-0",
            }
            answer = json.dumps({"FailedRecordCount": 0, "Records": [entry] * body.count(b'"PartitionKey"')}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.1\r\n")
            writer.write(b"content-length: %d\r\n\r\n%s" % (len(answer), answer))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def fake_kinesis_main(port: int) -> None:
    async def serve() -> None:
        server = await asyncio.start_server(_fake_kinesis_connection, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


# Server part


def _pin(pid: int | None, cpus: set[int]) -> None:
    if pid and hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2:
        os.sched_setaffinity(pid, cpus)


def _background(pid: int | None) -> None:
    """Lowest CPU priority: the Kinesis side shares a CPU with the load generator and must not starve it
    (a starved generator leaves the server idle, which would read as monitoring overhead)."""
    if pid and hasattr(os, "setpriority"):
        os.setpriority(os.PRIO_PROCESS, pid, 19)


def _serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "uvicorn", "lambda_api.app:create_app", "--factory", "--host", "127.0.0.1",
               "--port", str(port), "--no-access-log", "--log-level", "warning"]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _pin(server.pid, {0})
    return server


def _wait_until_serving(port: int, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Poll until the server answers; exactly one request (GET /health) reaches the app."""
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("uvicorn did not answer")


def partition_keys(emulator: Emulator, stream: str) -> list[str]:
    """Every record's partition key (the event id) on the stream."""
    return [record["partition_key"] for record in read_records(emulator, stream)]


def server_bench(emulator: Emulator, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_") and k != "AWS_LAMBDA_FUNCTION_NAME"}
    base.update(emulator.env)
    stream = f"bench-{uuid.uuid4().hex[:8]}"
    fallback = workdir / f"{stream}.fallback.log"
    # Several shards: moto's put cost grows with a shard's length, the real service's does not.
    create_stream(emulator, stream, shards=8)
    fake_port = free_port()
    fake = subprocess.Popen([sys.executable, __file__, "--fake-kinesis", str(fake_port)], cwd=ROOT)
    _pin(fake.pid, {1})
    _background(fake.pid)
    on_env = {**base, "PULSE_PUBLISHER": "kinesis", "PULSE_STREAM_NAME": stream, "PULSE_PUBLISHER_MODE": "buffered",
              "PULSE_FALLBACK_LOG": str(fallback)}  # fmt: skip
    envs = {
        "off": {**base, "PULSE_PUBLISHER": "off"},
        "on": on_env,
        "fake": {
            **on_env,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{fake_port}",
            "PULSE_FALLBACK_LOG": str(workdir / f"{stream}.fake.fallback.log"),
        },
    }
    ports = {config: free_port() for config in envs}
    servers = {config: _serve(env, ports[config]) for config, env in envs.items()}
    try:
        for config, server in servers.items():
            _wait_until_serving(ports[config], server)
        spec = ",".join(f"{config}:{ports[config]}:{server.pid}" for config, server in servers.items())
        generator = subprocess.Popen(
            [sys.executable, __file__, "--load-generator", "--servers", spec, "--pairs", str(args.pairs),
             "--window", str(args.window), "--warmup", str(args.warmup), "--concurrency", str(args.concurrency)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        _pin(generator.pid, {1})
        out, _ = generator.communicate(timeout=len(envs) * (args.pairs * args.window + args.warmup) + 120)
        report = json.loads(out.strip().splitlines()[-1])
    finally:
        for server in servers.values():
            server.send_signal(signal.SIGTERM)  # graceful: lifespan shutdown flushes the buffered publisher
        for server in servers.values():
            server.wait(timeout=120)
        fake.kill()
        fake.wait()
    windows = report["windows"]
    for w in windows:
        print(f"server window {w['pair'] + 1:2} {w['config']:4} rps={w['rps']:6.0f} "
              f"cpu/request={1e6 * w['server_cpu_s'] / max(w['requests'], 1):4.0f} us "
              f"unexpected={w['unexpected']}", flush=True)  # fmt: skip
    by_pair: dict[int, dict[str, dict[str, Any]]] = {}
    for w in windows:
        by_pair.setdefault(w["pair"], {})[w["config"]] = w

    def cpu_per_request(config: str) -> float:
        return statistics.median(w["server_cpu_s"] / w["requests"] for w in windows if w["config"] == config)

    def rps_ratio(config: str) -> float:
        return round(statistics.median(p[config]["rps"] / p["off"]["rps"] for p in by_pair.values()), 3)

    rps = {c: statistics.median(w["rps"] for w in windows if w["config"] == c) for c in envs}
    # Requests the monitored server served: warm-up, measured windows and the readiness probe.
    served_on = sum(w["requests"] for w in windows if w["config"] == "on") + report["warmup_on"] + 1
    fallback_lines = len(fallback.read_text().splitlines()) if fallback.exists() else 0
    keys = partition_keys(emulator, stream)
    return {
        "server_rps_off": round(rps["off"]),
        "server_rps_on": round(rps["on"]),
        "server_rps_ratio": rps_ratio("on"),
        "server_cpu_us_off": round(1e6 * cpu_per_request("off")),
        "server_cpu_us_on": round(1e6 * cpu_per_request("on")),
        "server_cpu_ratio": round(cpu_per_request("off") / cpu_per_request("on"), 3),
        "server_rps_ratio_fake_kinesis": rps_ratio("fake"),
        "server_cpu_ratio_fake_kinesis": round(cpu_per_request("off") / cpu_per_request("fake"), 3),
        "server_events_missing": served_on - len(set(keys)) - fallback_lines,
        # at least once: a call that timed out after the stream accepted it is sent again
        "server_events_duplicated": len(keys) - len(set(keys)),
        "server_events_fallback": fallback_lines,
        "server_unexpected_status": sum(w["unexpected"] for w in windows),
    }


# Lambda, in-process


class StubKinesis:
    """Answers PutRecords as Kinesis does when all is well, without a network."""

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        shard = "shardId-000000000000"
        return {"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1", "ShardId": shard} for _ in Records]}


def lambda_bench(emulator: Emulator, invocations: int, workdir: Path) -> dict[str, Any]:
    from lambda_api.adapter import build_handler
    from lambda_api.app import create_app
    from lambda_api.publishers.delivery import KinesisDelivery
    from lambda_api.publishers.fallback import FallbackLog
    from lambda_api.publishers.kinesis import RequestKinesisPublisher
    from lambda_api.settings import load_settings
    from pulse_local.apigw import http_api_event, lambda_context

    emulator.apply_env()
    stream = f"bench-lambda-{uuid.uuid4().hex[:8]}"
    create_stream(emulator, stream, shards=4)
    fallback = workdir / "lambda.fallback.log"
    on = load_settings(publisher="kinesis", publisher_mode="request", stream_name=stream, fallback_log=str(fallback))
    stubbed = RequestKinesisPublisher(KinesisDelivery(stream, StubKinesis()), FallbackLog(str(fallback)), 0.3)
    handlers = {
        "off": build_handler(create_app(load_settings(publisher="off"))),
        "on": build_handler(create_app(on)),
        "stub": build_handler(create_app(on, publisher=stubbed)),
    }
    events = []
    for path in PATHS:
        raw_path, _, query = path.partition("?")
        events.append(http_api_event("GET", raw_path, query=query))
    context = lambda_context()
    for handler in handlers.values():  # warm-up: imports, first-call caches, the connection pool
        for event in events * 10:
            handler(event, context)
    timings: dict[str, list[float]] = {name: [] for name in handlers}
    block = 50
    for start in range(0, invocations, block):
        for name, handler in handlers.items():
            for n in range(start, min(start + block, invocations)):
                began = time.perf_counter()
                response = handler(events[n % len(events)], context)
                timings[name].append((time.perf_counter() - began) * 1000)
                if response["statusCode"] not in (200, 404):
                    raise RuntimeError(f"{name}: unexpected status {response['statusCode']}")
    if fallback.exists():
        raise RuntimeError("events fell back during the Lambda benchmark: " + fallback.read_text()[:500])
    delivered = len(set(partition_keys(emulator, stream)))
    p50 = {name: statistics.median(values) for name, values in timings.items()}
    p99 = {name: statistics.quantiles(values, n=100, method="inclusive")[98] for name, values in timings.items()}
    for name in timings:
        print(f"lambda {name:4} p50={p50[name]:.3f} ms p99={p99[name]:.3f} ms n={len(timings[name])}")
    return {
        "lambda_p50_off_ms": round(p50["off"], 3),
        "lambda_p50_on_ms": round(p50["on"], 3),
        "lambda_p50_added_ms": round(p50["on"] - p50["off"], 3),
        "lambda_p99_added_ms": round(p99["on"] - p99["off"], 3),
        "lambda_stub_p50_added_ms": round(p50["stub"] - p50["off"], 3),
        "lambda_stub_p99_added_ms": round(p99["stub"] - p99["off"], 3),
        # warm-up included: every "on" invocation put exactly one event
        "lambda_events_missing": invocations + 10 * len(events) - delivered,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=6, help="server windows per configuration (alternating)")
    parser.add_argument("--window", type=float, default=3.0, help="seconds per server window")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per server first")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections of the load generator")
    parser.add_argument("--lambda-invocations", type=int, default=3000, help="per Lambda configuration")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 2 s windows, 1,000 invocations")
    parser.add_argument("--load-generator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--servers", help=argparse.SUPPRESS)
    parser.add_argument("--fake-kinesis", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_generator:
        load_generator_main(args)
        return
    if args.fake_kinesis:
        fake_kinesis_main(args.fake_kinesis)
        return
    if args.quick:
        args.pairs, args.window, args.warmup, args.lambda_invocations = 3, 2.0, 1.0, 1000

    workdir = ROOT / "bench" / "out"
    workdir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    emulator = start_moto(log_path=workdir / "moto.log")
    _pin(emulator.process.pid if emulator.process else None, {1})
    _background(emulator.process.pid if emulator.process else None)
    try:
        figures = server_bench(emulator, args, workdir)
        figures.update(lambda_bench(emulator, args.lambda_invocations, workdir))
    finally:
        emulator.stop()
    # The handler under its real runtime client, per Lambda delivery mode: bench/lambda_overhead.py.
    from lambda_overhead import measure as lambda_runtime_figures

    figures.update(lambda_runtime_figures(invocations=max(2000, args.lambda_invocations), workdir=workdir))
    # Other work on the machine skews every figure; say how busy it was.
    figures["load_avg_1m"] = round(max(load_before, os.getloadavg()[0]), 2)
    print(" ".join(f"{name}={value}" for name, value in figures.items()))


if __name__ == "__main__":
    main()
