"""Reliability figures: what a Kinesis outage costs the API, and whether any event is lost.

Everything runs on this machine, on loopback only: an embedded moto server, a TCP fault switch in
front of it (``FaultSwitch``: up, refused, black hole), and the API under test, whose
``AWS_ENDPOINT_URL`` is the switch.

1. Outage matrix (``--rates``, ``--faults``, ``--outages``, ``--targets``): open-loop traffic at a fixed
   rate (each request has its scheduled time; latency is counted from it, so a stall is not hidden
   by the client waiting) for ``--before-s`` healthy, then the fault for the outage's length, then
   ``--after-s`` healthy again; then the API is shut down as its platform would (uvicorn: SIGTERM,
   lifespan shutdown; Lambda: SIGTERM to the environment), the fallback log is replayed
   (``python -m lambda_api.fallback_replay``) and the stream is read back. Every request carries a unique
   user agent, so its event is found on the stream or in the fallback log whatever its id.
   Targets:

   - ``uvicorn``: the example app with the buffered publisher, under uvicorn, with an event-loop lag
     sampler (a task that sleeps 10 ms and records how late it wakes) around it;
   - ``lambda``: ``lambda_api.handler.handler`` in local Lambda environments (``pulse_local.lambda_runtime``:
     the real runtime client, after-response delivery through the internal extension), ``--lambda-envs``
     of them taking invocations from one queue, as Lambda's concurrent environments would.

   Per scenario: ``events_lost`` (requests whose event is neither on the stream nor in the fallback
   log, after replay: must be 0), ``events_duplicated`` (records on the stream beyond one per request),
   ``fallback`` lines, client p99 before / during the outage, event-loop lag p99 and max (uvicorn),
   environment hold time (response posted to the extension's next call) and mean busy environments
   (Lambda).
2. Buffered shutdown (``--shutdown``): 10,000 events queued in front of a black-holed Kinesis,
   ``close()`` against a 30 s deadline: the drain time and the events neither on the stream nor in
   the fallback log.
3. Lambda hold time with and without the circuit breaker (``--hold``): Kinesis healthy, refused with
   the breaker, refused with ``PULSE_BREAKER_FAILURES`` too high to open.

    .venv/bin/python bench/reliability.py            # the whole matrix, ~35 min
    .venv/bin/python bench/reliability.py --quick    # 50 requests/s, 5 s outages, no hold section: ~3 min
    .venv/bin/python bench/reliability.py --targets uvicorn --rates 200 --faults black_hole --outages 30

A table comes before the last line; the last line holds every figure as name=value.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import queue
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lambda_api.publishers.delivery import KinesisDelivery, kinesis_client
from lambda_api.publishers.fallback import FallbackLog, read_fallback_lines
from lambda_api.publishers.kinesis import BufferedKinesisPublisher
from pulse_contract.request_event import RequestEvent
from pulse_local.apigw import http_api_event
from pulse_local.emulator import (
    EMULATOR_CREDENTIALS,
    Emulator,
    EmulatorError,
    _answers,
    create_stream,
    free_port,
    read_records,
)
from pulse_local.lambda_runtime import LocalLambdaRuntime

ROOT = Path(__file__).resolve().parent.parent

HANDLER = "lambda_api.handler.handler"
PATHS = ("/items/7", "/items/23", "/users/3/orders", "/users/11", "/search?q=lamp", "/items/999", "/health")
FAULTS = ("refused", "black_hole")
LAG_PATH = "/__bench/loop-lag"
LAG_INTERVAL_S = 0.01
CLIENT_TIMEOUT_S = 30.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# The emulator, with its Kinesis shards safe for concurrent puts

# moto's Shard.put_record takes the last sequence number plus one without a lock (its own comment:
# "not safe for concurrency"), so two PutRecords served at once by its threaded server can write the
# same sequence number and one record silently replaces the other. Several Lambda environments put
# concurrently, which would read as events lost by Pulse; the real service has no such race.
MOTO_WITH_SHARD_LOCK = """
import sys, threading
from moto.kinesis import models
_lock = threading.Lock()
_put = models.Shard.put_record
def put_record(self, *args, **kwargs):
    with _lock:
        return _put(self, *args, **kwargs)
