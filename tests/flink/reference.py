"""A plain-Python reading of what the SQL stages compute, for exact comparisons in tests.

Independent of Flink: windows are enumerated directly from the events, then each subject's
windows go through the same :class:`flink_app.operator.SubjectDetection` in window order.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from flink_app.config import JobConfig
from flink_app.detect.engine import DetectionEngine
from flink_app.detect.model import UNMATCHED_ROUTE, Anomaly, ClientWindow, RouteWindow
from flink_app.events import MAX_EVENT_MS, MIN_EVENT_MS
from flink_app.operator import SubjectDetection


def usable(event: Any, config: JobConfig) -> bool:
    if not isinstance(event, dict):
        return False
    ts, status, latency = event.get("ts"), event.get("status"), event.get("latency_ms")
    return (isinstance(ts, int) and MIN_EVENT_MS <= ts < MAX_EVENT_MS
            and isinstance(event.get("route"), str) and isinstance(event.get("client_ip"), str)
            and isinstance(status, int) and 100 <= status <= 599
            and isinstance(latency, int | float) and latency >= 0)


def route_windows(events: list[dict[str, Any]], config: JobConfig) -> list[RouteWindow]:
    size, slide = config.windows.route_size_s * 1000, config.windows.route_slide_s * 1000
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        last_start = event["ts"] - event["ts"] % slide
        for start in range(last_start, event["ts"] - size, -slide):
            groups[(event["route"], start)].append(event)
    return [
        RouteWindow(route=route, window_start=start, window_end=start + size, count=len(items),
                    errors_4xx=sum(400 <= e["status"] < 500 for e in items),
                    errors_5xx=sum(e["status"] >= 500 for e in items),
                    latency_mean=sum(e["latency_ms"] for e in items) / len(items),
                    latency_max=float(max(e["latency_ms"] for e in items)))
        for (route, start), items in groups.items()
    ]


def client_windows(events: list[dict[str, Any]], config: JobConfig) -> list[ClientWindow]:
    size = config.windows.client_size_s * 1000
    groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for event in events:
        groups[(event["client_ip"], event["ts"] - event["ts"] % size)].append(event)
    counts_by_window: dict[int, list[int]] = defaultdict(list)
    for (_, start), items in groups.items():
        counts_by_window[start].append(len(items))
    windows = []
    for (client, start), items in groups.items():
        counts = counts_by_window[start]
        mean = sum(counts) / len(counts)
        windows.append(ClientWindow(
            client_ip=client, window_start=start, window_end=start + size, count=len(items),
            distinct_routes=len({e["route"] for e in items}),
            unmatched=sum(e["route"] == UNMATCHED_ROUTE for e in items),
            not_found=sum(e["status"] == 404 for e in items),
            auth_failures=sum(e["status"] in (401, 403) for e in items),
            pop_clients=len(counts), pop_mean_count=mean,
            pop_std_count=math.sqrt(sum((c - mean) ** 2 for c in counts) / len(counts))))
    return windows


def expected_anomalies(raw: Iterable[Any], config: JobConfig) -> list[Anomaly]:
    """What a backtest of ``raw`` must write, detected_at/ttl aside."""
    events = [event for event in raw if usable(event, config)]
    final_watermark = max(e["ts"] for e in events) - config.windows.watermark_delay_s * 1000 - 1
    by_subject: dict[str, list[RouteWindow | ClientWindow]] = defaultdict(list)
    for route_window in route_windows(events, config):
        by_subject[f"route#{route_window.route}"].append(route_window)
    for client_window in client_windows(events, config):
        by_subject[f"client#{client_window.client_ip}"].append(client_window)
    detection = SubjectDetection(DetectionEngine(config.detect))
    anomalies: list[Anomaly] = []
    for windows in by_subject.values():
        state, deadline = None, None
        for window in sorted(windows, key=lambda w: w.window_end):
            step = detection.on_window(state, window, deadline)
            state, deadline = step.state, step.deadline
            anomalies += step.anomalies
        # A deadline the input's own watermark passes fires; those after it end with the input.
        while deadline is not None and deadline <= final_watermark:
            step = detection.on_deadline(state, deadline)
            state, deadline = step.state, step.deadline if step.deadline != deadline else None
            anomalies += step.anomalies
    return sorted(anomalies, key=lambda a: (a.pk, a.sk))
