"""Throughput of the detection job over generated traffic: full job vs the SQL stages alone.

    python bench/flink_throughput.py [--events 2000000] [--routes 200] [--clients 10000] [--repeat 3]

For parallelism 1 and 2 it runs, in one JVM, (a) the full backtest job (SQL stages + Python
detection) and (b) the same source and SQL stages with the windows going to a discarding
('blackhole') sink. Start-up is measured apart by running each job over a tiny file; steady
throughput is ``events / (total - start-up)``. With ``--repeat N`` the two modes alternate N times
and each keeps its fastest run (a shared machine's noise only ever slows a run down). With the
connector JAR present it also measures how fast Flink's Kinesis source reads an emulated stream
(embedded moto). Prints ``name=value`` lines; the last line holds the headline figures, including
``events_per_s`` (full job, parallelism 1) and ``python_overhead_ratio`` (full / SQL-only steady
time, parallelism 1).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flink_app import job  # noqa: E402
from flink_app.cli import backtest_config  # noqa: E402
from flink_app.config import JobConfig  # noqa: E402
from pulse_local.steady import Spike, steady  # noqa: E402
from pulse_local.traffic import write_jsonl  # noqa: E402

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


def kinesis_read_rate(records: int) -> float | None:
    """Events/s the Kinesis source reads from an emulated stream (SQL stages into a discarding sink)."""
    try:
        job.connector_jar()
    except FileNotFoundError:
        return None
    import json

    from pulse_local.emulator import create_stream, running_emulator

    with running_emulator() as emulator:
        arn = create_stream(emulator, "bench-events", shards=2)
        kinesis = emulator.client("kinesis")
        batch = []
        for item in steady(START_MS, int(records / 1000 * 1000), 1000.0, 200, 10_000):
            batch.append({"Data": json.dumps(item).encode(), "PartitionKey": item["id"]})
            if len(batch) == 500:
                kinesis.put_records(StreamARN=arn, Records=batch)
                batch = []
        if batch:
            kinesis.put_records(StreamARN=arn, Records=batch)
        config = JobConfig.from_property_groups(
            [
                {
                    "PropertyGroupId": "pulse.source",
                    "PropertyMap": {
                        "stream.arn": arn,
                        "aws.endpoint": emulator.endpoint,
                        "init.position": "TRIM_HORIZON",
                    },
                }
            ]
        )
        from pulse_local.emulator import free_port

        rest = f"http://127.0.0.1:{free_port()}"
        pipeline = job.build(
            config,
            bounded=False,
            parallelism=1,
            detect=False,
            flink_conf={"metrics.fetcher.update-interval": "500", "rest.port": rest.rsplit(":", 1)[1]},
        )
        client = job.execute_async(pipeline, "pulse-kinesis-read")
        # Count what the source emitted through its numRecordsOut, via the mini-cluster's REST API.
        raise_if = time.perf_counter() + 300
        first = None
        while time.perf_counter() < raise_if:
            out = _source_records_out(client, rest)
            if out and first is None:
                first = (time.perf_counter(), out)
            if out >= records:
                client.cancel().result()
                assert first is not None
                return (out - first[1]) / max(time.perf_counter() - first[0], 1e-3)
            time.sleep(0.5)
        client.cancel().result()
        return None


def _source_records_out(client: object, base: str) -> int:
    import json
    import urllib.request

    job_id = str(client.get_job_id())  # type: ignore[attr-defined]
    try:
        vertices = json.load(urllib.request.urlopen(f"{base}/jobs/{job_id}", timeout=2))["vertices"]
    except OSError:
        return 0
    source = next(v for v in vertices if v["name"].startswith("Source"))
    return int(source["metrics"]["write-records"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--routes", type=int, default=200)
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--parallelism", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--kinesis-records", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=1, help="alternate the modes N times, keep each one's best")
    args = parser.parse_args()

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

    kinesis = kinesis_read_rate(args.kinesis_records)
    print(
        f"kinesis_source_events_per_s={'n/a (no connector JAR)' if kinesis is None else f'{kinesis:.0f}'}", flush=True
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
        "kinesis_source_events_per_s": "n/a" if kinesis is None else f"{kinesis:.0f}",
    }
    print(" ".join(f"{key}={value}" for key, value in headline.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
