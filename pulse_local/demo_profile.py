"""The demo's time scale: Pulse's default windows and detectors, five times faster, for a few minutes of traffic.

With the defaults a route is judged after 30 windows of 10 s (five minutes) and an anomaly lasts
minutes; a demo has three. So the demo runs the job with every duration divided by
:data:`TIME_SCALE` (60 s windows sliding by 10 s become 12 s sliding by 2 s, half-lives,
cool-downs and pauses likewise) and every per-window count floor scaled to what a window then
holds at the demo's request rate. Statistical settings (z-scores, ratios, fractions, the silence
probability) stay as they are. The property groups are rendered from the job's own defaults
(``JobConfig``, ``DetectSettings``), so a changed default moves the demo with it.
"""

from __future__ import annotations

from typing import Any

from flink_app.config import JobConfig, WindowConfig
from flink_app.detect.settings import DetectSettings

TIME_SCALE = 5
DEFAULT_PEAK_RPS = 25.0  # the traffic the detector defaults were tuned on (pulse_local/traffic.py)
ROUTE_WARMUP_WINDOWS = 20  # 40 s of 2 s slides: the demo's baselines learn from its first minute
CHECKPOINT_INTERVAL_S = 10
BUNDLE_TIME_MS = 200  # windows cross into Python within this (latency), instead of 1 s
DETECT_DURATIONS = (
    "route.halflife.s",
    "learn.pause.s",
    "relearn.s",
    "client.halflife.s",
    "alert.cooldown.s",
    "latency.pool.s",
)
DETECT_COUNT_FLOORS = ("spike.min.count", "drop.min.expected", "burst.min.count", "scan.min.count", "auth.min.count")


def count_scale(peak_rps: float) -> float:
    """How many requests a demo window holds for one of a default window at the default rate."""
    return peak_rps / DEFAULT_PEAK_RPS / TIME_SCALE


def windows_group() -> dict[str, str]:
    defaults = WindowConfig()
    return {
        "route.size.s": str(defaults.route_size_s // TIME_SCALE),
        "route.slide.s": str(defaults.route_slide_s // TIME_SCALE),
        "client.size.s": str(defaults.client_size_s // TIME_SCALE),
    }  # the watermark delay and idle timeout are how late events arrive: physical, not scaled


def detect_group(peak_rps: float) -> dict[str, str]:
    defaults = DetectSettings().model_dump(by_alias=True)
    scale = count_scale(peak_rps)
    # The demo's traffic has no routine bursts, and its first injection comes right after the warm-up:
    # a route's bursts are taken as known once it is judged (no hold for a young route's bursts).
    values: dict[str, Any] = {
        "route.warmup.windows": ROUTE_WARMUP_WINDOWS,
        "route.burst.warmup.windows": ROUTE_WARMUP_WINDOWS,
    }
    values |= {key: round(float(defaults[key]) / TIME_SCALE, 3) for key in DETECT_DURATIONS}
    values |= {key: round(max(float(defaults[key]) * scale, 1.0), 2) for key in DETECT_COUNT_FLOORS}
    return {key: str(value) for key, value in values.items()}


def property_groups(
    stream_arn: str, table: str, endpoint: str | None, region: str, peak_rps: float, replay_after_s: float = 0
) -> list[dict[str, Any]]:
    """Managed Flink property groups for the demo's job: Kinesis in, DynamoDB out, the scaled settings.

    ``replay_after_s``: events may come back that long after their time (an outage, then a replay of
    the fallback log); the watermark then waits that long plus 20 s, or they would be late and dropped.
    """
    aws = {"aws.endpoint": endpoint} if endpoint else {}
    windows = windows_group()
    if replay_after_s:
        windows["watermark.delay.s"] = str(int(max(WindowConfig().watermark_delay_s, replay_after_s + 20)))
    groups = [
        {
            "PropertyGroupId": "pulse.source",
            "PropertyMap": {"stream.arn": stream_arn, "init.position": "TRIM_HORIZON", "aws.region": region, **aws},
        },
        {"PropertyGroupId": "pulse.sink", "PropertyMap": {"table.name": table, "aws.region": region, **aws}},
        {"PropertyGroupId": "pulse.windows", "PropertyMap": windows},
        {
            "PropertyGroupId": "pulse.job",
            "PropertyMap": {
                "checkpoint.interval.s": str(CHECKPOINT_INTERVAL_S),
                "python.bundle.time.ms": str(BUNDLE_TIME_MS),
                "parallelism": "1",
            },
        },
        {"PropertyGroupId": "pulse.detect", "PropertyMap": detect_group(peak_rps)},
    ]
    JobConfig.from_property_groups(groups).check_runnable()  # fails here, naming the key, if anything is off
    return groups


def tolerance_s() -> float:
    """How long after an injection ends an anomaly still counts as finding it (evaluation's 120 s, scaled)."""
    return 120 / TIME_SCALE
