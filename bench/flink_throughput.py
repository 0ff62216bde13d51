"""Throughput of the detection job over generated traffic: full job vs the SQL stages alone.

    python bench/flink_throughput.py [--events 2000000] [--routes 200] [--clients 10000] [--repeat 3]

For parallelism 1 and 2 it runs, in one JVM, (a) the full backtest job (SQL stages + Python
detection) and (b) the same source and SQL stages with the windows going to a discarding
('blackhole') sink. Start-up is measured apart by running each job over a tiny file; steady
throughput is ``events / (total - start-up)``. With ``--repeat N`` the two modes alternate N times
and each keeps its fastest run (a shared machine's noise only ever slows a run down). First it runs
the full streaming job over an emulated stream (embedded moto) of 1 and 4 shards, read through
Flink's Kinesis source (the connector JAR is needed): ``kinesis_source_events_per_s``. Prints
``name=value`` lines; the last line holds the headline figures, including ``events_per_s`` (full
job, parallelism 1) and ``python_overhead_ratio`` (full / SQL-only steady time, parallelism 1).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flink_app import job
from flink_app.cli import backtest_config
from flink_app.config import JobConfig
from pulse_local.steady import Spike, steady
from pulse_local.traffic import write_jsonl

ROOT = Path(__file__).resolve().parent.parent

START_MS = 1_767_225_600_000


def generate(path: Path, events: int, routes: int, clients: int) -> int:
    rate = 2000.0
    duration_ms = int(events / rate * 1000)
    spike = Spike("/api/r7/{item_id}", START_MS + duration_ms // 2, 10_000, max(events // 100, 1))
    return write_jsonl(steady(START_MS, duration_ms, rate, routes, clients, spikes=(spike,)), path)


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--routes", type=int, default=200)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--parallelism", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--kinesis-records", type=int, default=20_000)
    parser.add_argument("--kinesis-shards", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--kinesis-only", action="store_true", help="measure only the Kinesis source")
    parser.add_argument("--repeat", type=int, default=1, help="alternate the modes N times, keep each one's best")
    args = parser.parse_args()

    kinesis = {shards: kinesis_read_rate(args.kinesis_records, shards) for shards in args.kinesis_shards}
    for read in kinesis.values():
        print(
            f"kinesis_shards={read.shards} records={read.records} read={read.read} seconds={read.seconds:.1f} "
            f"events_per_s={read.events_per_s:.0f}",
            flush=True,
        )
    kinesis_figures = {f"kinesis_source_events_per_s_{s}_shards": f"{r.events_per_s:.0f}" for s, r in kinesis.items()}
    kinesis_figures["kinesis_source_events_per_s"] = kinesis_figures[
        f"kinesis_source_events_per_s_{args.kinesis_shards[0]}_shards"
    ]
    if args.kinesis_only:
        print(" ".join(f"{key}={value}" for key, value in kinesis_figures.items()))
        return 0

    with tempfile.TemporaryDirectory() as scratch:
        big, tiny = Path(scratch) / "events.jsonl", Path(scratch) / "tiny.jsonl"
        started = time.perf_counter()
        events = generate(big, args.events, args.routes, args.clients)
        print(f"generated_events={events} generate_s={time.perf_counter() - started:.1f}", flush=True)
        write_jsonl(steady(START_MS, 2_000, 50.0, 5, 5), tiny)
        base = JobConfig()
        big_config = backtest_config(base, big, Path(scratch) / "out.jsonl")
        tiny_config = backtest_config(base, tiny, Path(scratch) / "tiny-out.jsonl")
        timed_run(tiny_config, 1, detect=True)  # JVM and Python workers warm-up, not measured

        figures: dict[str, float] = {}
        for parallelism in args.parallelism:
            for _ in range(args.repeat):
                for mode, detect in (("full", True), ("sql", False)):
                    startup, _ = timed_run(tiny_config, parallelism, detect)
                    total, anomalies = timed_run(big_config, parallelism, detect)
                    steady_s = max(total - startup, 1e-3)
                    print(
                        f"mode={mode} parallelism={parallelism} startup_s={startup:.1f} total_s={total:.1f} "
                        f"steady_s={steady_s:.1f} events_per_s={events / steady_s:.0f}"
                        + (f" anomalies={anomalies}" if detect else ""),
                        flush=True,
                    )
                    key = f"{mode}_p{parallelism}"
                    if steady_s < figures.get(f"{key}_steady_s", float("inf")):
                        figures[f"{key}_startup_s"] = startup
                        figures[f"{key}_total_s"] = total
                        figures[f"{key}_steady_s"] = steady_s
                        figures[f"{key}_events_per_s"] = events / steady_s
            figures[f"python_overhead_ratio_p{parallelism}"] = (
                figures[f"full_p{parallelism}_steady_s"] / figures[f"sql_p{parallelism}_steady_s"]
            )
            print(
                f"parallelism={parallelism} python_overhead_ratio="
                f"{figures[f'python_overhead_ratio_p{parallelism}']:.2f}",
                flush=True,
            )

    p = args.parallelism[0]
    headline = {
        "events": events,
        "events_per_s": f"{figures[f'full_p{p}_events_per_s']:.0f}",
        "sql_only_events_per_s": f"{figures[f'sql_p{p}_events_per_s']:.0f}",
        "python_overhead_ratio": f"{figures[f'python_overhead_ratio_p{p}']:.2f}",
        "startup_s": f"{figures[f'full_p{p}_startup_s']:.1f}",
        **{f"events_per_s_p{q}": f"{figures[f'full_p{q}_events_per_s']:.0f}" for q in args.parallelism[1:]},
        **{
            f"python_overhead_ratio_p{q}": f"{figures[f'python_overhead_ratio_p{q}']:.2f}" for q in args.parallelism[1:]
        },
        **kinesis_figures,
    }
    print(" ".join(f"{key}={value}" for key, value in headline.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
