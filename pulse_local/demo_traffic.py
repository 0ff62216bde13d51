"""The demo's traffic: the labelled generator shaped to the example shop, its injections, and an HTTP driver.

* :data:`SHOP_ROUTES`: the generator's route profiles for the shop's own routes (templates exactly as
  FastAPI matches them, so the events carry the same route as the generator's labels). Credential
  stuffing is the generator's ``/auth/login``, the shop's ``POST /login``: :func:`shop_route` maps it.
* :func:`schedule`: one injection of each kind at announced times. The generator's own planner puts
  them one after another with minutes between; in a demo of a few minutes they overlap, each on a
  subject of its own, with client and route kinds interleaved so no two touch the same traffic at once.
* :class:`Driver`: sends each generated event as the HTTP request that makes the shop answer it
  (a valid or unknown id, a good or bad password, a missing token; ``x-demo-delay-ms`` and
  ``x-demo-fail`` for what the shop's dependencies do, see :mod:`pulse_local.demo_app`) at its
  time, from its client address (``X-Forwarded-For``, the API trusting the loopback proxy).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from lambda_api.shop import USERNAMES
from pulse_contract import CLIENT_KINDS, UNMATCHED_ROUTE
from pulse_local.demo_app import DELAY_HEADER, FAIL_HEADER
from pulse_local.traffic import MAGNITUDES, Injection, RouteProfile, TrafficGenerator

GENERATOR_PEAK_RPS = 25.0  # the generator's default peak: its client magnitudes are per minute at that rate
LOGIN = "/auth/login"  # the generator's credential-stuffing route; the shop's is POST /login
SHOP_ROUTES: tuple[RouteProfile, ...] = (
    RouteProfile("GET", "/items", 0.17, 45, bytes_out=9000),
    RouteProfile("GET", "/items/{item_id}", 0.28, 25, p_not_found=0.03, bytes_out=2200),
    RouteProfile("GET", "/search", 0.14, 120, 0.6, bytes_out=12000),
    RouteProfile("GET", "/users/{user_id}", 0.12, 30, p_not_found=0.01, bytes_out=900),
    RouteProfile("GET", "/users/{user_id}/orders", 0.09, 70, p_not_found=0.01, bytes_out=4000),
    RouteProfile("GET", "/users/{user_id}/orders/{order_id}", 0.05, 35, p_not_found=0.02, bytes_out=1600),
    RouteProfile("POST", LOGIN, 0.08, 90, 0.35, p_auth=0.06, bytes_out=500),
    RouteProfile("POST", "/checkout", 0.05, 250, 0.5, p_auth=0.02, p_error=0.005, bytes_out=800),
    RouteProfile("GET", "/health", 0.0, 3, 0.3, p_error=0.0, bytes_out=15, rhythm=False),
    RouteProfile("GET", UNMATCHED_ROUTE, 0.006, 4, 0.3, p_error=0.0, bytes_out=120),
)
# The scraper (ip_burst) reads every busy GET route, so it comes last, once every route injection has ended;
# the others overlap, each on subjects of its own: the scanner's 404s land on /items/{item_id} and
# /users/{user_id}, so neither is the silenced route.
ORDER = ("spike", "ip_scan", "error_surge", "ip_auth_failures", "latency_surge", "drop", "silence", "ip_burst")
LAST = "ip_burst"
ROUTE_FOR = {
    "spike": "/users/{user_id}",
    "error_surge": "/search",
    "latency_surge": "/users/{user_id}/orders",
    "drop": "/items/{item_id}",
    "silence": "/items",
}
REQUEST_TOKEN = "pulse-demo/"
SCAN_ROUTES = (UNMATCHED_ROUTE, "/items/{item_id}", "/users/{user_id}")


def shop_route(template: str) -> str:
    """The route template the shop's middleware records for a generator template."""
    return "/login" if template == LOGIN else template


def burst_routes(routes: Sequence[RouteProfile] = SHOP_ROUTES) -> tuple[str, ...]:
    """The routes a scraper reads (the generator's rule: busy GET routes that follow the rhythm)."""
    return tuple(
        r.template
        for r in routes
        if r.method == "GET" and r.rhythm and r.template != UNMATCHED_ROUTE and r.share >= 0.01
    )


