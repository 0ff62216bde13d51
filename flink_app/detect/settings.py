"""Detector thresholds: the ``pulse.detect`` property group, one typed object.

Every key is documented in ``docs/detection.md`` (what it does, how to tune it). Counts are per
window: route windows are ``pulse.windows`` ``route.size.s`` long (60 s by default), client windows
``client.size.s`` long (60 s).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Time settings that must cover a few windows to mean anything: the effective value is the larger of
# the setting and this many windows (route windows for route settings, client windows for clients),
# so a 30-minute window works without rescaling each of them (docs/detection.md, "Window size").
WINDOW_FLOORS: dict[str, float] = {
    "route_halflife_s": 10,
    "learn_pause_s": 3,
    "relearn_s": 30,
    "alert_cooldown_s": 2,
    "client_halflife_s": 30,
    "route_dispersion_halflife_s": 200,
    "route_burst_halflife_s": 500,
    "latency_pool_s": 3,
}


class DetectSettings(BaseModel):
    """Every detector threshold, with a default that works on realistic traffic.

    Property keys are the aliases (dotted, as in Managed Flink property groups).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    # --- route baselines -------------------------------------------------------------------------
    route_warmup_windows: int = Field(30, ge=1, alias="route.warmup.windows")
    route_burst_warmup_windows: int = Field(60, ge=0, alias="route.burst.warmup.windows")
    route_halflife_s: float = Field(600.0, gt=0, alias="route.halflife.s")
    route_clip_z: float = Field(2.5, gt=0, alias="route.clip.z")
    route_noise_rel: float = Field(0.05, ge=0, alias="route.noise.rel")
    route_false_alarms_per_day: float = Field(0.02, gt=0, alias="route.false.alarms.per.day")
    route_dispersion_halflife_s: float = Field(21600.0, gt=0, alias="route.dispersion.halflife.s")
    route_burst_cap: float = Field(1.5, gt=0, alias="route.burst.cap")
    route_burst_margin: float = Field(1.3, ge=1, alias="route.burst.margin")
    route_burst_halflife_s: float = Field(86400.0, gt=0, alias="route.burst.halflife.s")
    season_min_days: int = Field(2, ge=1, alias="season.min.days")
    season_min_weeks: int = Field(1, ge=1, alias="season.min.weeks")
    season_halflife_days: float = Field(7.0, gt=0, alias="season.halflife.days")
    route_detect_unmatched: bool = Field(False, alias="route.detect.unmatched")
    learn_pause_s: float = Field(180.0, ge=0, alias="learn.pause.s")
    relearn_s: float = Field(1800.0, gt=0, alias="relearn.s")

    # --- spike / drop / silence on the request count ---------------------------------------------
    spike_min_count: float = Field(10.0, ge=0, alias="spike.min.count")
    spike_ratio: float = Field(2.5, gt=1, alias="spike.ratio")
    route_hold_score: float = Field(1.6, ge=0, alias="route.hold.score")
    route_shift_score: float = Field(0.65, gt=0, alias="route.shift.score")
    route_settle_score: float = Field(0.25, ge=0, alias="route.settle.score")
    drop_min_expected: float = Field(20.0, ge=0, alias="drop.min.expected")
    drop_ratio: float = Field(0.4, gt=0, lt=1, alias="drop.ratio")
    silence_min_expected: float = Field(20.0, gt=0, alias="silence.min.expected")
    silence_after_s: float = Field(0.0, ge=0, alias="silence.after.s")

    # --- error_surge on the 5xx rate ---------------------------------------------------------------
    error_min_count: int = Field(5, ge=1, alias="error.min.count")
    error_min_rate: float = Field(0.05, gt=0, lt=1, alias="error.min.rate")
    error_ratio: float = Field(3.0, gt=1, alias="error.ratio")
    error_rate_floor: float = Field(0.002, gt=0, lt=1, alias="error.rate.floor")

    # --- latency_surge on the typical latency (geometric mean without the slowest request) ------
    latency_min_count: int = Field(10, ge=2, alias="latency.min.count")
    latency_ratio: float = Field(2.0, gt=1, alias="latency.ratio")
    latency_z: float = Field(5.0, gt=0, alias="latency.z")
    latency_noise_rel: float = Field(0.05, ge=0, alias="latency.noise.rel")
    latency_pool_s: float = Field(300.0, ge=0, alias="latency.pool.s")

    # --- clients -----------------------------------------------------------------------------------
    client_warmup_windows: int = Field(3, ge=1, alias="client.warmup.windows")
    client_halflife_s: float = Field(1800.0, gt=0, alias="client.halflife.s")
    client_pop_min_clients: int = Field(10, ge=2, alias="client.pop.min.clients")
    burst_min_count: float = Field(240.0, ge=1, alias="burst.min.count")
    burst_pop_ratio: float = Field(10.0, gt=1, alias="burst.pop.ratio")
    burst_pop_z: float = Field(6.0, gt=0, alias="burst.pop.z")
    burst_own_ratio: float = Field(4.0, gt=1, alias="burst.own.ratio")
    scan_min_count: float = Field(20.0, ge=1, alias="scan.min.count")
    scan_min_fraction: float = Field(0.5, gt=0, le=1, alias="scan.min.fraction")
    scan_pop_ratio: float = Field(5.0, gt=0, alias="scan.pop.ratio")
    scan_own_ratio: float = Field(4.0, gt=1, alias="scan.own.ratio")
    auth_min_count: float = Field(10.0, ge=1, alias="auth.min.count")
    auth_min_fraction: float = Field(0.5, gt=0, le=1, alias="auth.min.fraction")
    auth_pop_ratio: float = Field(3.0, gt=0, alias="auth.pop.ratio")
    auth_own_ratio: float = Field(4.0, gt=1, alias="auth.own.ratio")

    # --- alert state and records -----------------------------------------------------------------
    alert_clear_score: float = Field(0.5, ge=0, lt=1, alias="alert.clear.score")
    alert_cooldown_s: float = Field(120.0, gt=0, alias="alert.cooldown.s")
    severity_medium_score: float = Field(2.0, gt=1, alias="severity.medium.score")
    severity_high_score: float = Field(4.0, gt=1, alias="severity.high.score")
    anomaly_ttl_days: int = Field(30, ge=1, alias="anomaly.ttl.days")

    def at_least_windows(self, name: str, window_ms: int) -> float:
        """Setting ``name`` (a ``*_s`` field) in ms, raised to :data:`WINDOW_FLOORS` windows of ``window_ms``."""
        return max(float(getattr(self, name)) * 1000, WINDOW_FLOORS[name] * window_ms)

    def window_p(self, window_ms: int) -> float:
        """The chance a count or error threshold may be crossed in one window by normal traffic.

        ``route.false.alarms.per.day`` spread over the day's non-overlapping windows: sliding windows
        overlap, but one chance excursion is one incident however many windows see it.
        """
        return min(self.route_false_alarms_per_day * max(window_ms, 1000) / 86_400_000, 0.01)

    @model_validator(mode="after")
    def _ordered(self) -> DetectSettings:
        if self.severity_high_score <= self.severity_medium_score:
            raise ValueError("severity.high.score must be above severity.medium.score")
        if self.route_settle_score > self.alert_clear_score:
            raise ValueError("route.settle.score must be at most alert.clear.score")
        return self
