"""Throughput of the detection job over generated traffic: full job vs the SQL stages alone.

    python bench/flink_throughput.py [--events 2000000] [--repeat 3] [--baseline main]

Two shapes of input, generated once and read by every run:

* **dense**: ``--events`` events at 2 000 events/s of event time over ``--routes`` routes and
  ``--clients`` clients, one spike, the default windows (1 min). For each ``--parallelism`` it runs
  (a) the full backtest job (SQL stages + Python detection) and (b) the same source and SQL stages
  with the windows going to a discarding ('blackhole') sink. Start-up is measured apart by running
  each job over a tiny file first; steady throughput is ``events / (total - start-up)``.
* **long history**: a backtest over months of event time (``--long-days``) with five-minute windows
  (route windows of 5 min sliding by 1 min, client windows of 5 min) and few events per window
  (``--long-rate`` events/s over ``--long-routes`` routes and ``--long-clients`` clients): the cost of
  a user replaying history to tune thresholds, which grows with the number of windows rather than
  events. ``long_history_windows`` counts the route and client windows that hold an event (what the
  SQL stages aggregate), computed from the generated events.

Each measurement runs in a child process (its own JVM) importing the job from a source tree: this
checkout, and with ``--baseline REF`` also the code of that git ref, checked out into a temporary
``git worktree`` (removed at the end). With ``--repeat N`` the trees alternate N times (ABBA order)
and each figure keeps its best run (a shared machine's noise only ever slows a run down). Each run
also reports the CPU seconds of the JVM and of Python (the job's Python functions run in the child
in loopback mode), start-up apart. Then the full streaming job reads an emulated stream (embedded
moto) of 1 and 4 shards through Flink's Kinesis source: ``kinesis_source_events_per_s``.

Prints ``name=value`` lines; the LAST line holds the headline figures of this checkout, among them
``events_per_s`` and ``sql_only_events_per_s`` (dense, parallelism 1), ``python_overhead_ratio`` (full
/ SQL-only steady time), ``long_history_events_per_s`` and ``long_history_windows_per_s``, the load
average before and after, and with ``--baseline`` each figure of the baseline as ``baseline_<name>``
and ``speedup_<name>`` (after / before).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flink_app import job
from flink_app.cli import backtest_config
from flink_app.config import JobConfig
from pulse_local.processes import without_pyflink_runtime
from pulse_local.steady import Spike, steady
from pulse_local.traffic import write_jsonl

ROOT = Path(__file__).resolve().parent.parent

START_MS = 1_767_225_600_000
DAY_MS = 86_400_000
RESULT_PREFIX = "RESULT "
# The long-history shape's windows: five minutes, route windows sliding by one.
LONG_WINDOWS = {"route.size.s": "300", "route.slide.s": "60", "client.size.s": "300"}


def generate(path: Path, events: int, routes: int, clients: int) -> int:
    rate = 2000.0
    duration_ms = int(events / rate * 1000)
    spike = Spike("/api/r7/{item_id}", START_MS + duration_ms // 2, 10_000, max(events // 100, 1))
    return write_jsonl(steady(START_MS, duration_ms, rate, routes, clients, spikes=(spike,)), path)


def long_history(days: int, rate_per_s: float, routes: int, clients: int) -> Iterator[dict[str, Any]]:
    return steady(START_MS, days * DAY_MS, rate_per_s, routes, clients, seed=11)


def windows_holding(events: Iterable[dict[str, Any]], windows: dict[str, str]) -> int:
    """Route (sliding) and client (tumbling) windows that hold at least one of ``events``."""
    size, slide, client = (int(windows[k]) * 1000 for k in ("route.size.s", "route.slide.s", "client.size.s"))
    route_windows: set[tuple[str, int]] = set()
    client_windows: set[tuple[str, int]] = set()
    for e in events:
        last = e["ts"] - e["ts"] % slide
        route_windows.update((e["route"], start) for start in range(last, e["ts"] - size, -slide))
        client_windows.add((e["client_ip"], e["ts"] - e["ts"] % client))
    return len(route_windows) + len(client_windows)


def long_config(base: JobConfig) -> JobConfig:
    groups = [{"PropertyGroupId": "pulse.windows", "PropertyMap": LONG_WINDOWS}]
    windows = JobConfig.from_property_groups(groups).windows
    return base.model_copy(update={"windows": windows})


def timed_run(config: JobConfig, parallelism: int, detect: bool) -> tuple[float, int]:
    """Seconds from build to end of a bounded run, and how many anomalies it produced."""
    started = time.perf_counter()
    pipeline = job.build(config, bounded=True, parallelism=parallelism, detect=detect)
    anomalies = 0
    if detect:
        anomalies = sum(1 for _ in job.collect_anomalies(pipeline))
    else:
        job.execute(pipeline, "pulse-sql-only")
    return time.perf_counter() - started, anomalies


def cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of this process (the driver and, in loopback mode, the job's Python
    functions) and of its descendants (the JVM; its own children, if any, counted with it)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[tuple[int, float]]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append((int(entry), (int(fields[11]) + int(fields[12])) / tick))
    times = os.times()
    jvm, stack = 0.0, [os.getpid()]
    while stack:
        for pid, cpu in children.get(stack.pop(), []):
            jvm += cpu
            stack.append(pid)
    return {"python": times.user + times.system, "jvm": jvm}


def measured_run(config: JobConfig, startup: JobConfig, parallelism: int, detect: bool) -> dict[str, float]:
    """One steady measurement: the tiny run (start-up), then the big one; wall and CPU seconds."""
    before = cpu_seconds()
    startup_s, _ = timed_run(startup, parallelism, detect)
    middle = cpu_seconds()
    total_s, anomalies = timed_run(config, parallelism, detect)
    after = cpu_seconds()
    figures = {"startup_s": startup_s, "total_s": total_s, "steady_s": max(total_s - startup_s, 1e-3)}
    figures["anomalies"] = anomalies
    for part in ("jvm", "python"):  # the big run's CPU less the start-up run's
        figures[f"{part}_cpu_s"] = (after[part] - middle[part]) - (middle[part] - before[part])
    return figures


def worker(task: dict[str, Any]) -> dict[str, Any]:
    """One child's measurements (``--worker``): the job imported from ``task['root']``."""
    scratch = Path(task["scratch"])
    base = JobConfig()
    configs = {
        "dense": backtest_config(base, Path(task["dense"]), scratch / f"{os.getpid()}-dense.jsonl"),
        "long": backtest_config(long_config(base), Path(task["long"]), scratch / f"{os.getpid()}-long.jsonl"),
    }
    tiny = {
        "dense": backtest_config(base, Path(task["tiny"]), scratch / f"{os.getpid()}-tiny.jsonl"),
        "long": backtest_config(long_config(base), Path(task["tiny"]), scratch / f"{os.getpid()}-tiny-long.jsonl"),
    }
    if task["kind"] == "kinesis":
        read = kinesis_read_rate(task["records"], task["shards"])
        return {"events_per_s": read.events_per_s, "read": read.read, "seconds": read.seconds}
    timed_run(tiny["dense"], 1, detect=True)  # JVM and Python workers warm-up, not measured
    results = {}
    for mode in task["modes"]:
        detect = mode == "full"
        results[mode] = measured_run(configs[task["kind"]], tiny[task["kind"]], task["parallelism"], detect)
    return results


