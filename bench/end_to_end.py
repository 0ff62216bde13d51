"""End-to-end detection latency: from the first request of an injected spike to its anomaly readable through the API.

The demo's pipeline (``pulse_local.demo``: emulator, the example API under uvicorn with the buffered
publisher, a two-shard stream, the job through Flink's Kinesis source and DynamoDB sink, anomalies
read with ``GET /monitoring/anomalies`` every second), but with the job's **default** windows and
detectors (60 s route windows sliding by 10 s, a 5 s watermark delay, 1 s Python bundles, 1 s
sink flushes), except that routes are judged after 6 learned windows instead of 30, so that the
benchmark does not spend five minutes warming up. Labelled background traffic (the shop's routes,
40 requests/s at the peak) runs throughout; after two minutes, ``--spikes`` sharp spikes (the
route's rate plus 30 requests/s, i.e. times 10 to 25, for 20 s) start ``--gap`` seconds apart, one at
a time, each on a route of its own. Sharp spikes make the figure the pipeline's latency more than the
detector's sensitivity: a few seconds of such a spike are enough for a 60 s window.

    .venv/bin/python bench/end_to_end.py                 # ~5 minutes
    .venv/bin/python bench/end_to_end.py --spikes 3      # shorter

The last line: ``detection_latency_s`` (median) and ``detection_latency_p90_s``, the target
(``route.slide.s + watermark.delay.s + 5``), per-spike figures above it, and the load average.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from flink_app.config import JobConfig
from pulse_local import demo
from pulse_local.demo_traffic import SHOP_ROUTES, Driver
from pulse_local.emulator import create_anomaly_table, create_stream
from pulse_local.traffic import Injection, TrafficGenerator, TrafficSpec

ROOT = Path(__file__).resolve().parent.parent

SPIKE_ROUTES = (
    "/users/{user_id}/orders",
    "/checkout",
    "/users/{user_id}",
    "/users/{user_id}/orders/{order_id}",
    "/search",
)
WARMUP_S = 120.0  # a full first window (60 s) and 6 learned windows (10 s slides), with margin
SPIKE_S = 20.0
EXTRA_RPS = 30.0  # a spike adds this many requests per second to its route (its rate times 10 to 25)
WAIT_AFTER_S = 60.0  # the last spike's anomaly must come within this after its start


class _Quiet:
    def update(self) -> None:
        pass


def job_groups(stream_arn: str, table: str, endpoint: str, region: str) -> list[dict[str, Any]]:
    groups = [
        {
            "PropertyGroupId": "pulse.source",
            "PropertyMap": {"stream.arn": stream_arn, "init.position": "TRIM_HORIZON", "aws.endpoint": endpoint},
        },
        {
            "PropertyGroupId": "pulse.sink",
            "PropertyMap": {"table.name": table, "aws.endpoint": endpoint, "aws.region": region},
        },
        {  # judged after 6 windows; its steady traffic has no routine bursts to learn first
            "PropertyGroupId": "pulse.detect",
            "PropertyMap": {"route.warmup.windows": "6", "route.burst.warmup.windows": "12"},
        },
        {"PropertyGroupId": "pulse.job", "PropertyMap": {"parallelism": "1"}},  # as the demo: one Python worker
    ]
    JobConfig.from_property_groups(groups).check_runnable()
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spikes", type=int, default=5, choices=range(1, len(SPIKE_ROUTES) + 1))
    parser.add_argument("--gap", type=float, default=25.0, help="seconds between spike starts (one at a time)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rps", type=float, default=40.0)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "bench-end-to-end")
    args = parser.parse_args(argv)
    args.emulator_port = None
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = JobConfig()
    target = config.windows.route_slide_s + config.windows.watermark_delay_s + 5
    with contextlib.ExitStack() as stack:
        demo.preflight(args)
        emulator = demo.start_emulator(args, out, stack)
        stream, table = f"pulse-bench-events-{os.getpid()}", f"pulse-bench-anomalies-{os.getpid()}"
        stream_arn = create_stream(emulator, stream, shards=2)
        create_anomaly_table(emulator, table)
        job = demo.FlinkJob(job_groups(stream_arn, table, emulator.endpoint, emulator.region))
        job.start()
        stack.callback(job.cancel)
        api = demo.start_uvicorn(demo.api_env(emulator, stream, table, out / "fallback.log"), out, stack)
        demo.wait_for_job(job, api, _Quiet(), "uvicorn")
        start_ms = int(time.time() * 1000) + 2000
        duration_s = int(WARMUP_S + (args.spikes - 1) * args.gap + WAIT_AFTER_S)
        spec = TrafficSpec(seed=args.seed, start_ms=start_ms, start_phase=0.55, duration_s=duration_s,
                           peak_rps=args.rps, routes=SHOP_ROUTES)  # fmt: skip
        generator = TrafficGenerator(spec)
        spikes = []
        for i, route in enumerate(SPIKE_ROUTES[: args.spikes]):
            start = start_ms + int((WARMUP_S + i * args.gap) * 1000)
            magnitude = 1 + EXTRA_RPS * 60 / generator.expected_per_minute(route, start)
            spikes.append(Injection("spike", route, start, start + int(SPIKE_S * 1000), round(magnitude, 1), (route,)))
        events = list(generator.events(spikes))
        first_request = {
            spike.subject: min(e["ts"] for e in events if e["route"] == spike.subject and e["ts"] >= spike.start_ms)
            for spike in spikes
        }
        reader = demo.AnomalyReader(api, start_ms - 60_000)
        stack.callback(reader.close)
        driver = Driver(api.base_url, events, seed=args.seed).start()
        stack.callback(driver.close)
        print(f"bench: traffic for up to {duration_s} s, {args.spikes} spikes from +{WARMUP_S:.0f} s", flush=True)
        seen: dict[str, float] = {}
        false_spikes: set[str] = set()
        while time.time() * 1000 < start_ms + duration_s * 1000 and len(seen) < len(spikes):
            time.sleep(1.0)
            if job.error is not None or driver.error is not None:
                raise SystemExit(f"bench: failed: {job.error or driver.error}")
            reader.poll()
            if int(time.time()) % 15 == 0:
                lag = job.source_lag_ms()
                evaluated = job.metric("windowsEvaluated")
                print(
                    f"bench: +{time.time() - start_ms / 1000:.0f} s requests={driver.stats.sent} "
                    f"behind_schedule_s={driver.stats.behind_s:.1f} source_lag_ms={lag} "
                    f"windows_evaluated={evaluated} spikes_seen={len(seen)}",
                    flush=True,
                )
            for key, anomaly in reader.records.items():
                if anomaly.kind != "spike" or anomaly.phase == "end":
                    continue
                spike = next((s for s in spikes if s.subject == anomaly.subject), None)
                if spike is not None and anomaly.window_end >= spike.start_ms:
                    seen.setdefault(spike.subject, reader.first_read[key])
                elif spike is None or anomaly.window_end < spike.start_ms:
                    false_spikes.add(anomaly.subject)
    latencies = []
    for spike in spikes:
        at = seen.get(spike.subject)
        latency = None if at is None else at - first_request[spike.subject] / 1000
        if latency is not None:
            latencies.append(latency)
        shown = "missed" if latency is None else f"{latency:.1f} s"
        print(f"bench: spike on {spike.subject} at +{(spike.start_ms - start_ms) / 1000:.0f} s: {shown}")
    ordered = sorted(latencies)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)] if ordered else float("nan")
    median = statistics.median(latencies) if latencies else float("nan")
    load = os.getloadavg()  # what else ran on this machine moves every figure
    print(
        f"spikes={len(spikes)} found={len(latencies)} detection_latency_s={median:.1f} "
        f"detection_latency_p90_s={p90:.1f} "
        f"target_s={target} route_slide_s={config.windows.route_slide_s} "
        f"watermark_delay_s={config.windows.watermark_delay_s} other_spike_alarms={len(false_spikes)} "
        f"load_avg_1m={load[0]:.1f}"
    )
    return 0 if len(latencies) == len(spikes) else 1


if __name__ == "__main__":
    sys.exit(main())
