"""``make demo``: the whole of Pulse on this machine, through the real connectors, in a few minutes.

    python -m pulse_local.demo [--minutes 2.5] [--seed 7] [--rps 40] [--api uvicorn|lambda] [--out build/demo]

1. an AWS emulator (embedded moto on a free loopback port, or ``AWS_ENDPOINT_URL``'s), a Kinesis
   stream with two shards and the anomaly table;
2. the example API (:mod:`pulse_local.demo_app`) under uvicorn with the buffered publisher
   (``--api lambda``: behind a local API Gateway, in local Lambda environments with the
   after-response extension), its undelivered events in a fallback log;
3. the detection job on a local Flink mini-cluster: Flink's Kinesis source, the SQL stages, the
   Python detectors, Flink's DynamoDB sink (the JAR that goes into the Managed Flink zip), with the
   demo's time scale (:mod:`pulse_local.demo_profile`);
4. labelled traffic from the generator sent over HTTP (:mod:`pulse_local.demo_traffic`): a daily
   rhythm compressed into 20 minutes, noise, 2 500 clients, and one injection of each of the eight
   kinds at announced times;
5. a live view (rich) while it runs; anomalies are read back through ``GET /monitoring/anomalies``;
6. at the end a summary table, a PNG timeline and one last line of ``name=value`` figures.

Every part is stopped on the way out, also on Ctrl-C or when a part fails; the message names the part.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from flink_app import metrics as job_metrics
from pulse_contract import Anomaly
from pulse_local import demo_profile
from pulse_local.demo_traffic import SHOP_ROUTES, Driver, as_shop_labels, schedule
from pulse_local.emulator import Emulator, EmulatorError, connect, create_anomaly_table, create_stream, free_port
from pulse_local.evaluation import Evaluation, evaluate
from pulse_local.flink_rest import FlinkRest
from pulse_local.traffic import Injection, TrafficGenerator, TrafficSpec

ROOT = Path(__file__).resolve().parent.parent
DAY_S = 1200.0  # a day of traffic rhythm in 20 minutes
START_PHASE = 0.33  # 08:00: the morning rise
WARMUP_S = 60.0  # routes are judged after their first 20 windows (40 s) and a full window
TAIL_S = 30.0  # after the last injection: event time must pass for its windows to close
SETTLE_S = 20.0  # traffic goes on this long past --minutes while anomalies are still on their way
POLL_S = 1.0
JOB_START_S = 180.0  # JVM, Python workers and the job's start, on a busy machine


class DemoError(RuntimeError):
    """A part of the demo failed; the message names the part and why."""


@contextlib.contextmanager
def part(name: str) -> Iterator[None]:
    """Errors inside become a :class:`DemoError` naming ``name``."""
    try:
        yield
    except DemoError:
        raise
    except KeyboardInterrupt:
        raise
    except Exception as error:
        raise DemoError(f"{name}: {type(error).__name__}: {error}".rstrip(": ")) from error


# --- preflight ------------------------------------------------------------------------------------------


def preflight(args: argparse.Namespace) -> Path:
    """Java and the connector JAR, before anything starts; returns the JAR."""
    java = shutil.which("java") or (
        Path(os.environ["JAVA_HOME"]) / "bin" / "java" if os.environ.get("JAVA_HOME") else None
    )
    if not java or not Path(java).exists():
        raise DemoError("Flink job: Java missing: no `java` on PATH and no JAVA_HOME (README: Prerequisites, Java 17)")
    jar = ROOT / "jars" / "pulse-connectors.jar"
    unavailable = ROOT / "jars" / ".unavailable"
    if not jar.is_file():
        reason = unavailable.read_text().strip() if unavailable.exists() else "run `make jars` (Maven)"
        raise DemoError(f"Flink job: connector JAR missing ({jar.relative_to(ROOT)}): {reason}")
    if args.emulator_port and not os.environ.get("AWS_ENDPOINT_URL"):
        import socket

        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", args.emulator_port)) == 0:
                raise DemoError(f"emulator: port {args.emulator_port} is taken (another process listens on it)")
    return jar


# --- parts ------------------------------------------------------------------------------------------------


def start_emulator(args: argparse.Namespace, out: Path, stack: contextlib.ExitStack) -> Emulator:
    from pulse_local.emulator import start_moto

    external = connect()
    if external is not None:
        emulator = external
    else:
        try:
            emulator = start_moto(port=args.emulator_port, log_path=out / "emulator.log")
        except EmulatorError as error:
            raise DemoError(f"emulator: {error} (log: {out / 'emulator.log'})") from None
        stack.callback(emulator.stop)
    emulator.apply_env()
    stack.callback(emulator.restore_env)
    return emulator


@dataclass
class Api:
    base_url: str
    process: subprocess.Popen[bytes] | None = None
    stop: Callable[[], None] = lambda: None
    auth: httpx.Auth | None = None  # how GET /monitoring/* is authorized (Lambda: SigV4, as an IAM caller)


def api_env(emulator: Emulator, stream: str, table: str, fallback: Path) -> dict[str, str]:
    env = {**os.environ, **emulator.env}
    env.update(
        {
            "PULSE_STREAM_NAME": stream,
            "PULSE_ANOMALY_TABLE": table,
            "PULSE_PUBLISHER": "kinesis",
            "PULSE_FALLBACK_LOG": str(fallback),
            # The traffic driver is the load balancer in front of the API: its X-Forwarded-For is believed.
            "PULSE_TRUSTED_PROXIES": "127.0.0.1/32",
            # Reading the anomalies is not the shop's traffic (and would be judged as such).
            "PULSE_EXCLUDED_ROUTES": "/monitoring/*",
        }
    )
    for key in ("AWS_LAMBDA_FUNCTION_NAME", "PULSE_PUBLISHER_MODE", "PULSE_MONITORING_AUTH"):
        env.pop(key, None)
    return env


def start_uvicorn(env: dict[str, str], out: Path, stack: contextlib.ExitStack, timeout_s: float = 30.0) -> Api:
    port = free_port()
    env = {**env, "PULSE_PUBLISHER_MODE": "buffered"}
    command = [sys.executable, "-m", "uvicorn", "pulse_local.demo_app:create_demo_app", "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--no-access-log"]  # fmt: skip
    log = (out / "api.log").open("ab")
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    log.close()

    def stop() -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # graceful: the buffered publisher flushes
            try:
                process.wait(timeout=25)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    stack.callback(stop)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise DemoError(f"API (uvicorn): exited with status {process.returncode} (log: {out / 'api.log'})")
        try:
            httpx.get(base + "/health", timeout=0.5)
            return Api(base, process, stop)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise DemoError(
                    f"API (uvicorn): not answering after {timeout_s:.0f} s (log: {out / 'api.log'})"
                ) from None
            time.sleep(0.1)


def flink_log_dir() -> Path:
    """Where the local mini-cluster writes its logs (PyFlink's package directory)."""
    import pyflink

    return Path(pyflink.__file__).parent / "log"


class FlinkJob:
    """The streaming job in this process's local mini-cluster, with its REST API for status and metrics."""

    def __init__(self, groups: list[dict[str, Any]]) -> None:
        self.groups = groups
        self.rest_port = free_port()
        self.rest = FlinkRest.on_port(self.rest_port, timeout_s=3)
        self.client: Any = None
        self.error: BaseException | None = None
        self.submitted = threading.Event()
        self.cancelled = False
        self._lag_ids: list[str] | None = None
        self._source_vertex: str | None = None
        self.source_name = ""
        self.thread = threading.Thread(target=self._submit, name="flink-submit", daemon=True)

    def start(self) -> FlinkJob:
        self.thread.start()
        return self

    def _submit(self) -> None:
        try:
            from flink_app import job
            from flink_app.config import JobConfig

            config = JobConfig.from_property_groups(self.groups)
            flink_conf = {"rest.port": str(self.rest_port), "metrics.fetcher.update-interval": "1000"}
            pipeline = job.build(config, bounded=False, flink_conf=flink_conf)
            if not self.cancelled:
                self.client = job.execute_async(pipeline)
        except BaseException as error:
            self.error = error
        finally:
            self.submitted.set()

    @property
    def job_id(self) -> str | None:
        return str(self.client.get_job_id()) if self.client is not None else None

    def status(self) -> str:
        if self.error is not None:
            return "FAILED TO START"
        if self.client is None:
            return "starting"
        try:
            return str(self.rest.get(f"/jobs/{self.job_id}")["state"])
        except (OSError, ValueError, KeyError):
            return "?"

    def source_lag_ms(self) -> float | None:
        """The Kinesis source's ``millisBehindLatest``, the largest over its splits (None until reported)."""
        if self.client is None:
            return None
        try:
            if self._lag_ids is None:
                source = self.rest.vertices(str(self.job_id))[0]
                self._source_vertex, self.source_name = source["id"], source["name"]
                lag = [
                    i for i in self.rest.metric_ids(str(self.job_id), source["id"]) if i.endswith("millisBehindLatest")
                ]
                if not lag:
                    return None
                self._lag_ids = lag
            values = self.rest.metric_values(str(self.job_id), str(self._source_vertex), self._lag_ids)
            values = [v for v in values if v >= 0]
            return max(values) if values else None
        except (OSError, ValueError, KeyError, IndexError):
            return None

    def metric(self, name: str) -> int:
        """The job's ``kinesisanalytics.<name>`` summed over vertices and subtasks (0 until reported)."""
        if self.client is None:
            return 0
        try:
            return self.rest.job_metric(str(self.job_id), name)
        except (OSError, ValueError, KeyError):
            return 0

    def source_kind(self) -> str:
        """Which Flink source reads the events: the Kinesis source reports ``millisBehindLatest`` per split."""
        if self._lag_ids:
            return "kinesis"
        return "unknown"

    def cancel(self) -> None:
        """Cancel the job (once); a submission still under way is waited for, then cancelled."""
        if self.cancelled:
            return
        self.cancelled = True
        self.submitted.wait(120)
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.cancel().result(30)


class StreamTail:
    """Reads the stream as it fills (every shard from its start): what the API delivered."""

    def __init__(self, emulator: Emulator, stream: str) -> None:
        self.kinesis = emulator.client("kinesis")
        self.stream = stream
        self.iterators: dict[str, str | None] = {}
        self.events: list[dict[str, Any]] = []
        self.error: str | None = None

    def poll(self) -> None:
        try:
            if not self.iterators:
                for shard in self.kinesis.list_shards(StreamName=self.stream)["Shards"]:
                    self.iterators[shard["ShardId"]] = self.kinesis.get_shard_iterator(
                        StreamName=self.stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                    )["ShardIterator"]
            for shard, iterator in list(self.iterators.items()):
                for _ in range(20):  # bounded: at most 20 pages per shard per poll
                    if not iterator:
                        break
                    page = self.kinesis.get_records(ShardIterator=iterator, Limit=10_000)
                    self.events.extend(json.loads(r["Data"]) for r in page["Records"])
                    iterator = page.get("NextShardIterator")
                    if not page["Records"]:
                        break
                self.iterators[shard] = iterator
            self.error = None
        except Exception as error:  # the emulator may be unreachable for a while; the view says so
            self.error = f"{type(error).__name__}"


class AnomalyReader:
    """``GET /monitoring/anomalies`` as a user would call it; remembers when each record was first read."""

    def __init__(self, api: Api, since_ms: int) -> None:
        self.api = api
        self.since = datetime.fromtimestamp(since_ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        self.records: dict[tuple[str, str], Anomaly] = {}
        self.first_read: dict[tuple[str, str], float] = {}  # wall-clock s
        self.error: str | None = None
        self.client = httpx.Client(base_url=api.base_url, timeout=10.0)

    def poll(self) -> None:
        cursor: str | None = None
        try:
            for _ in range(20):  # bounded paging
                params = {"since": self.since, "limit": "200", **({"cursor": cursor} if cursor else {})}
                answer = self.client.get(
                    "/monitoring/anomalies", params=params, auth=self.api.auth or httpx.USE_CLIENT_DEFAULT
                )
                if answer.status_code != 200:
                    self.error = f"HTTP {answer.status_code}: {answer.text[:120]}"
                    return
                page = answer.json()
                now = time.time()
                for item in page["items"]:
                    anomaly = Anomaly.from_record(item)
                    key = (anomaly.pk, anomaly.sk)
                    self.records[key] = anomaly
                    self.first_read.setdefault(key, now)
                cursor = page.get("next_cursor")
                if not cursor:
                    break
            self.error = None
        except (httpx.HTTPError, ValueError, KeyError) as error:
            self.error = type(error).__name__

    def close(self) -> None:
        self.client.close()


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with path.open("rb") as lines:
        return sum(1 for line in lines if b'"pulse_fallback"' in line)


def wait_for_job(job: FlinkJob, api: Api, view: Any, api_name: str, timeout_s: float = JOB_START_S) -> None:
    """Until the job runs and its Kinesis source reports its lag (or has run a while without reporting it)."""
    deadline = time.monotonic() + timeout_s
    running_since: float | None = None
    while True:
        if job.error is not None:
            raise DemoError(f"Flink job: could not start: {type(job.error).__name__}: {job.error}")
        if api.process is not None and api.process.poll() is not None:
            raise DemoError(f"API ({api_name}): exited with status {api.process.returncode}")
        status = job.status()
        if status == "RUNNING":
            running_since = running_since or time.monotonic()
            if job.source_lag_ms() is not None or time.monotonic() - running_since > 15:
                return
        elif status in ("FAILED", "CANCELED", "FAILED TO START"):
            raise DemoError(f"Flink job: {status} before the traffic started (logs: {flink_log_dir()})")
        if time.monotonic() > deadline:
            raise DemoError(f"Flink job: not running after {timeout_s:.0f} s (status {status})")
        view.update()
        time.sleep(POLL_S)


class Outage:
    """The emulator unreachable for ``seconds`` from ``at`` (wall clock), then the fallback log replayed.

    The replay runs once the API has written no fallback line for 3 s after the endpoint is back
    (its circuit breaker probes again after a cool-down), at most 30 s after; as a user would run it.
    """

    def __init__(self, relay: Any, at: float, seconds: float, fallback: Path, stream: str, out: Path) -> None:
        self.relay, self.at, self.seconds = relay, at, seconds
        self.fallback, self.stream, self.out = fallback, stream, out
        self.state = "planned" if relay is not None and seconds else "none"
        self.lines_seen, self.quiet_since = 0, 0.0
        self.replay_output = ""
        self.replay_status: int | None = None

    @property
    def window(self) -> tuple[float, float]:
        return self.at, self.at + self.seconds

    def step(self, run: Run) -> None:
        now = time.time()
        if self.state == "planned" and now >= self.at:
            self.relay.down()
            self.state = "down"
        elif self.state == "down" and now >= self.at + self.seconds:
            self.relay.up()
            self.state = "back"
            self.quiet_since = now
        elif self.state == "back":
            lines = count_lines(self.fallback)
            if lines != self.lines_seen:
                self.lines_seen, self.quiet_since = lines, now
            if now - self.quiet_since >= 3 or now - self.at - self.seconds > 30:
                self.state = "replaying"
                self.replay()

    def replay(self) -> None:
        env = {**os.environ, "AWS_ENDPOINT_URL": self.relay.endpoint}
        command = [sys.executable, "-m", "lambda_api.fallback_replay", str(self.fallback), "--stream", self.stream]
        try:
            result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            raise DemoError("replay: did not finish within 120 s") from None
        (self.out / "replay.log").write_text(result.stdout + result.stderr)
        self.replay_output = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr[-200:]
        self.replay_status = result.returncode
        self.state = "replayed"

    def replayed(self) -> int:
        for pair in self.replay_output.split():
            if pair.startswith("delivered="):
                return int(pair.split("=", 1)[1])
        return 0


# --- results ---------------------------------------------------------------------------------------------


@dataclass
class Found:
    label: Injection
    latency_s: float | None  # injection start to its anomaly first read through the API (wall clock)
    delay_s: float | None  # injection start to the window_end of that record (event time)
    anomaly: Anomaly | None


def match(labels: list[Injection], reader: AnomalyReader, tolerance_s: float) -> tuple[list[Found], Evaluation]:
    anomalies = list(reader.records.values())
    evaluation = evaluate(anomalies, labels, tolerance_s=tolerance_s)
    out = []
    for label in labels:
        hits = [
            (reader.first_read[key], anomaly)
            for key, anomaly in reader.records.items()
            if label.kind in anomaly.kind_list  # one incident per subject: a kind may be a facet of another's
            and anomaly.subject == label.subject
            and anomaly.phase != "end"
            and label.start_ms <= anomaly.window_end <= label.end_ms + tolerance_s * 1000
        ]
        if hits:
            seen, anomaly = min(hits, key=lambda h: h[0])
            out.append(
                Found(label, seen - label.start_ms / 1000, (anomaly.window_end - label.start_ms) / 1000, anomaly)
            )
        else:
            out.append(Found(label, None, None, None))
    return out, evaluation


def fallback_events(path: Path) -> list[dict[str, Any]]:
    """The events in the fallback log (what the API could not deliver)."""
    from lambda_api.publishers.fallback import read_fallback_lines

    if not path.exists():
        return []
    with path.open() as lines:
        return [json.loads(e.record.data) for e in read_fallback_lines(lines) if not isinstance(e, ValueError)]


def lost_requests(driver: Driver, on_stream: list[dict[str, Any]], fallback: Path) -> set[int]:
    """Requests that were answered but whose event is neither on the stream nor in the fallback log."""
    from pulse_local.demo_traffic import request_number

    seen = {request_number(e) for e in [*on_stream, *fallback_events(fallback)]}
    return set(driver.stats.answered_numbers) - seen


def outage_figures(outage: Outage, driver: Driver) -> dict[str, Any]:
    """With --outage: how long, what was replayed, and the API's median latency during it and otherwise."""
    if outage.state == "none":
        return {}
    start, end = outage.window
    during = [ms for at, ms in driver.stats.timings if start <= at < end]
    other = [ms for at, ms in driver.stats.timings if not start <= at < end]
    return {
        "outage_s": outage.seconds,
        "replayed": outage.replayed(),
        "replay_status": outage.replay_status,
        "api_p50_ms_outage": round(statistics.median(during), 1) if during else "nan",
        "api_p50_ms_otherwise": round(statistics.median(other), 1) if other else "nan",
        "api_p99_ms_outage": round(quantile(during, 0.99), 1) if during else "nan",
        "api_p99_ms_otherwise": round(quantile(other, 0.99), 1) if other else "nan",
    }


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


# --- the run ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pulse_local.demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes",
        type=float,
        default=2.5,
        help="minutes of traffic at most (2.5 to 60; default 2.5): it stops once every injection is found",
    )
    parser.add_argument("--seed", type=int, default=7, help="traffic seed (default 7)")
    parser.add_argument("--rps", type=float, default=40.0, help="the site's requests per second at the daily peak")
    parser.add_argument("--api", choices=("uvicorn", "lambda"), default="uvicorn",
                        help="uvicorn with the buffered publisher (default), or local Lambda environments behind "
                        "a local API Gateway with the after-response extension")  # fmt: skip
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "demo", help="picture, logs (default build/demo)")
    parser.add_argument("--emulator-port", type=int, default=None, help="port of the embedded emulator (default: free)")
    parser.add_argument("--outage", type=float, default=0, metavar="S",
                        help="make the emulator unreachable for S seconds (5 to 60) during the injections, then "
                        "replay the fallback log with `python -m lambda_api.fallback_replay`")  # fmt: skip
    parser.add_argument("--no-live", action="store_true", help="a line every 10 s instead of the live view")
    args = parser.parse_args(argv)
    if not 2.5 <= args.minutes <= 60:
        parser.error("--minutes must be between 2.5 and 60 (a minute of warm-up, then the injections)")
    if args.outage and not 5 <= args.outage <= 60:
        parser.error("--outage must be between 5 and 60 seconds")
    if not 5 <= args.rps <= 200:
        parser.error("--rps must be between 5 and 200")
    return args