def run_worker(root: Path, task: dict[str, Any], label: str) -> dict[str, Any]:
    """Runs :func:`worker` in a child process importing the job from ``root``; its result."""
    env = without_pyflink_runtime()
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    env[job.JAR_ENV] = str(job.connector_jar())  # a baseline checkout has no JAR of its own
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps({**task, "root": str(root)})]
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
    results = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode or not results:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise SystemExit(f"bench: the {label} run failed (exit {done.returncode}):\n{tail}")
    return dict(json.loads(results[-1][len(RESULT_PREFIX) :]))


def load_average() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


@dataclass
class KinesisRead:
    """How the full job read an emulated stream through Flink's Kinesis source."""

    shards: int
    records: int
    read: int  # what the source emitted before the deadline
    seconds: float  # from the first record out of the source to the last

    @property
    def events_per_s(self) -> float:
        return self.read / max(self.seconds, 1e-3)


def kinesis_read_rate(records: int, shards: int, timeout_s: float = 300.0) -> KinesisRead:
    """The full streaming job (Kinesis source, SQL stages, detection, DynamoDB sink) over ``records``
    events already on an emulated stream of ``shards`` shards, read from its start at parallelism 1.

    The rate counts from the first record the source emits to the last (start-up apart), as the sum
    over subtasks of the source operator's ``numRecordsOut``, read through the mini-cluster's REST API.
    """
    import json

    from pulse_local.emulator import create_anomaly_table, create_stream, free_port, running_emulator

    job.connector_jar()  # fails, naming where it looked, without the JAR
    with running_emulator() as emulator:
        arn = create_stream(emulator, f"bench-events-{shards}", shards=shards)
        create_anomaly_table(emulator, f"bench-anomalies-{shards}")
        kinesis = emulator.client("kinesis")
        batch: list[dict[str, Any]] = []
        for item in steady(START_MS, records, 1000.0, 200, 10_000):
            batch.append({"Data": json.dumps(item).encode(), "PartitionKey": item["id"]})
            if len(batch) == 500:
                kinesis.put_records(StreamARN=arn, Records=batch)
                batch = []
        if batch:
            kinesis.put_records(StreamARN=arn, Records=batch)
        endpoint = {"aws.endpoint": emulator.endpoint}
        config = JobConfig.from_property_groups(
            [
                {
                    "PropertyGroupId": "pulse.source",
                    "PropertyMap": {"stream.arn": arn, "init.position": "TRIM_HORIZON", **endpoint},
                },
                {
                    "PropertyGroupId": "pulse.sink",
                    "PropertyMap": {
                        "table.name": f"bench-anomalies-{shards}",
                        "aws.region": emulator.region,
                        **endpoint,
                    },
                },
            ]
        )
        port = free_port()
        pipeline = job.build(
            config,
            bounded=False,
            parallelism=1,
            flink_conf={"rest.port": str(port), "metrics.fetcher.update-interval": "500"},
        )
        client = job.execute_async(pipeline, "pulse-kinesis-read")
        try:
            deadline = time.perf_counter() + timeout_s
            first: tuple[float, int] | None = None
            out = 0
            while time.perf_counter() < deadline:
                out = _source_records_out(client, f"http://127.0.0.1:{port}")
                now = time.perf_counter()
                if out and first is None:
                    first = (now, out)
                if out >= records:
                    break
                time.sleep(0.2)
            seconds = (time.perf_counter() - first[0]) if first else timeout_s
            return KinesisRead(shards, records, out - (first[1] if first else 0), seconds)
        finally:
            client.cancel().result()  # type: ignore[attr-defined]


