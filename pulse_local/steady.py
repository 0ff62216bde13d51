"""Evenly spread request events (schema v1, pulse_contract.request_event) for pipeline tests and throughput benchmarks.

Deterministic for a given seed: steady traffic over many routes and clients with exact counts per
window, plus optional spikes laid on top. Realistic labelled traffic lives in ``pulse_local.traffic``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Spike:
    """``extra`` additional requests on ``route`` spread over [start_ms, start_ms + duration_ms)."""

    route: str
    start_ms: int
    duration_ms: int
    extra: int


def event(i: int, ts: int, route: str, client_ip: str, status: int = 200, latency_ms: float = 12.5) -> dict[str, Any]:
    return {
        "v": 1,
        "id": f"ev-{i}",
        "ts": ts,
        "method": "GET",
        "route": route,
        "path": route.replace("{", "").replace("}", ""),
        "status": status,
        "latency_ms": latency_ms,
        "client_ip": client_ip,
        "user_agent": "pulse-traffic/1",
        "bytes_out": 512,
    }


def steady(
    start_ms: int,
    duration_ms: int,
    rate_per_s: float,
    routes: int,
    clients: int,
    seed: int = 7,
    spikes: tuple[Spike, ...] = (),
) -> Iterator[dict[str, Any]]:
    """Events in time order: ``rate_per_s`` spread evenly over ``routes`` and ``clients``, plus spikes."""
    rng = random.Random(seed)
    route_names = [f"/api/r{n}/{{item_id}}" for n in range(routes)]
    client_ips = [f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}" for n in range(clients)]
    total = int(duration_ms / 1000 * rate_per_s)
    stamps = [(start_ms + int(k * duration_ms / max(total, 1)), route_names[k % routes]) for k in range(total)]
    for spike in spikes:
        stamps += [(spike.start_ms + int(k * spike.duration_ms / spike.extra), spike.route) for k in range(spike.extra)]
    stamps.sort(key=lambda pair: pair[0])
    for i, (ts, route) in enumerate(stamps):
        status = rng.choices((200, 201, 404, 401, 500), weights=(90, 4, 3, 2, 1))[0]
        yield event(i, ts, route, rng.choice(client_ips), status, round(rng.uniform(2.0, 80.0), 2))