models.Shard.put_record = put_record
from moto.server import main
main(sys.argv[1:])
"""


def start_moto(log_path: Path, timeout_s: float = 30.0) -> Emulator:
    """``moto_server`` on loopback (as ``pulse_local.emulator.start_moto``), with the shard lock above."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-c", MOTO_WITH_SHARD_LOCK, "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **EMULATOR_CREDENTIALS},
    )  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmulatorError(f"moto_server exited with code {process.returncode}")
        if _answers(endpoint):
            return Emulator(endpoint=endpoint, region="us-east-1", process=process, log_path=log_path, port=port)
        time.sleep(0.05)
    process.kill()
    raise EmulatorError(f"moto_server did not answer on {endpoint}")


# The fault switch


def _reset(sock: socket.socket) -> None:
    """Close with an RST (what a peer that went away sends), ignoring errors."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    with contextlib.suppress(OSError):
        sock.close()


class FaultSwitch:
    """A TCP forwarder on a fixed loopback port in front of Kinesis, switchable at any time.

    - ``up``: bytes flow both ways;
    - ``refused``: the port is closed (connections refused) and open connections are reset;
    - ``black_hole``: connections are accepted and nothing is ever answered; open connections stop
      flowing too. Back ``up``, those held connections are closed (their clients gave up long ago).

    It works below HTTP, so it also cuts the keep-alive connections of a client's pool, which a
    refusing HTTP proxy (``tests/kinesis_proxy.py`` answers or black-holes requests, and cannot
    refuse connections) would leave alone.
    """

    def __init__(self, upstream: tuple[str, int], port: int | None = None) -> None:
        self.upstream = upstream
        self.port = port or free_port()
        self.mode = "up"
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._pairs: set[tuple[socket.socket, socket.socket | None]] = set()
        self._closed = False
        self._listen()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(256)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="fault-switch", daemon=True).start()

    def set(self, mode: str) -> None:
        with self._lock:
            previous, self.mode = self.mode, mode
            pairs = list(self._pairs)
            if mode == "refused" and self._listener is not None:
                self._listener.close()
                self._listener = None
        if mode == "refused" or (previous == "black_hole" and mode == "up"):
            for client, upstream in pairs:
                _reset(client)
                if upstream is not None:
                    _reset(upstream)
        if mode != "refused" and self._listener is None:
            self._listen()

    def close(self) -> None:
        self._closed = True
        self.set("refused")

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed: refused, or the end
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._pump, args=(client,), daemon=True).start()

    def _pump(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        pair: tuple[socket.socket, socket.socket | None] = (client, None)
        try:
            with self._lock:
                hold = self.mode != "up"
                self._pairs.add(pair)
            if hold:  # black hole: accepted, never answered (closed when the switch goes back up)
                while self.mode == "black_hole":
                    time.sleep(0.05)
                return
            upstream = socket.create_connection(self.upstream, timeout=5)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._pairs.discard(pair)
                pair = (client, upstream)
                self._pairs.add(pair)
            while True:
                if self.mode == "black_hole":  # stop flowing; the client's read times out
                    while self.mode == "black_hole":
                        time.sleep(0.05)
                    return
                readable, _, _ = select.select([client, upstream], [], [], 0.05)
                for source in readable:
                    data = source.recv(65536)
                    if not data or self.mode != "up":
                        return
                    (upstream if source is client else client).sendall(data)
        except (OSError, ValueError):
            return
        finally:
            with self._lock:
                self._pairs.discard(pair)
            for sock in (client, upstream):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()


# uvicorn: the app with an event-loop lag sampler (its own routes bypass monitoring)


def lag_app() -> Any:
    """``create_app()`` wrapped: a task records how late a 10 ms sleep wakes; ``GET /__bench/loop-lag`` returns it."""
    from lambda_api.app import create_app

    inner = create_app()
    samples: list[tuple[float, float]] = []
    task: list[asyncio.Task[None]] = []

    async def sample() -> None:
        while True:
            began = time.monotonic()
            await asyncio.sleep(LAG_INTERVAL_S)
            samples.append((began, (time.monotonic() - began - LAG_INTERVAL_S) * 1000))

    async def app(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "http" and not task:
            task.append(asyncio.get_running_loop().create_task(sample()))
        if scope["type"] == "http" and scope["path"] == LAG_PATH:
            body = json.dumps(samples).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await inner(scope, receive, send)

    return app


# Open-loop load for uvicorn (its own process)


async def _request(port: int, pool: list[Any], n: int, tag: str) -> tuple[int, str]:
    if pool:
        reader, writer = pool.pop()
    else:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    path = PATHS[n % len(PATHS)]
    writer.write(f"GET {path} HTTP/1.1\r\nHost: bench\r\nUser-Agent: {tag}/{n}\r\n\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    lower = head.lower()
    start = lower.find(b"content-length:") + 15
    await reader.readexactly(int(lower[start : lower.find(b"\r\n", start)]))
    pool.append((reader, writer))
    return int(head[9:12]), ""


async def _open_loop(port: int, rate: float, seconds: float, start_at: float, tag: str) -> list[list[Any]]:
    pool: list[Any] = []
    results: list[list[Any]] = []
    loop = asyncio.get_running_loop()

    async def one(n: int, scheduled: float) -> None:
        try:
            status, error = await asyncio.wait_for(_request(port, pool, n, tag), CLIENT_TIMEOUT_S)
        except Exception as exc:  # a timeout or a reset: counted, the event may still exist
            status, error = 0, type(exc).__name__
        results.append([n, scheduled - start_at, (time.monotonic() - scheduled) * 1000, status, error])

    tasks = []
    total = int(rate * seconds)
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    for n in range(total):
        scheduled = start_at + n / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.create_task(one(n, scheduled)))
    await asyncio.gather(*tasks)
    return results


def load_generator_main(args: argparse.Namespace) -> None:
    results = asyncio.run(_open_loop(args.port, args.rate, args.seconds, args.start_at, args.tag))
    print(json.dumps(results))


# One scenario


class Scenario:
    def __init__(self, target: str, rate: float, fault: str, outage_s: float, before_s: float, after_s: float):
        self.target, self.rate, self.fault, self.outage_s = target, rate, fault, outage_s
        self.before_s, self.after_s = before_s, after_s
        self.tag = f"pulse-rel-{uuid.uuid4().hex[:8]}"

    @property
    def name(self) -> str:
        return f"{self.target}_{self.rate:g}rps_{self.fault}_{self.outage_s:g}s"

    @property
    def seconds(self) -> float:
        return self.before_s + self.outage_s + self.after_s

    def phase(self, offset: float) -> str:
        if offset < self.before_s:
            return "before"
        return "during" if offset < self.before_s + self.outage_s else "after"


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes (Linux /proc); 0 for any that is gone."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
    return total


def run_faults(switch: FaultSwitch, scenario: Scenario, start_at: float, pids: list[int]) -> dict[str, float]:
    """Switch the fault on and off at the scenario's times (in this thread); the API's CPU seconds at each.

    CPU per request before and during the outage tells what the outage costs the API itself, apart from
    what other work on a shared machine does to latency.
    """
    cpu = {}
    time.sleep(max(0.0, start_at - time.monotonic()))
    cpu["start"] = cpu_seconds(pids)
    time.sleep(max(0.0, start_at + scenario.before_s - time.monotonic()))
    switch.set(scenario.fault)
    cpu["fault"] = cpu_seconds(pids)
    time.sleep(max(0.0, start_at + scenario.before_s + scenario.outage_s - time.monotonic()))
    switch.set("up")
    cpu["up"] = cpu_seconds(pids)
    return cpu


def cpu_figures(cpu: dict[str, float], scenario: Scenario) -> dict[str, float]:
    before = (cpu["fault"] - cpu["start"]) / (scenario.rate * scenario.before_s)
    during = (cpu["up"] - cpu["fault"]) / (scenario.rate * scenario.outage_s)
    return {"cpu_us_per_request_before": round(before * 1e6), "cpu_us_per_request_during": round(during * 1e6)}


def tag_number(event: dict[str, Any], tag: str) -> int | None:
    agent = str(event.get("user_agent", ""))
    if agent.startswith(tag + "/"):
        return int(agent[len(tag) + 1 :])
    return None


def fallback_numbers(paths: list[Path], tag: str) -> tuple[list[int], list[str]]:
    """Request numbers of this scenario's fallback lines, and the lines themselves (for replay)."""
    numbers, lines = [], []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            for entry in read_fallback_lines([line]):
                if isinstance(entry, ValueError):
                    continue
                number = tag_number(json.loads(entry.record.data), tag)
                if number is not None:
                    numbers.append(number)
                    lines.append(line)
    return numbers, lines