def schedule(
    generator: TrafficGenerator,
    first_s: float,
    last_end_s: float,
    seed: int,
    kinds: Sequence[str] = ORDER,
) -> list[Injection]:
    """One injection per kind in ``kinds`` between ``first_s`` and ``last_end_s`` (seconds of traffic).

    Each lasts an eighth of that span (24 to 60 s); all but the scraper are spread evenly over the
    span less two durations, the scraper follows the last of them. Magnitudes are drawn from the
    generator's ranges; client ones (requests per minute) are scaled by the traffic's peak rate over
    the generator's default, so an attack stands out as much as in the generator's own traffic.
    Attackers are fresh addresses half the time, an existing small client that turns bad otherwise
    (as the generator's planner does).
    """
    rng = random.Random(seed)
    spec = generator.spec
    rate_scale = spec.peak_rps / GENERATOR_PEAK_RPS
    duration_s = min(60.0, max(24.0, (last_end_s - first_s) / 8))
    spread = [kind for kind in kinds if kind != LAST]
    room = last_end_s - first_s - duration_s * (2 if LAST in kinds else 1)
    if room < 0:
        raise ValueError(f"{len(kinds)} injections do not fit between {first_s:.0f} s and {last_end_s:.0f} s")
    spacing = room / max(len(spread) - 1, 1)
    starts = {kind: first_s + i * spacing for i, kind in enumerate(spread)}
    if LAST in kinds:
        starts[LAST] = first_s + room + duration_s
    used: set[str] = set()
    injections = []
    for kind in kinds:
        start_ms = spec.start_ms + int(starts[kind] * 1000)
        end_ms = start_ms + int(duration_s * 1000)
        low, high = MAGNITUDES[kind]
        magnitude = round(rng.uniform(low, high), 3)
        if kind in CLIENT_KINDS:
            magnitude = round(magnitude * rate_scale, 1)
            ip = _attacker_ip(rng, generator, used)
            used.add(ip)
            routes = {"ip_burst": burst_routes(spec.routes), "ip_scan": SCAN_ROUTES}.get(kind, (LOGIN,))
            injections.append(Injection(kind, ip, start_ms, end_ms, magnitude, routes))
        else:
            route = ROUTE_FOR[kind]
            injections.append(Injection(kind, route, start_ms, end_ms, magnitude, (route,)))
    return sorted(injections, key=lambda i: i.start_ms)


def _attacker_ip(rng: random.Random, generator: TrafficGenerator, used: set[str]) -> str:
    while True:
        if rng.random() < 0.5:
            ip = generator.client_ips[rng.randrange(len(generator.client_ips) // 4, len(generator.client_ips))]
        else:
            ip = f"{rng.choice((45, 91, 185, 193))}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        if ip not in used:
            return ip


def as_shop_labels(injections: Sequence[Injection]) -> list[Injection]:
    """The labels with the shop's route templates (what the events and anomalies name)."""
    return [
        replace(i, subject=shop_route(i.subject), routes=tuple(shop_route(r) for r in i.routes)) for i in injections
    ]


# --- events as HTTP requests --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    json: Any = None
    token: bool = False  # needs the driver's session token


def request_for(event: dict[str, Any], rng: random.Random) -> Request:
    """The request that makes the shop answer ``event``'s status on ``event``'s route."""
    route, status = event["route"], int(event["status"])
    headers = {
        "x-forwarded-for": event["client_ip"],
        "user-agent": event["user_agent"] or "-",
        DELAY_HEADER.decode(): f"{event['latency_ms']:.2f}",
    }
    if status >= 500:
        headers[FAIL_HEADER.decode()] = str(status)
    missing = status == 404
    item = rng.randrange(100_000, 999_999) if missing else rng.randrange(1, 57)
    user = rng.randrange(1_000, 99_999) if missing else rng.randrange(1, len(USERNAMES) + 1)
    if route == "/items":
        return Request("GET", f"/items?limit=20&offset={rng.randrange(0, 40)}", headers)
    if route == "/items/{item_id}":
        return Request("GET", f"/items/{item}", headers)
    if route == "/search":
        return Request("GET", f"/search?q={rng.choice(('tent', 'lamp', 'red', 'audio', 'kettle', 'zz'))}", headers)
    if route == "/users/{user_id}":
        return Request("GET", f"/users/{user}", headers)
    if route == "/users/{user_id}/orders":
        return Request("GET", f"/users/{user}/orders", headers)
    if route == "/users/{user_id}/orders/{order_id}":
        order = rng.randrange(100_000, 999_999) if missing else 1
        return Request("GET", f"/users/{1 if not missing else user}/orders/{order}", headers)
    if route == LOGIN:
        name = rng.choice(USERNAMES)
        good = status < 400
        credentials = {"username": name, "password": f"pulse-{name}" if good else f"guess-{rng.randrange(10**6)}"}
        return Request("POST", "/login", headers, credentials)
    if route == "/checkout":
        body = {"lines": [{"item_id": rng.randrange(1, 57), "quantity": 1}]}
        return Request("POST", "/checkout", headers, body, token=status not in (401, 403))
    if route == "/health":
        return Request("GET", "/health", headers)
    return Request("GET", event.get("path") or "/favicon.ico", headers)  # UNMATCHED: junk and scan paths


# --- the driver ---------------------------------------------------------------------------------------


@dataclass
class DriverStats:
    """What the driver did, for the live view; times are wall-clock seconds."""

    planned: int = 0
    sent: int = 0
    answered: int = 0
    failed: int = 0  # no HTTP answer (connection refused, timeout)
    statuses: Counter[int] = field(default_factory=Counter)
    recent: deque[float] = field(default_factory=lambda: deque(maxlen=20_000))  # send times
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=2_000))
    behind_s: float = 0.0  # how late the last request went out against its schedule
    errors: Counter[str] = field(default_factory=Counter)
    answered_numbers: dict[int, int] = field(default_factory=dict)  # request number (see Driver): its status
    timings: list[tuple[float, float]] = field(default_factory=list)  # (sent at, ms until answered), every request

    def rate(self, window_s: float = 5.0) -> float:
        now = time.time()
        return sum(1 for t in list(self.recent) if now - t <= window_s) / window_s