@dataclass
class Run:
    args: argparse.Namespace
    out: Path
    labels: list[Injection] = field(default_factory=list)
    start_ms: int = 0
    end_ms: int = 0
    driver: Driver | None = None
    job: FlinkJob | None = None
    tail: StreamTail | None = None
    reader: AnomalyReader | None = None
    fallback: Path | None = None
    api_name: str = "uvicorn"
    relay: Any = None  # pulse_local.outage.EndpointRelay with --outage
    outage: Outage | None = None
    stopped_ms: int = 0  # when the traffic was stopped
    phase: str = "starting"


def run(args: argparse.Namespace) -> int:
    from pulse_local import demo_view

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise (PyFlink logs INFO)

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    state = Run(args, out)
    began = time.monotonic()
    console = demo_view.console()
    stop_signal: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stop_signal.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_signal)
    stack = contextlib.ExitStack()
    try:
        with stack:
            preflight(args)
            with part("emulator"):
                emulator = start_emulator(args, out, stack)
            # What the API and the demo's own reads talk to: the emulator, or with --outage a relay that can go
            # down. The job reads and writes the emulator directly: behind the relay, its Kinesis source
            # stalled after an outage in one run of two (no error, no failover, no progress).
            parts_see = emulator
            if args.outage:
                from pulse_local.outage import EndpointRelay

                with part("emulator relay"):
                    relay = EndpointRelay(emulator.endpoint)
                    stack.callback(relay.close)
                    state.relay = relay
                parts_see = replace(emulator, endpoint=relay.endpoint, process=None)
            suffix = uuid.uuid4().hex[:8]
            stream, table = f"pulse-demo-events-{suffix}", f"pulse-demo-anomalies-{suffix}"
            with part("emulator: stream and table"):
                stream_arn = create_stream(emulator, stream, shards=2)
                create_anomaly_table(emulator, table)
            groups = demo_profile.property_groups(
                stream_arn, table, emulator.endpoint, emulator.region, peak_rps=args.rps, replay_after_s=args.outage
            )
            (out / "job-properties.json").write_text(json.dumps(groups, indent=2))
            with part("Flink job"):
                job = FlinkJob(groups).start()
                state.job = job
                stack.callback(job.cancel)
            fallback = out / f"fallback-{suffix}.log"
            state.fallback = fallback
            with part(f"API ({args.api})"):
                env = api_env(parts_see, stream, table, fallback)
                if args.api == "lambda":
                    from pulse_local.local_apigw import start_lambda_api

                    api = start_lambda_api(env, out, stack)
                else:
                    api = start_uvicorn(env, out, stack)
                state.api_name = args.api
            with demo_view.live(console, state, enabled=not args.no_live) as view:
                # Traffic starts once the job reads the stream: a source that starts behind reads one
                # shard's backlog before the other's, and the second's events would all be late.
                state.phase = "starting the job"
                wait_for_job(job, api, view, args.api)
                with part("traffic generator"):
                    duration_s = int(args.minutes * 60)
                    # Traffic never stops while the demo waits: a stream that goes quiet is an outage to the
                    # job (every busy route would go silent). It stops once every injection was found.
                    state.start_ms = int(time.time() * 1000) + 2000
                    spec = TrafficSpec(
                        seed=args.seed,
                        start_ms=state.start_ms,
                        start_phase=START_PHASE,
                        duration_s=duration_s + int(SETTLE_S),
                        peak_rps=args.rps,
                        day_s=DAY_S,
                        routes=SHOP_ROUTES,
                    )
                    generator = TrafficGenerator(spec)
                    injections = schedule(generator, WARMUP_S, duration_s - TAIL_S, args.seed)
                    events = list(generator.events(injections))
                    state.labels = as_shop_labels(injections)
                    state.end_ms = state.start_ms + duration_s * 1000
                    (out / "injections.json").write_text(json.dumps([i.to_label() for i in state.labels], indent=2))
                state.tail = StreamTail(parts_see, stream)
                outage = Outage(state.relay, state.start_ms / 1000 + WARMUP_S + 4, args.outage, fallback, stream, out)
                state.outage = outage
                state.reader = AnomalyReader(api, state.start_ms - 60_000)
                stack.callback(state.reader.close)
                driver = Driver(api.base_url, events, seed=args.seed).start()
                state.driver = driver
                stack.callback(driver.close)
                state.phase = "traffic"
                deadline = state.end_ms / 1000 + SETTLE_S
                while True:
                    time.sleep(POLL_S)
                    if job.error is not None:
                        raise DemoError(f"Flink job: could not start: {type(job.error).__name__}: {job.error}")
                    if driver.error is not None:
                        raise DemoError(f"traffic driver: {type(driver.error).__name__}: {driver.error}")
                    if api.process is not None and api.process.poll() is not None:
                        raise DemoError(f"API ({args.api}): exited with status {api.process.returncode}")
                    outage.step(state)
                    state.tail.poll()
                    state.reader.poll()
                    found, _ = match(state.labels, state.reader, demo_profile.tolerance_s())
                    last_injection_end = max(label.end_ms for label in state.labels) / 1000
                    if time.time() > last_injection_end and state.phase == "traffic":
                        state.phase = "waiting for the last anomalies"
                    view.update()
                    if time.time() > deadline or (
                        time.time() > last_injection_end and all(f.anomaly is not None for f in found)
                    ):
                        break
                    if driver.done.is_set() and time.time() < deadline - 5:
                        raise DemoError("traffic driver: ran out of traffic before the demo ended")
            state.phase = "stopping"
            state.stopped_ms = int(time.time() * 1000)
            # In the order data flows: the traffic ends, the last anomalies are read through the API, the
            # job is cancelled, the API shuts down (flushing what it buffered), the stream is read a last time.
            driver.close()
            state.reader.poll()
            source = job.source_kind()
            rejected, late = job.metric(job_metrics.REJECTED), job.metric(job_metrics.LATE)
            job.cancel()
            api.stop()
            state.tail.poll()
            found, evaluation = match(state.labels, state.reader, demo_profile.tolerance_s())
        lost = lost_requests(driver, state.tail.events, fallback)
        (out / "lost.json").write_text(json.dumps({n: driver.stats.answered_numbers[n] for n in sorted(lost)}))
        with (out / "events.jsonl").open("w") as kept:  # what reached the stream: a backtest input too
            kept.writelines(json.dumps(e, separators=(",", ":")) + "\n" for e in state.tail.events)
        records = sorted(state.reader.records.values(), key=lambda a: (a.window_end, a.pk, a.sk))
        (out / "anomalies.jsonl").write_text("".join(json.dumps(a.to_record()) + "\n" for a in records))
        png = demo_view.picture(state, found, evaluation)
        demo_view.summary(console, state, found, evaluation, png)
        latencies = [f.latency_s for f in found if f.latency_s is not None]
        delays = [f.delay_s for f in found if f.delay_s is not None]
        figures = {
            "injected": len(found),
            "found": len(latencies),
            "false_alarms": len(evaluation.unexplained),
            "side_effects": len(evaluation.side_effects),
            "median_latency_s": round(statistics.median(latencies), 1) if latencies else "nan",
            "p90_latency_s": round(quantile(latencies, 0.9), 1) if latencies else "nan",
            "median_window_delay_s": round(statistics.median(delays), 1) if delays else "nan",
            "requests": driver.stats.sent,
            "events_on_stream": len({e["id"] for e in state.tail.events}),
            "fallback": count_lines(fallback),
            "lost": len(lost),
            "no_answer": driver.stats.failed,
            "rejected": rejected,
            "late": late,
            **outage_figures(outage, driver),
            "source": source,
            "sink": "dynamodb",
            "api": state.api_name,
            "seed": args.seed,
            "minutes": args.minutes,
            "wall_s": round(time.monotonic() - began, 1),
            "png": png,
        }
        print(" ".join(f"{key}={value}" for key, value in figures.items()), flush=True)
        return 0 if len(latencies) == len(found) else 1
    except DemoError as error:
        console.print(f"[bold red]demo: {error}[/]")
        console.print("demo: every part that had started is stopped")
        return 2
    except KeyboardInterrupt:
        reason = "SIGTERM" if stop_signal else "Ctrl-C"
        console.print(f"[bold yellow]demo: interrupted ({reason}); every part that had started is stopped[/]")
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
