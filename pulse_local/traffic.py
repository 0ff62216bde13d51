"""Labelled request traffic: realistic schema-v1 events with injected anomalies and their labels.

Background traffic: many routes with path parameters, each with its own share, latency profile and
error/404/401 rates; a daily rhythm (night trough, afternoon peak) whose day can be compressed
(``day_s``); slow random drifts per route and for the whole site; Poisson arrivals; a long tail of
clients (Zipf-Mandelbrot: a few busy integrations, thousands of one-off visitors); health checks
from two monitors; the odd typo and ``favicon.ico`` that matches no route; rare multi-second
requests.

Regimes beyond that gentle shape (all off by default, each a :class:`TrafficSpec` field): over-dispersed
traffic (``dispersion``: every route's rate is multiplied per minute by a gamma factor of mean 1), routine
short bursts (``bursts_per_hour``: a heavy-tailed 1.5-3.5x for 20-90 s now and then, per route), a weekly
cycle (``weekend``: Saturday and Sunday carry that share of a weekday), a slow trend (``trend_per_day``),
and low volume or coarse steps simply by ``peak_rps`` and ``duration_s`` (weeks are fine at a few
requests per second). ``plan(shift=True)`` places lasting level shifts instead of short injections.

Injections (:class:`Injection`, one per label) change that traffic for a while: ``spike`` adds
requests to a route, ``drop`` removes most, ``silence`` all of them; ``error_surge`` turns a share of
a route's requests into 5xx, ``latency_surge`` slows them; ``ip_burst``, ``ip_scan`` and
``ip_auth_failures`` add one client's scraping, path scanning or credential stuffing. The background
(arrival times, routes, clients, statuses, latencies) is drawn from its own random stream, so a run
with and without injections differs only by them.
Everything is deterministic per seed.

    generator = TrafficGenerator(TrafficSpec(seed=7, duration_s=3 * 3600, day_s=3 * 3600))
    injections = generator.plan()
    for event in generator.events(injections): ...
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from pulse_contract import CLIENT_KINDS, KINDS, UNMATCHED_ROUTE

SCHEMA_VERSION = 1
SLOW_OUTLIER_P = 0.002  # share of requests that take seconds (cold starts, slow downstreams)


@dataclass(frozen=True, slots=True)
class RouteProfile:
    """One route template and how its traffic looks at the daily peak."""

    method: str
    template: str
    share: float  # of the site's requests at the peak
    latency_ms: float  # median
    latency_sigma: float = 0.45  # of log latency
    p_not_found: float = 0.0
    p_auth: float = 0.0  # 401/403
    p_error: float = 0.002  # 5xx
    bytes_out: int = 1500
    rhythm: bool = True  # follows the daily rhythm; machine traffic (health checks) does not


ROUTES: tuple[RouteProfile, ...] = (
    RouteProfile("GET", "/items", 0.14, 45, bytes_out=9000),
    RouteProfile("GET", "/items/{item_id}", 0.22, 25, p_not_found=0.03, bytes_out=2200),
    RouteProfile("GET", "/search", 0.10, 120, 0.6, bytes_out=12000),
    RouteProfile("GET", "/categories/{slug}/items", 0.06, 60, p_not_found=0.01, bytes_out=8000),
    RouteProfile("GET", "/users/{user_id}", 0.06, 30, p_not_found=0.005, p_auth=0.02, bytes_out=900),
    RouteProfile("GET", "/users/{user_id}/orders", 0.05, 70, p_auth=0.02, bytes_out=4000),
    RouteProfile("POST", "/users/{user_id}/orders", 0.02, 180, 0.5, p_auth=0.02, p_error=0.004, bytes_out=700),
    RouteProfile("GET", "/orders/{order_id}", 0.04, 35, p_not_found=0.02, p_auth=0.01, bytes_out=1600),
    RouteProfile("GET", "/cart", 0.06, 20, p_auth=0.01, bytes_out=1100),
    RouteProfile("POST", "/cart/items", 0.04, 40, p_auth=0.01, bytes_out=300),
    RouteProfile("DELETE", "/cart/items/{item_id}", 0.01, 30, p_not_found=0.02, bytes_out=0),
    RouteProfile("POST", "/checkout", 0.015, 350, 0.5, p_error=0.005, bytes_out=800),
    RouteProfile("POST", "/auth/login", 0.03, 90, 0.35, p_auth=0.06, bytes_out=500),
    RouteProfile("POST", "/auth/refresh", 0.04, 15, p_auth=0.03, bytes_out=450),
    RouteProfile("GET", "/recommendations", 0.05, 150, 0.55, p_error=0.003, bytes_out=5000),
    RouteProfile("PUT", "/users/{user_id}", 0.004, 60, p_auth=0.02, bytes_out=900),
    RouteProfile("GET", "/admin/reports", 0.001, 900, 0.6, p_auth=0.05, bytes_out=40000),
    RouteProfile("GET", "/health", 0.0, 3, 0.3, p_error=0.0, bytes_out=15, rhythm=False),
    RouteProfile("GET", UNMATCHED_ROUTE, 0.004, 4, 0.3, p_error=0.0, bytes_out=120),
)
HEALTH_PER_MONITOR_RPS = 0.25  # each of two monitors checks /health every four seconds
MONITORS = ("10.0.3.17", "10.0.7.42")

USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Mobile Safari/537.36",
    "okhttp/4.12.0",
    "python-requests/2.31.0",
    "Go-http-client/2.0",
    "PulseShop-iOS/3.8.1 CFNetwork/1494.0.7 Darwin/23.4.0",
    "PulseShop-Android/3.8.0 (Linux; Android 13)",
)
MONITOR_AGENT = "ELB-HealthChecker/2.0"
CATEGORIES = ("shoes", "books", "garden", "kitchen", "toys", "outdoor", "audio", "camera", "office", "beauty")
JUNK_PATHS = (
    "/favicon.ico",
    "/robots.txt",
    "/apple-touch-icon.png",
    "/itmes",
    "/item/{n}",
    "/api/items",
    "/users/{n}/order",
    "/sitemap.xml",
    "/search/",
    "/cart/item",
)
SCAN_PATHS = (
    "/.env",
    "/wp-login.php",
    "/wp-admin/setup-config.php",
    "/.git/config",
    "/phpmyadmin/index.php",
    "/admin.php",
    "/server-status",
    "/backup.zip",
    "/config.json",
    "/api/v1/debug",
    "/.aws/credentials",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    "/actuator/env",
    "/cgi-bin/luci",
    "/.DS_Store",
    "/{w}.php",
    "/{w}/{w}.bak",
    "/old/{w}",
    "/{w}.sql",
)
SCAN_WORDS = ("db", "dump", "admin", "test", "shell", "info", "upload", "site", "prod", "old", "tmp", "data")
SCANNER_AGENTS = (
    "Mozilla/5.0 zgrab/0.x",
    "python-requests/2.28.1",
    "Mozilla/5.0 (compatible; Nmap Scripting Engine)",
    "curl/7.68.0",
)
PUBLIC_FIRST_OCTETS = (
    23,
    31,
    37,
    45,
    51,
    62,
    77,
    81,
    86,
    91,
    95,
    104,
    109,
    141,
    151,
    176,
    178,
    185,
    188,
    193,
    203,
    212,
    213,
    217,
)

# What each kind of injection does, and the range of its magnitude (drawn per injection):
MAGNITUDES: dict[str, tuple[float, float]] = {
    "spike": (3.0, 6.0),  # request rate multiplied by
    "drop": (0.05, 0.2),  # share of requests that remain
    "silence": (0.0, 0.0),
    "error_surge": (0.15, 0.4),  # share of requests that fail with 5xx
    "latency_surge": (3.0, 6.0),  # latency multiplied by
    "ip_burst": (400.0, 1000.0),  # the client's requests per minute
    "ip_scan": (60.0, 200.0),  # probes per minute
    "ip_auth_failures": (60.0, 200.0),  # login attempts per minute
}
DURATIONS_S: dict[str, tuple[int, int]] = {kind: (240, 480) for kind in KINDS} | {"silence": (180, 360)}
# A route kind is injected only where the route carries enough traffic for it to be an anomaly at all
# (requests per minute expected at that time of day); quieter routes are not eligible.
MIN_ROUTE_RATE: dict[str, float] = {"spike": 20, "drop": 80, "silence": 45, "error_surge": 30, "latency_surge": 20}


@dataclass(frozen=True, slots=True)
class TrafficSpec:
    """The background traffic: how much, how long, and what rhythm."""

    seed: int = 1
    start_ms: int = 1_741_000_000_000 - 1_741_000_000_000 % 86_400_000  # a midnight UTC (2025-03-03)
    start_phase: float = 0.25  # time of day at start, as a fraction of a day (0.25: 06:00)
    duration_s: int = 3 * 3600
    peak_rps: float = 25.0  # the whole site's requests per second at the daily peak
    day_s: float = 86_400.0  # length of one simulated day; shorter compresses the rhythm
    trough: float = 0.3  # night traffic as a fraction of the peak
    clients: int = 2500
    client_skew: float = 1.1  # Zipf-Mandelbrot exponent of the clients' shares
    drift: float = 0.1  # standard deviation of each route's slow log-drift
    site_drift: float = 0.05  # standard deviation of the whole site's slow log-drift
    routes: tuple[RouteProfile, ...] = ROUTES
    dispersion: float = 0.0  # variance of a per-route, per-minute gamma factor on the rate (over-dispersion)
    bursts_per_hour: float = 0.0  # routine short bursts per route and hour (heavy-tailed 1.5-3.5x, 20-90 s)
    weekend: float = 1.0  # Saturday's and Sunday's traffic as a share of a weekday's
    trend_per_day: float = 0.0  # slow growth (or decline, if negative) of the whole site, log per day


@dataclass(frozen=True, slots=True)
class Injection:
    """One labelled anomaly: what, on which subject, when (epoch ms, end exclusive), how strong."""

    kind: str
    subject: str
    start_ms: int
    end_ms: int
    magnitude: float
    routes: tuple[str, ...] = ()  # routes whose traffic it changes (a client's requests touch several)

    @property
    def subject_type(self) -> str:
        return "client" if self.kind in CLIENT_KINDS else "route"

    def to_label(self) -> dict[str, Any]:
        return {**asdict(self), "routes": list(self.routes), "subject_type": self.subject_type}

    @classmethod
    def from_label(cls, label: dict[str, Any]) -> Injection:
        return cls(
            label["kind"],
            label["subject"],
            int(label["start_ms"]),
            int(label["end_ms"]),
            float(label["magnitude"]),
            tuple(label.get("routes", ())),
        )


@dataclass
class _Batch:
    """Columns of events for one route and one chunk of time (numpy arrays, one row per event)."""

    route: int
    ts: np.ndarray
    client: np.ndarray  # index into the client table, or -1 for the injection's client
    status: np.ndarray
    latency: np.ndarray
    ids: np.ndarray  # 16 random bytes per event (rows of uint8)
    injected_ip: str | None = None
    injected_agent: str | None = None
    paths: list[str] | None = None


@dataclass
class TrafficGenerator:
    """Background traffic of a :class:`TrafficSpec`, with injections planned and applied on it."""

    spec: TrafficSpec = field(default_factory=TrafficSpec)

    def __post_init__(self) -> None:
        spec = self.spec
        setup = np.random.default_rng([spec.seed, 0])
        n = spec.clients
        weights = 1.0 / (np.arange(1, n + 1) + 5.0) ** spec.client_skew
        self.client_weights = weights / weights.sum()
        self.client_cdf = np.cumsum(self.client_weights)
        self.client_ips = [_random_ip(setup) for _ in range(n)]
        self.client_agents = [USER_AGENTS[int(i)] for i in setup.integers(0, len(USER_AGENTS), n)]
        # A template's main route: the first of its methods (GET /users/{user_id}, not PUT), which
        # scanners probe and whose rate decides where an injection goes.
        self.route_index: dict[str, int] = {}
        for i, route in enumerate(spec.routes):
            self.route_index.setdefault(route.template, i)
        steps = spec.duration_s // 10 + 2
        # Slow log-drifts (AR(1) per 10 s, correlation time ~8 min), per route and for the site.
        drifts = np.zeros((len(spec.routes) + 1, steps))
        phi = 0.98
        shocks = np.asarray(setup.normal(0.0, 1.0, drifts.shape)) * math.sqrt(1 - phi * phi)
        drifts[:, 0] = setup.normal(0.0, 1.0, len(spec.routes) + 1)
        for step in range(1, steps):
            drifts[:, step] = phi * drifts[:, step - 1] + shocks[:, step]
        scale = np.full((len(spec.routes) + 1, 1), spec.drift)
        scale[len(spec.routes)] = spec.site_drift
        self._drift = np.exp(drifts * scale - scale**2 / 2)
        self._add_burstiness(np.random.default_rng([spec.seed, 4]), steps)

    def _add_burstiness(self, rng: np.random.Generator, steps: int) -> None:
        """Over-dispersion (gamma factor per minute) and routine bursts, per route, on the 10-s drift grid.

        Drawn from their own stream, so a spec without them has exactly the traffic it had before.
        """
        spec, routes = self.spec, len(self.spec.routes)
        if spec.dispersion > 0:
            minutes = steps // 6 + 1
            shape = 1.0 / spec.dispersion
            gamma = rng.gamma(shape, 1.0 / shape, (routes, minutes))
            self._drift[:routes] *= np.repeat(gamma, 6, axis=1)[:, :steps]
        if spec.bursts_per_hour > 0:
            for index, route in enumerate(spec.routes):
                if not route.rhythm:
                    continue
                n = int(rng.poisson(spec.bursts_per_hour * steps / 360))
                for start, length, factor in zip(
                    rng.integers(0, steps, n), rng.integers(2, 10, n), 1.5 + 2.0 * rng.random(n) ** 2, strict=True
                ):
                    self._drift[index, start : start + length] *= factor

    # --- the background's expected rates --------------------------------------------------------------

    def rhythm(self, seconds: np.ndarray) -> np.ndarray:
        """The daily rhythm at ``seconds`` after start, from ``trough`` (04:00) to 1 (afternoon)."""
        phase = (self.spec.start_phase + seconds / self.spec.day_s) % 1.0
        shape = 0.5 * (1 - np.cos(2 * np.pi * (phase - 4 / 24)))
        shape = np.clip(shape + 0.12 * np.sin(4 * np.pi * (phase - 4 / 24)) * shape, 0, None)
        return np.asarray(self.spec.trough + (1 - self.spec.trough) * shape / 1.06)

    def weekly(self, seconds: np.ndarray) -> np.ndarray:
        """The weekly cycle and the trend at ``seconds`` after start (1 on weekdays without a trend)."""
        spec = self.spec
        out = np.exp(spec.trend_per_day * seconds / 86_400.0)
        if spec.weekend != 1.0:
            day = ((spec.start_ms / 1000 + seconds) // 86_400 + 3) % 7  # 0 = Monday (the epoch was a Thursday)
            out = out * np.where(day >= 5, spec.weekend, 1.0)
        return np.asarray(out)

    def _base_rate(self, route: RouteProfile, seconds: np.ndarray) -> np.ndarray:
        """Requests per second expected on ``route`` at ``seconds`` after start (without drift)."""
        if not route.rhythm:
            return np.full(len(seconds), HEALTH_PER_MONITOR_RPS * len(MONITORS) if route.template == "/health" else 0.0)
        return self.spec.peak_rps * route.share * self.rhythm(seconds) * self.weekly(seconds)

    def expected_per_minute(self, template: str, at_ms: int) -> float:
        """A route's expected requests per minute at ``at_ms`` (daily rhythm, without drift)."""
        route = self.spec.routes[self.route_index[template]]
        return float(self._base_rate(route, np.array([(at_ms - self.spec.start_ms) / 1000]))[0] * 60)

    # --- injections -------------------------------------------------------------------------------------

    def plan(
        self,
        kinds: Sequence[str] = KINDS,
        per_kind: int = 2,
        warmup_s: int = 1200,
        tail_s: int = 600,
        *,
        magnitudes: dict[str, tuple[float, float]] | None = None,
        duration_scale: float = 1.0,
        shift: bool = False,
    ) -> list[Injection]:
        """Place ``per_kind`` injections of every kind, one after another with quiet gaps between them.

        ``magnitudes`` overrides :data:`MAGNITUDES` per kind; ``duration_scale`` stretches
        :data:`DURATIONS_S` (coarse windows need longer anomalies). ``shift=True``: every injection
        (``spike`` or ``drop`` only) is a lasting level shift, from its start to the end of the traffic,
        each on another route.
        """
        rng = np.random.default_rng([self.spec.seed, 1])
        order = [kind for kind in kinds for _ in range(per_kind)]
        rng.shuffle(order)
        span = self.spec.duration_s - warmup_s - tail_s
        slot = span / max(len(order), 1)
        if slot < 360 * duration_scale:
            raise ValueError(f"{len(order)} injections need at least {len(order) * 360 + warmup_s + tail_s} s")
        if shift and not set(order) <= {"spike", "drop"}:
            raise ValueError("level shifts are spikes (up) or drops (down)")
        injections: list[Injection] = []
        used_ips: set[str] = set()
        used_routes: set[str] = set()
        last_route: str | None = None
        for i, kind in enumerate(order):
            low, high = DURATIONS_S[kind]
            duration = int(min(rng.integers(low, high + 1) * duration_scale, slot - 120 * duration_scale))
            start_s = warmup_s + i * slot + float(rng.uniform(0, max(slot - duration - 120 * duration_scale, 0)))
            start_ms = self.spec.start_ms + int(start_s * 1000)
            end_ms = start_ms + duration * 1000
            if shift:
                end_ms = self.spec.start_ms + self.spec.duration_s * 1000
            low_m, high_m = (magnitudes or {}).get(kind, MAGNITUDES[kind])
            magnitude = round(float(rng.uniform(low_m, high_m)), 3)
            if kind in CLIENT_KINDS:
                ip = self._attacker_ip(rng, used_ips)
                used_ips.add(ip)
                injections.append(Injection(kind, ip, start_ms, end_ms, magnitude, self._client_routes(kind)))
            else:
                avoid = used_routes if shift else {last_route} if last_route else set()
                route = self._eligible_route(rng, kind, start_ms, min(end_ms, start_ms + 3_600_000), avoid=avoid)
                last_route = route
                used_routes.add(route)
                injections.append(Injection(kind, route, start_ms, end_ms, magnitude, (route,)))
        return injections

    def _eligible_route(self, rng: np.random.Generator, kind: str, start_ms: int, end_ms: int, avoid: set[str]) -> str:
        rates = {
            route.template: min(self.expected_per_minute(route.template, t) for t in (start_ms, end_ms))
            for route in self.spec.routes
            if route.template != UNMATCHED_ROUTE and route.template not in avoid
        }
        candidates = [t for t, rate in rates.items() if rate >= MIN_ROUTE_RATE[kind]]
        if not candidates:  # a quiet night: the busiest route, where it is an anomaly all the same
            candidates = [max(rates, key=lambda t: rates[t])]
        return candidates[int(rng.integers(0, len(candidates)))]

    def _attacker_ip(self, rng: np.random.Generator, used: set[str]) -> str:
        """Half the time a fresh address, half the time an existing small client that turns bad."""
        while True:
            if rng.random() < 0.5:
                ip = self.client_ips[int(rng.integers(self.spec.clients // 4, self.spec.clients))]
            else:
                ip = _random_ip(rng)
            if ip not in used and ip not in MONITORS:
                return ip

    def _client_routes(self, kind: str) -> tuple[str, ...]:
        if kind == "ip_burst":
            return tuple(self.spec.routes[index].template for index, _ in self._burst_mix())
        if kind == "ip_scan":
            return (UNMATCHED_ROUTE, "/items/{item_id}", "/users/{user_id}")
        return ("/auth/login",)

    def _burst_mix(self) -> list[tuple[int, float]]:
        """A scraper reads what browsers read: the GET routes (their indices), in their usual proportions.

        By index, not template: several methods share a template (GET and PUT ``/users/{user_id}``),
        and a scraper's requests are the GET route's, with its latency."""
        routes = [
            (i, r)
            for i, r in enumerate(self.spec.routes)
            if r.method == "GET" and r.rhythm and r.template != UNMATCHED_ROUTE and r.share >= 0.01
        ]
        total = sum(r.share for _, r in routes)
        return [(i, r.share / total) for i, r in routes]

    # --- events -----------------------------------------------------------------------------------------

    def events(self, injections: Iterable[Injection] = (), chunk_s: int = 60) -> Iterator[dict[str, Any]]:
        """Every event, ordered by ``ts``, with ``injections`` applied."""
        injections = list(injections)
        background = np.random.default_rng([self.spec.seed, 2])
        extra = np.random.default_rng([self.spec.seed, 3])
        for chunk_start in range(0, self.spec.duration_s, chunk_s):
            seconds = np.arange(chunk_start, min(chunk_start + chunk_s, self.spec.duration_s))
            batches = self._background(background, seconds)
            batches = [self._apply_route_injections(extra, batch, injections, seconds) for batch in batches]
            batches += self._client_injections(extra, seconds, injections)
            yield from self._rows(extra, batches)

    def _background(self, rng: np.random.Generator, seconds: np.ndarray) -> list[_Batch]:
        site = self._drift[-1, seconds // 10]
        batches = []
        for index, route in enumerate(self.spec.routes):
            rate = self._base_rate(route, seconds)
            if route.rhythm:
                rate = rate * site * self._drift[index, seconds // 10]
            counts = rng.poisson(rate)
            total = int(counts.sum())
            ts = np.repeat(self.spec.start_ms + seconds * 1000, counts) + rng.integers(0, 1000, total)
            if route.rhythm:
                clients = np.searchsorted(self.client_cdf, rng.random(total) * self.client_cdf[-1])
            else:
                clients = -2 - rng.integers(0, len(MONITORS), total)  # -2, -3: the monitors
            status = self._statuses(rng, route, total, route.p_error)
            latency = self._latencies(rng, route, total)
            batches.append(_Batch(index, ts, clients, status, latency, _ids(rng, total)))
        return batches

    @staticmethod
    def _statuses(rng: np.random.Generator, route: RouteProfile, n: int, p_error: float) -> np.ndarray:
        u = rng.random(n)
        ok = 201 if route.method == "POST" else 204 if route.method == "DELETE" else 200
        status = np.full(n, ok, dtype=np.int64)
        if route.template == UNMATCHED_ROUTE:
            status[:] = 404
            return status
        status[u < route.p_not_found + route.p_auth + p_error] = 404
        auth = u < route.p_auth + p_error
        status[auth] = np.where(rng.random(n)[auth] < 0.8, 401, 403)
        errors = u < p_error
        status[errors] = rng.choice(np.array([500, 502, 503]), int(errors.sum()), p=[0.6, 0.25, 0.15])
        return status

    @staticmethod
    def _latencies(rng: np.random.Generator, route: RouteProfile, n: int) -> np.ndarray:
        latency = route.latency_ms * np.exp(rng.normal(0.0, route.latency_sigma, n))
        slow = rng.random(n) < SLOW_OUTLIER_P
        latency[slow] = rng.uniform(1500.0, 8000.0, int(slow.sum()))
        return np.round(latency, 2)

    def _apply_route_injections(
        self, rng: np.random.Generator, batch: _Batch, injections: list[Injection], seconds: np.ndarray
    ) -> _Batch:
        """``injections`` of ``batch``'s route applied to it; ``seconds``: the chunk of time it covers."""
        template = self.spec.routes[batch.route].template
        for injection in injections:
            if injection.kind in CLIENT_KINDS or injection.subject != template:
                continue
            inside = (batch.ts >= injection.start_ms) & (batch.ts < injection.end_ms)
            if not inside.any() and injection.kind != "spike":
                continue
            if injection.kind in ("drop", "silence"):
                keep = ~inside | (rng.random(len(batch.ts)) < injection.magnitude)
                batch = _select(batch, keep)
            elif injection.kind == "error_surge":
                hit = inside & (rng.random(len(batch.ts)) < injection.magnitude)
                batch.status = batch.status.copy()
                batch.status[hit] = rng.choice(np.array([500, 502, 503, 504]), int(hit.sum()))
            elif injection.kind == "latency_surge":
                batch.latency = np.round(np.where(inside, batch.latency * injection.magnitude, batch.latency), 2)
            elif injection.kind == "spike":
                batch = self._add_spike(rng, batch, injection, seconds)
        return batch

    def _add_spike(self, rng: np.random.Generator, batch: _Batch, injection: Injection, seconds: np.ndarray) -> _Batch:
        """The extra requests of a spike: like the route's own, (magnitude - 1) times as many.

        Spread over the whole labelled interval within the chunk (``seconds``) at the injected rate,
        whether or not the background has requests there: on a quiet route a minute may have none.
        """
        chunk_lo = self.spec.start_ms + int(seconds[0]) * 1000
        chunk_hi = self.spec.start_ms + (int(seconds[-1]) + 1) * 1000
        lo, hi = max(chunk_lo, injection.start_ms), min(chunk_hi, injection.end_ms)
        if hi <= lo:
            return batch
        route = self.spec.routes[batch.route]
        first = (lo - self.spec.start_ms) // 1000
        inside = np.arange(first, (hi - self.spec.start_ms + 999) // 1000)
        rate = self._base_rate(route, inside) * (injection.magnitude - 1)
        # Each second's share of the interval: the labelled start and end need not be on a second.
        starts = np.maximum(self.spec.start_ms + inside * 1000, lo)
        ends = np.minimum(self.spec.start_ms + (inside + 1) * 1000, hi)
        counts = rng.poisson(rate * (ends - starts) / 1000)
        n = int(counts.sum())
        ts = np.repeat(starts, counts) + (rng.random(n) * np.repeat(ends - starts, counts)).astype(np.int64)
        clients = np.searchsorted(self.client_cdf, rng.random(n) * self.client_cdf[-1])
        added = _Batch(
            batch.route,
            ts,
            clients,
            self._statuses(rng, route, n, route.p_error),
            self._latencies(rng, route, n),
            _ids(rng, n),
        )
        return _concat(batch, added)

    def _client_injections(
        self, rng: np.random.Generator, seconds: np.ndarray, injections: list[Injection]
    ) -> list[_Batch]:
        lo = self.spec.start_ms + int(seconds[0]) * 1000
        hi = self.spec.start_ms + (int(seconds[-1]) + 1) * 1000
        batches = []
        for injection in injections:
            if injection.kind not in CLIENT_KINDS or injection.end_ms <= lo or injection.start_ms >= hi:
                continue
            start, end = max(lo, injection.start_ms), min(hi, injection.end_ms)
            n = int(rng.poisson(injection.magnitude * (end - start) / 60_000))
            ts = np.sort(rng.integers(start, end, n))
            batches.extend(self._attack(rng, injection, ts))
        return batches

    def _attack(self, rng: np.random.Generator, injection: Injection, ts: np.ndarray) -> list[_Batch]:
        n = len(ts)
        known = self.client_ips.index(injection.subject) if injection.subject in self.client_ips else -1
        agent = self.client_agents[known] if known >= 0 else USER_AGENTS[int(rng.integers(0, len(USER_AGENTS)))]
        if injection.kind == "ip_burst":
            mix = self._burst_mix()
            picks = rng.choice(len(mix), n, p=[share for _, share in mix])
            batches = []
            for j, (index, _) in enumerate(mix):
                route = self.spec.routes[index]
                m = int((picks == j).sum())
                sel = ts[picks == j]
                batches.append(
                    _Batch(
                        index,
                        sel,
                        np.full(m, -1),
                        self._statuses(rng, route, m, route.p_error),
                        self._latencies(rng, route, m),
                        _ids(rng, m),
                        injection.subject,
                        agent,
                    )
                )
            return batches
        if injection.kind == "ip_scan":
            agent = SCANNER_AGENTS[int(rng.integers(0, len(SCANNER_AGENTS)))]
            kinds = rng.random(n)
            batches = []
            targets = (
                (UNMATCHED_ROUTE, kinds < 0.75),
                ("/items/{item_id}", (kinds >= 0.75) & (kinds < 0.9)),
                ("/users/{user_id}", kinds >= 0.9),
            )
            for template, mask in targets:
                m = int(mask.sum())
                route = self.spec.routes[self.route_index[template]]
                paths = [
                    _scan_path(rng)
                    if template == UNMATCHED_ROUTE
                    else template.replace("{item_id}", str(int(rng.integers(10**6, 10**9)))).replace(
                        "{user_id}", f"u{int(rng.integers(10**7, 10**8))}"
                    )
                    for _ in range(m)
                ]
                batches.append(
                    _Batch(
                        self.route_index[template],
                        ts[mask],
                        np.full(m, -1),
                        np.full(m, 404, dtype=np.int64),
                        self._latencies(rng, route, m),
                        _ids(rng, m),
                        injection.subject,
                        agent,
                        paths,
                    )
                )
            return batches
        route = self.spec.routes[self.route_index["/auth/login"]]
        u = rng.random(n)
        status = np.where(u < 0.9, 401, np.where(u < 0.95, 403, 200)).astype(np.int64)
        return [
            _Batch(
                self.route_index["/auth/login"],
                ts,
                np.full(n, -1),
                status,
                self._latencies(rng, route, n),
                _ids(rng, n),
                injection.subject,
                agent,
            )
        ]

    def _rows(self, rng: np.random.Generator, batches: list[_Batch]) -> Iterator[dict[str, Any]]:
        rows: list[tuple[int, bytes, dict[str, Any]]] = []
        for batch in batches:
            route = self.spec.routes[batch.route]
            for i in range(len(batch.ts)):
                client = int(batch.client[i])
                if client >= 0:
                    ip, agent = self.client_ips[client], self.client_agents[client]
                elif client == -1:
                    ip, agent = batch.injected_ip or "", batch.injected_agent or ""
                else:
                    ip, agent = MONITORS[-2 - client], MONITOR_AGENT
                status = int(batch.status[i])
                path = batch.paths[i] if batch.paths is not None else _fill(rng, route.template)
                body = (
                    0
                    if route.method == "DELETE" and status < 300
                    else (
                        int(route.bytes_out * math.exp(rng.normal(0, 0.3)))
                        if status < 400
                        else int(rng.integers(60, 240))
                    )
                )
                event_id = str(uuid.UUID(bytes=batch.ids[i].tobytes(), version=4))
                row: dict[str, Any] = {
                    "v": SCHEMA_VERSION,
                    "id": event_id,
                    "ts": int(batch.ts[i]),
                    "method": route.method,
                    "route": route.template,
                    "path": path,
                    "status": status,
                    "latency_ms": float(batch.latency[i]),
                    "client_ip": ip,
                    "user_agent": agent,
                    "bytes_out": body,
                }
                rows.append((row["ts"], row["id"].encode(), row))
        rows.sort(key=lambda item: (item[0], item[1]))
        for _, _, row in rows:
            yield row


def _select(batch: _Batch, keep: np.ndarray) -> _Batch:
    return replace(
        batch,
        ts=batch.ts[keep],
        client=batch.client[keep],
        status=batch.status[keep],
        latency=batch.latency[keep],
        ids=batch.ids[keep],
        paths=None if batch.paths is None else [p for p, k in zip(batch.paths, keep, strict=True) if k],
    )


def _concat(a: _Batch, b: _Batch) -> _Batch:
    return replace(
        a,
        ts=np.concatenate([a.ts, b.ts]),
        client=np.concatenate([a.client, b.client]),
        status=np.concatenate([a.status, b.status]),
        latency=np.concatenate([a.latency, b.latency]),
        ids=np.concatenate([a.ids, b.ids]),
    )


def _ids(rng: np.random.Generator, n: int) -> np.ndarray:
    return np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16)


def _random_ip(rng: np.random.Generator) -> str:
    if rng.random() < 0.06:
        groups = [0x2A02, *(int(g) for g in rng.integers(0, 0xFFFF, 7))]
        return ":".join(f"{g:x}" for g in groups)
    first = PUBLIC_FIRST_OCTETS[int(rng.integers(0, len(PUBLIC_FIRST_OCTETS)))]
    return f"{first}.{int(rng.integers(0, 256))}.{int(rng.integers(0, 256))}.{int(rng.integers(1, 255))}"


def _fill(rng: np.random.Generator, template: str) -> str:
    """A raw path for a route template: popular items are read more often."""
    if template == UNMATCHED_ROUTE:
        return JUNK_PATHS[int(rng.integers(0, len(JUNK_PATHS)))].replace("{n}", str(int(rng.integers(1, 5000))))
    path = template
    if "{item_id}" in path:
        path = path.replace("{item_id}", str(int(rng.zipf(1.3)) % 50_000 + 1))
    if "{user_id}" in path:
        path = path.replace("{user_id}", f"u{int(rng.integers(1, 400_000))}")
    if "{order_id}" in path:
        path = path.replace("{order_id}", f"o-{int(rng.integers(0, 16**8)):08x}")
    if "{slug}" in path:
        path = path.replace("{slug}", CATEGORIES[int(rng.integers(0, len(CATEGORIES)))])
    return path


def _scan_path(rng: np.random.Generator) -> str:
    path = SCAN_PATHS[int(rng.integers(0, len(SCAN_PATHS)))]
    while "{w}" in path:
        path = path.replace("{w}", SCAN_WORDS[int(rng.integers(0, len(SCAN_WORDS)))], 1)
    return path


def labelled_traffic(
    seed: int, duration_s: int = 3 * 3600, per_kind: int = 2, kinds: Sequence[str] = KINDS, **spec: Any
) -> tuple[list[dict[str, Any]], list[Injection]]:
    """Events and their labels in one call (``spec``: further :class:`TrafficSpec` fields)."""
    generator = TrafficGenerator(TrafficSpec(seed=seed, duration_s=duration_s, **spec))
    injections = generator.plan(kinds=kinds, per_kind=per_kind) if per_kind else []
    return list(generator.events(injections)), injections


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> int:
    """One JSON object per line; returns how many."""
    n = 0
    with Path(path).open("w") as out:
        for row in rows:
            out.write(json.dumps(row, separators=(",", ":")) + "\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    with Path(path).open() as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)