def replay(emulator: Emulator, stream: str, lines: list[str], workdir: Path, name: str) -> dict[str, int]:
    if not lines:
        return {"delivered": 0, "undelivered": 0}
    source = workdir / f"{name}.replay.log"
    source.write_text("\n".join(lines) + "\n")
    env = {**os.environ, **emulator.env}
    env.pop("PULSE_FALLBACK_LOG", None)
    done = subprocess.run(
        [sys.executable, "-m", "lambda_api.fallback_replay", str(source), "--stream", stream,
         "--failed", str(workdir / f"{name}.replay-failed.log")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    last = (done.stdout.strip().splitlines() or [""])[-1]
    counts = dict(part.split("=", 1) for part in last.split() if "=" in part)
    return {"delivered": int(counts.get("delivered", 0)), "undelivered": int(counts.get("undelivered", 0))}


def stream_numbers(emulator: Emulator, stream: str, tag: str) -> list[int]:
    numbers = []
    for record in read_records(emulator, stream):
        number = tag_number(json.loads(record["data"]), tag)
        if number is not None:
            numbers.append(number)
    return numbers


def run_uvicorn(
    emulator: Emulator, switch: FaultSwitch, scenario: Scenario, stream: str, workdir: Path
) -> dict[str, Any]:
    fallback = workdir / f"{scenario.name}.fallback.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSE_") and k != "AWS_LAMBDA_FUNCTION_NAME"}
    env.update(emulator.env)
    env.update(PULSE_PUBLISHER="kinesis", PULSE_PUBLISHER_MODE="buffered", PULSE_STREAM_NAME=stream,
               PULSE_FALLBACK_LOG=str(fallback), AWS_ENDPOINT_URL=switch.endpoint)  # fmt: skip
    port = free_port()
    # A long keep-alive timeout: uvicorn's 5 s would close idle pooled client connections mid-run.
    command = [sys.executable, "-m", "uvicorn", "bench.reliability:lag_app", "--factory", "--app-dir", str(ROOT),
               "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
               "--timeout-keep-alive", "600"]  # fmt: skip
    log = (workdir / f"{scenario.name}.uvicorn.log").open("w")
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{LAG_PATH}", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"uvicorn did not start: {(workdir / f'{scenario.name}.uvicorn.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.1)
        start_at = time.monotonic() + 1.0
        generator = subprocess.Popen(
            [sys.executable, __file__, "--load-generator", "--port", str(port), "--rate", str(scenario.rate),
             "--seconds", str(scenario.seconds), "--start-at", repr(start_at), "--tag", scenario.tag],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        cpu = run_faults(switch, scenario, start_at, [server.pid])
        out, _ = generator.communicate(timeout=scenario.seconds + CLIENT_TIMEOUT_S + 60)
        results = json.loads(out)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{LAG_PATH}", timeout=30) as answer:
            lags = json.loads(answer.read())
        began = time.monotonic()
        server.send_signal(signal.SIGTERM)  # lifespan shutdown: close(deadline) off the event loop
        server.wait(timeout=120)
        shutdown_s = time.monotonic() - began
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()
    requests = [{"n": n, "offset": offset, "latency_ms": latency, "status": status, "error": error}
                for n, offset, latency, status, error in results]  # fmt: skip
    lag_phases: dict[str, list[float]] = {"before": [], "during": [], "after": []}
    for at, lag in lags:
        offset = at - start_at
        if 0 <= offset < scenario.seconds:
            lag_phases[scenario.phase(offset)].append(lag)
    extra = {
        "lag_p99_before_ms": round(percentile(lag_phases["before"], 99), 1),
        "lag_p99_during_ms": round(percentile(lag_phases["during"], 99), 1),
        "lag_max_during_ms": round(max(lag_phases["during"] or [float("nan")]), 1),
        **cpu_figures(cpu, scenario),
        "server_shutdown_s": round(shutdown_s, 2),
    }
    return {"requests": requests, "fallback_paths": [fallback], "extra": extra}


def run_lambda(
    emulator: Emulator, switch: FaultSwitch, scenario: Scenario, stream: str, workdir: Path, envs: int
) -> dict[str, Any]:
    fallbacks = [workdir / f"{scenario.name}.env{k}.fallback.log" for k in range(envs)]
    runtimes = [
        LocalLambdaRuntime(
            HANDLER,
            {
                **emulator.env,
                "PULSE_STREAM_NAME": stream,
                "PULSE_FALLBACK_LOG": str(fallbacks[k]),
                "AWS_ENDPOINT_URL": switch.endpoint,
            },
            log_path=workdir / f"{scenario.name}.env{k}.log",
        )
        for k in range(envs)
    ]
    starters = [threading.Thread(target=runtime.start) for runtime in runtimes]
    for starter in starters:
        starter.start()
    for starter in starters:
        starter.join()
    for runtime in runtimes:  # warm: the first invocation imports and connects (not part of the figures)
        runtime.invoke(http_api_event("GET", "/health", user_agent="warm-up"), wait="complete")
    jobs: queue.Queue[tuple[int, float] | None] = queue.Queue()
    requests: list[dict[str, Any]] = []
    lock = threading.Lock()
    start_at = time.monotonic() + 1.0
    give_up_at = start_at + scenario.seconds + 60  # bounded: a backlog beyond this is not sent (and counted)

    def work(runtime: LocalLambdaRuntime) -> None:
        while (job := jobs.get()) is not None:
            n, scheduled = job
            if time.monotonic() > give_up_at:
                with lock:
                    requests.append({"n": n, "offset": scheduled - start_at, "latency_ms": float("nan"),
                                     "status": 0, "error": "not_sent"})  # fmt: skip
                continue
            path, _, query = PATHS[n % len(PATHS)].partition("?")
            event = http_api_event("GET", path, query=query, user_agent=f"{scenario.tag}/{n}")
            entry: dict[str, Any] = {"n": n, "offset": scheduled - start_at}
            try:
                invocation = runtime.invoke(event, wait="complete")
                assert invocation.response_at and invocation.completed_at and invocation.handed_out_at
                entry.update(
                    latency_ms=(invocation.response_at - scheduled) * 1000,
                    status=int(invocation.payload()["statusCode"]), error="",
                    hold_ms=(invocation.completed_at - invocation.response_at) * 1000,
                    busy_s=invocation.completed_at - invocation.handed_out_at,
                )  # fmt: skip
            except Exception as exc:
                entry.update(latency_ms=float("nan"), status=0, error=type(exc).__name__)
            with lock:
                requests.append(entry)

    workers = [threading.Thread(target=work, args=(runtime,), daemon=True) for runtime in runtimes]
    for worker in workers:
        worker.start()
    cpu: dict[str, float] = {}
    pids = [runtime.pid for runtime in runtimes]
    faults = threading.Thread(target=lambda: cpu.update(run_faults(switch, scenario, start_at, pids)), daemon=True)
    faults.start()
    for n in range(int(scenario.rate * scenario.seconds)):
        scheduled = start_at + n / scenario.rate
        time.sleep(max(0.0, scheduled - time.monotonic()))
        jobs.put((n, scheduled))
    for _ in workers:
        jobs.put(None)
    for worker in workers:
        worker.join()
    faults.join()
    for runtime in runtimes:
        runtime.close()  # SIGTERM with 500 ms, as Lambda removes an environment
    holds: dict[str, list[float]] = {"before": [], "during": [], "after": []}
    busy: dict[str, float] = {"before": 0.0, "during": 0.0, "after": 0.0}
    for entry in requests:
        if "hold_ms" in entry:
            phase = scenario.phase(entry["offset"])
            holds[phase].append(entry["hold_ms"])
            busy[phase] += entry["busy_s"]
    extra = {
        "hold_p50_before_ms": round(percentile(holds["before"], 50), 2),
        "hold_p50_during_ms": round(percentile(holds["during"], 50), 2),
        "hold_p99_during_ms": round(percentile(holds["during"], 99), 1),
        "hold_max_during_ms": round(max(holds["during"] or [float("nan")]), 1),
        "busy_envs_before": round(busy["before"] / scenario.before_s, 2),
        "busy_envs_during": round(busy["during"] / scenario.outage_s, 2),
        "not_sent": sum(1 for entry in requests if entry["error"] == "not_sent"),
        **cpu_figures(cpu, scenario),
    }
    return {"requests": requests, "fallback_paths": fallbacks, "extra": extra}


def run_scenario(emulator: Emulator, scenario: Scenario, workdir: Path, lambda_envs: int) -> dict[str, Any]:
    load = os.getloadavg()[0]
    stream = f"bench-rel-{uuid.uuid4().hex[:8]}"
    create_stream(emulator, stream, shards=2)
    assert emulator.endpoint is not None
    upstream = emulator.endpoint.split("//", 1)[1].rsplit(":", 1)
    switch = FaultSwitch((upstream[0], int(upstream[1])))
    try:
        if scenario.target == "uvicorn":
            run = run_uvicorn(emulator, switch, scenario, stream, workdir)
        else:
            run = run_lambda(emulator, switch, scenario, stream, workdir, lambda_envs)
    finally:
        switch.close()
    requests = run["requests"]
    sent = [entry for entry in requests if entry["error"] != "not_sent"]
    logged, lines = fallback_numbers(run["fallback_paths"], scenario.tag)
    replayed = replay(emulator, stream, lines, workdir, scenario.name)
    on_stream = stream_numbers(emulator, stream, scenario.tag)
    found = set(on_stream) | set(logged)
    latency = {phase: [e["latency_ms"] for e in sent if e["status"] and scenario.phase(e["offset"]) == phase]
               for phase in ("before", "during", "after")}  # fmt: skip
    missing = [entry for entry in sent if entry["n"] not in found]
    for entry in missing[:20]:  # what a lost event's request looked like, to find why
        where = f"{entry['offset']:.3f} s ({scenario.phase(entry['offset'])})"
        print(f"  lost: request {entry['n']} at {where} status={entry['status']} error={entry['error'] or '-'}")
    figures: dict[str, Any] = {
        "requests": len(sent),
        "events_lost": sum(1 for entry in sent if entry["n"] not in found),
        "events_duplicated": len(on_stream) - len(set(on_stream)),
        "fallback": len(logged),
        "replayed": replayed["delivered"],
        "replay_undelivered": replayed["undelivered"],
        "not_on_stream_after_replay": sum(1 for entry in sent if entry["n"] not in set(on_stream)),
        "client_errors": sum(1 for entry in sent if not entry["status"]),
        "client_error_kinds": ",".join(sorted({entry["error"] for entry in sent if entry["error"]})) or "-",
        "p99_before_ms": round(percentile(latency["before"], 99), 1),
        "p99_during_ms": round(percentile(latency["during"], 99), 1),
        "max_during_ms": round(max(latency["during"] or [float("nan")]), 1),
        "p99_after_ms": round(percentile(latency["after"], 99), 1),
        **run["extra"],
        "load_1m": round(max(load, os.getloadavg()[0]), 1),
    }
    print(f"{scenario.name:36} " + " ".join(f"{k}={v}" for k, v in figures.items()), flush=True)
    return figures


# Lambda hold time with and without the breaker, and buffered shutdown (fixed faults, no switch needed)


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
    print(f"lambda {scenario:20} " + " ".join(f"{key}={value}" for key, value in figures.items()), flush=True)
    return figures


def shutdown_drain(workdir: Path, queued: int, deadline_s: float) -> dict[str, float]:
    hole = FaultSwitch(("127.0.0.1", closed_port()))
    hole.set("black_hole")
    fallback = workdir / "shutdown.fallback.log"
    saved = {
        key: os.environ.get(key)
        for key in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    try:
        # Loopback only: the black hole is the endpoint; the credentials are dummies it never checks.
        os.environ.update(
            AWS_ENDPOINT_URL=hole.endpoint, AWS_DEFAULT_REGION="us-east-1",
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
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    lost = len(set(ids) - fallback_ids(fallback))
    print(f"shutdown: {queued} queued, black-holed Kinesis, deadline {deadline_s:.0f} s: {took:.2f} s, lost {lost}")
    return {"shutdown_drain_s": round(took, 2), "shutdown_events_lost": lost, "shutdown_deadline_s": deadline_s}


# Output


COLUMNS = (
    ("target", "target"), ("rate", "req/s"), ("fault", "fault"), ("outage_s", "outage s"), ("requests", "requests"),
    ("events_lost", "lost"), ("events_duplicated", "dup"), ("fallback", "fallback"), ("client_errors", "errors"),
    ("p99_before_ms", "p99 before ms"), ("p99_during_ms", "p99 during ms"), ("max_during_ms", "max during ms"),
    ("lag_p99_before_ms", "loop lag p99 before ms"), ("lag_p99_during_ms", "loop lag p99 during ms"),
    ("lag_max_during_ms", "loop lag max during ms"), ("hold_p50_before_ms", "hold p50 before ms"),
    ("hold_p50_during_ms", "hold p50 during ms"), ("hold_p99_during_ms", "hold p99 during ms"),
    ("busy_envs_before", "busy envs before"), ("busy_envs_during", "busy envs during"),
    ("cpu_us_per_request_before", "CPU us/req before"), ("cpu_us_per_request_during", "CPU us/req during"),
    ("load_1m", "load 1m"),
)  # fmt: skip


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(key, "")) for key, _ in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--targets", default="uvicorn,lambda", help="uvicorn, lambda or both")
    parser.add_argument("--rates", default="50,200", help="requests per second")
    parser.add_argument("--faults", default="refused,black_hole")
    parser.add_argument("--outages", default="5,30,120", help="seconds of outage")
    parser.add_argument("--before-s", type=float, default=5.0, help="healthy traffic before the outage")
    parser.add_argument("--after-s", type=float, default=10.0, help="healthy traffic after it (breaker cool-down: 5 s)")
    parser.add_argument("--lambda-envs", type=int, default=4, help="concurrent local Lambda environments")
    parser.add_argument("--no-matrix", action="store_true", help="skip the outage matrix")
    parser.add_argument("--no-shutdown", action="store_true", help="skip the buffered shutdown drain")
    parser.add_argument("--hold", action=argparse.BooleanOptionalAction, default=True,
                        help="Lambda hold time healthy/refused, with and without the breaker")  # fmt: skip
    parser.add_argument("--invocations", type=int, default=100, help="per hold scenario")
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--deadline-s", type=float, default=30.0)
    parser.add_argument("--keep", metavar="DIR", help="keep logs, fallback logs and replay input in DIR")
    parser.add_argument("--quick", action="store_true", help="50 requests/s, 5 s outages, no hold section")
    parser.add_argument("--load-generator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--tag", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load_generator:
        load_generator_main(args)
        return
    if args.quick:
        args.rates, args.outages, args.hold = "50", "5", False
    load_before = os.getloadavg()
    figures: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pulse-reliability-") as tmp:
        workdir = Path(args.keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        emulator = start_moto(log_path=workdir / "moto.log")
        emulator.apply_env()
        try:
            if not args.no_matrix:
                for target, rate, fault, outage in itertools.product(
                    args.targets.split(","), [float(r) for r in args.rates.split(",")],
                    args.faults.split(","), [float(o) for o in args.outages.split(",")],
                ):  # fmt: skip
                    if fault not in FAULTS or target not in ("uvicorn", "lambda"):
                        parser.error(f"unknown fault or target: {fault}, {target}")
                    scenario = Scenario(target, rate, fault, outage, args.before_s, args.after_s)
                    result = run_scenario(emulator, scenario, workdir, args.lambda_envs)
                    row = {"target": target, "rate": f"{rate:g}", "fault": fault, "outage_s": f"{outage:g}"}
                    rows.append({**row, **result})
                    for key, value in result.items():
                        figures[f"{scenario.name}_{key}"] = value
            if args.hold:
                for name in ("healthy", "refused", "refused_no_breaker"):
                    for key, value in lambda_hold(emulator, workdir, name, args.invocations, 0.02).items():
                        figures[f"lambda_{name}_{key}"] = value
        finally:
            emulator.restore_env()
            emulator.stop()
        if not args.no_shutdown:
            figures.update(shutdown_drain(workdir, args.queued, args.deadline_s))
    if rows:
        figures["events_lost_total"] = sum(row["events_lost"] for row in rows)
        figures["events_duplicated_total"] = sum(row["events_duplicated"] for row in rows)
    figures["load_avg_before"] = "/".join(f"{v:.2f}" for v in load_before)
    figures["load_avg_after"] = "/".join(f"{v:.2f}" for v in os.getloadavg())
    figures["bench_minutes"] = round((time.monotonic() - began) / 60, 1)
    if rows:
        print()
        print(table(rows))
        print()
    print(" ".join(f"{key}={value}" for key, value in figures.items()))


if __name__ == "__main__":
    main()