def _source_records_out(client: object, base: str) -> int:
    """Records the Kinesis source operator emitted, summed over its subtasks (0 while not reported)."""
    import json
    import urllib.request

    job_id = str(client.get_job_id())  # type: ignore[attr-defined]
    total = 0
    try:
        for vertex in json.load(urllib.request.urlopen(f"{base}/jobs/{job_id}", timeout=2))["vertices"]:
            if not vertex["name"].startswith("Source"):
                continue
            url = f"{base}/jobs/{job_id}/vertices/{vertex['id']}/metrics"
            wanted = [
                m["id"]
                for m in json.load(urllib.request.urlopen(url, timeout=2))
                if m["id"].endswith(".numRecordsOut") and ".Source__" in m["id"]
            ]
            if wanted:
                values = json.load(urllib.request.urlopen(f"{url}?get={','.join(wanted)}", timeout=2))
                total += sum(int(float(m["value"])) for m in values)
    except OSError:
        return 0
    return total


def checkout(ref: str, into: Path) -> Path:
    """A detached ``git worktree`` of ``ref`` (the baseline's code) at ``into``."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(into), ref], check=True, capture_output=True
    )
    return into


def remove_checkout(path: Path) -> None:
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False, capture_output=True
    )


def best(runs: list[dict[str, float]]) -> dict[str, float]:
    return min(runs, key=lambda r: r["steady_s"])


def print_run(label: str, shape: str, mode: str, parallelism: int, events: int, r: dict[str, float]) -> None:
    print(
        f"code={label} shape={shape} mode={mode} parallelism={parallelism} startup_s={r['startup_s']:.1f} "
        f"total_s={r['total_s']:.1f} steady_s={r['steady_s']:.1f} events_per_s={events / r['steady_s']:.0f} "
        f"jvm_cpu_s={r['jvm_cpu_s']:.1f} python_cpu_s={r['python_cpu_s']:.1f} anomalies={r['anomalies']:.0f} "
        f"load={load_average()}",
        flush=True,
    )


def measure(args: argparse.Namespace, trees: dict[str, Path], scratch: Path) -> dict[str, dict[str, Any]]:
    """Every figure of each tree (``after``: this checkout; ``before``: the baseline)."""
    dense, long_input, tiny = scratch / "events.jsonl", scratch / "long.jsonl", scratch / "tiny.jsonl"
    started = time.perf_counter()
    events = generate(dense, args.events, args.routes, args.clients)
    long_events = write_jsonl(
        long_history(args.long_days, args.long_rate, args.long_routes, args.long_clients), long_input
    )
    long_windows = windows_holding(
        long_history(args.long_days, args.long_rate, args.long_routes, args.long_clients), LONG_WINDOWS
    )
    write_jsonl(steady(START_MS, 2_000, 50.0, 5, 5), tiny)
    print(
        f"generated_events={events} long_history_events={long_events} long_history_windows={long_windows} "
        f"generate_s={time.perf_counter() - started:.1f}",
        flush=True,
    )
    common = {"dense": str(dense), "long": str(long_input), "tiny": str(tiny), "scratch": str(scratch)}
    runs: dict[tuple[str, str, str, int], list[dict[str, float]]] = {}
    labels = list(trees)
    for repeat in range(args.repeat):
        order = labels if repeat % 2 == 0 else labels[::-1]  # ABBA: drift in the load hits both alike
        for label in order:
            for parallelism in args.parallelism:
                task = {**common, "kind": "dense", "parallelism": parallelism, "modes": ["full", "sql"]}
                for mode, r in run_worker(trees[label], task, label).items():
                    runs.setdefault((label, "dense", mode, parallelism), []).append(r)
                    print_run(label, "dense", mode, parallelism, events, r)
            task = {**common, "kind": "long", "parallelism": 1, "modes": ["full", "sql"]}
            for mode, r in run_worker(trees[label], task, label).items():
                runs.setdefault((label, "long", mode, 1), []).append(r)
                print_run(label, "long", mode, 1, long_events, r)

    figures: dict[str, dict[str, Any]] = {}
    for label in labels:
        f: dict[str, Any] = {"events": events}
        for p in args.parallelism:
            full, sql = best(runs[(label, "dense", "full", p)]), best(runs[(label, "dense", "sql", p)])
            suffix = "" if p == args.parallelism[0] else f"_p{p}"
            f[f"events_per_s{suffix}"] = events / full["steady_s"]
            f[f"sql_only_events_per_s{suffix}"] = events / sql["steady_s"]
            f[f"python_overhead_ratio{suffix}"] = full["steady_s"] / sql["steady_s"]
            if not suffix:
                f["startup_s"] = full["startup_s"]
                f["jvm_cpu_s_per_million"] = full["jvm_cpu_s"] * 1e6 / events
                f["python_cpu_s_per_million"] = full["python_cpu_s"] * 1e6 / events
                f["sql_only_jvm_cpu_s_per_million"] = sql["jvm_cpu_s"] * 1e6 / events
        full, sql = best(runs[(label, "long", "full", 1)]), best(runs[(label, "long", "sql", 1)])
        f["long_history_events"] = long_events
        f["long_history_windows"] = long_windows
        f["long_history_events_per_s"] = long_events / full["steady_s"]
        f["long_history_windows_per_s"] = long_windows / full["steady_s"]
        f["long_history_sql_only_events_per_s"] = long_events / sql["steady_s"]
        f["long_history_jvm_cpu_s"] = full["jvm_cpu_s"]
        f["long_history_python_cpu_s"] = full["python_cpu_s"]
        figures[label] = f
    for shards in args.kinesis_shards:
        for label in labels:
            task = {**common, "kind": "kinesis", "records": args.kinesis_records, "shards": shards}
            read = run_worker(trees[label], task, label)
            print(
                f"code={label} kinesis_shards={shards} records={args.kinesis_records} read={read['read']} "
                f"seconds={read['seconds']:.1f} events_per_s={read['events_per_s']:.0f} load={load_average()}",
                flush=True,
            )
            figures[label][f"kinesis_source_events_per_s_{shards}_shards"] = read["events_per_s"]
            if shards == args.kinesis_shards[0]:
                figures[label]["kinesis_source_events_per_s"] = read["events_per_s"]
    return figures


def formatted(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}" if value < 100 else f"{value:.0f}"
    return str(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--routes", type=int, default=200)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--parallelism", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--long-days", type=int, default=60, help="event time of the long-history shape")
    parser.add_argument("--long-rate", type=float, default=0.01, help="its events per second of event time")
    parser.add_argument("--long-routes", type=int, default=10)
    parser.add_argument("--long-clients", type=int, default=500)
    parser.add_argument("--kinesis-records", type=int, default=20_000)
    parser.add_argument("--kinesis-shards", type=int, nargs="*", default=[1, 4], help="none: skip the Kinesis source")
    parser.add_argument("--kinesis-only", action="store_true", help="measure only the Kinesis source")
    parser.add_argument("--repeat", type=int, default=1, help="alternate the trees N times, keep each figure's best")
    parser.add_argument("--baseline", metavar="REF", help="also measure the code of this git ref (before/after)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(RESULT_PREFIX + json.dumps(worker(json.loads(args.worker))), flush=True)
        return 0

    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="pulse-bench-") as tmp:
        scratch = Path(tmp)
        trees = {"after": ROOT}
        if args.baseline:
            trees["before"] = checkout(args.baseline, scratch / "baseline")
        try:
            if args.kinesis_only:
                args.events, args.long_days, args.repeat = 10, 1, 1
            figures = measure(args, trees, scratch)
        finally:
            if args.baseline:
                remove_checkout(scratch / "baseline")
    after = figures["after"]
    if args.kinesis_only:
        after = {k: v for k, v in after.items() if k.startswith("kinesis")}
    headline = {**after, "load_before": load_before, "load_after": load_average()}
    if "before" in figures:
        before = figures["before"]
        headline["baseline"] = args.baseline
        for key, value in after.items():
            if key in before and isinstance(value, float):
                headline[f"baseline_{key}"] = before[key]
                if key.endswith("_per_s") and before[key]:
                    headline[f"speedup_{key}"] = value / before[key]
    print(" ".join(f"{key}={formatted(value)}" for key, value in headline.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