class Driver:
    """Sends ``events`` (ts = wall-clock ms) to ``base_url`` at their times, in a thread of its own."""

    def __init__(self, base_url: str, events: Sequence[dict[str, Any]], seed: int, max_in_flight: int = 512) -> None:
        self.base_url = base_url
        self.events = events
        self.rng = random.Random(seed)
        self.max_in_flight = max_in_flight
        self.stats = DriverStats(planned=len(events))
        self.stop = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)
        self.error: BaseException | None = None
        self.token: str | None = None

    def start(self) -> Driver:
        self.thread.start()
        return self

    def close(self, timeout_s: float = 20.0) -> None:
        self.stop.set()
        self.thread.join(timeout_s)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported by the demo, naming the traffic driver
            self.error = error
        finally:
            self.done.set()

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=self.max_in_flight, max_keepalive_connections=64)
        async with httpx.AsyncClient(base_url=self.base_url, limits=limits, timeout=30.0) as client:
            self.token = await self._login(client)
            gate = asyncio.Semaphore(self.max_in_flight)
            tasks: set[asyncio.Task[None]] = set()
            for n, event in enumerate(self.events):
                if self.stop.is_set():
                    break
                wait_s = event["ts"] / 1000 - time.time()
                if wait_s > 0:
                    await asyncio.sleep(min(wait_s, 0.5))
                    while not self.stop.is_set() and (wait_s := event["ts"] / 1000 - time.time()) > 0:
                        await asyncio.sleep(min(wait_s, 0.5))
                else:
                    self.stats.behind_s = -wait_s
                await gate.acquire()
                task = asyncio.create_task(self._send(client, request_for(event, self.rng), n, gate))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.wait(tasks, timeout=None if not self.stop.is_set() else 5.0)
            for task in tasks:
                task.cancel()

    async def _login(self, client: httpx.AsyncClient) -> str | None:
        """One session for the shop's checkouts (the demo user's own login is an event like any other)."""
        answer = await client.post(
            "/login", json={"username": "alice", "password": "pulse-alice"}, headers={"x-forwarded-for": "10.0.9.1"}
        )
        return str(answer.json()["token"]) if answer.status_code == 200 else None

    async def _send(self, client: httpx.AsyncClient, request: Request, n: int, gate: asyncio.Semaphore) -> None:
        headers = dict(request.headers)
        if request.token and self.token:
            headers["authorization"] = f"Bearer {self.token}"
        # A product token with the request's number: each event on the stream or in the fallback log
        # names its request, so the demo can tell whether any was lost.
        headers["user-agent"] = f"{headers['user-agent']} {REQUEST_TOKEN}{n}"
        self.stats.sent += 1
        sent_at = time.time()
        self.stats.recent.append(sent_at)
        started = time.perf_counter()
        try:
            answer = await client.request(request.method, request.path, headers=headers, json=request.json)
        except httpx.HTTPError as error:
            self.stats.failed += 1
            self.stats.errors[type(error).__name__] += 1
        else:
            elapsed_ms = (time.perf_counter() - started) * 1000
            self.stats.answered += 1
            self.stats.answered_numbers[n] = answer.status_code
            self.stats.statuses[answer.status_code] += 1
            self.stats.latencies_ms.append(elapsed_ms)
            self.stats.timings.append((sent_at, elapsed_ms))
        finally:
            gate.release()


def request_number(event: dict[str, Any]) -> int | None:
    """The driver's request number in an event's user agent (None for requests it did not send)."""
    _, token, number = str(event.get("user_agent") or "").rpartition(REQUEST_TOKEN)
    return int(number) if token and number.isdigit() else None
