"""The demo's picture: request rate per route and for the clients, injections shaded, anomalies marked (matplotlib)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display needed

import matplotlib.pyplot as plt
import numpy as np

from pulse_contract import Anomaly
from pulse_local.traffic import Injection

BIN_S = 2.0
KIND_COLOURS = {
    "spike": "tab:red",
    "drop": "tab:purple",
    "silence": "black",
    "error_surge": "tab:orange",
    "latency_surge": "tab:brown",
    "ip_burst": "tab:red",
    "ip_scan": "tab:olive",
    "ip_auth_failures": "tab:pink",
}


def _rate(times_s: Sequence[float], bins: int) -> np.ndarray:
    counts = np.zeros(bins)
    for t in times_s:
        index = int(t / BIN_S)
        if 0 <= index < bins:
            counts[index] += 1
    return counts / BIN_S


def timeline(
    path: Path,
    events: Sequence[dict[str, Any]],
    labels: Sequence[Injection],
    anomalies: Sequence[Anomaly],
    start_ms: int,
    end_ms: int,
    title: str,
) -> Path:
    """One panel per route (busiest first) and one for the clients; x is seconds since the traffic started.

    ``events`` are what reached the stream (``ts``, ``route``, ``client_ip``); shaded spans are the
    injections on that panel's subjects, vertical lines the anomalies (at their window's end; solid
    for open/escalate, dotted for end).
    """
    bins = max(1, int((end_ms - start_ms) / 1000 / BIN_S) + 1)
    x = np.arange(bins) * BIN_S
    by_route: dict[str, list[float]] = {}
    by_client: dict[str, list[float]] = {}
    for event in events:
        t = (event["ts"] - start_ms) / 1000
        by_route.setdefault(event["route"], []).append(t)
        by_client.setdefault(event["client_ip"], []).append(t)
    routes = sorted(by_route, key=lambda r: -len(by_route[r]))
    injected_clients = [label.subject for label in labels if label.subject_type == "client"]
    panels = [*routes, "clients"]
    fig, axes = plt.subplots(len(panels), 1, figsize=(12, 1.7 * len(panels) + 1), sharex=True, squeeze=False)
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        if panel == "clients":
            others = [t for ip, times in by_client.items() if ip not in injected_clients for t in times]
            busiest = Counter({ip: len(times) for ip, times in by_client.items() if ip not in injected_clients})
            top = busiest.most_common(1)
            ax.plot(x, _rate(others, bins) / max(len(busiest), 1), color="0.6", lw=1, label="mean of other clients")
            if top:
                ax.plot(x, _rate(by_client[top[0][0]], bins), color="0.3", lw=1, label=f"busiest other ({top[0][0]})")
            for label in labels:
                if label.subject_type == "client":
                    colour = KIND_COLOURS[label.kind]
                    ax.plot(x, _rate(by_client.get(label.subject, []), bins), color=colour, lw=1.2, label=label.subject)
            subjects = set(injected_clients) | {a.subject for a in anomalies if a.subject_type == "client"}
            ax.set_yscale("symlog", linthresh=1)
            ax.set_ylabel("clients\nreq/s", fontsize=8)
            ax.legend(loc="upper left", fontsize=7, ncol=3)
        else:
            ax.plot(x, _rate(by_route[panel], bins), color="tab:blue", lw=1)
            subjects = {panel}
            ax.set_ylabel(f"{panel}\nreq/s", fontsize=8)
        for label in labels:
            if label.subject in subjects:
                ax.axvspan(
                    (label.start_ms - start_ms) / 1000,
                    (label.end_ms - start_ms) / 1000,
                    color=KIND_COLOURS[label.kind],
                    alpha=0.15,
                )
                ax.text(
                    (label.start_ms - start_ms) / 1000,
                    1.0,
                    f" injected {label.kind}",
                    transform=ax.get_xaxis_transform(),
                    fontsize=7,
                    va="top",
                    color=KIND_COLOURS[label.kind],
                )
        for anomaly in anomalies:
            if anomaly.subject in subjects and (panel == "clients") == (anomaly.subject_type == "client"):
                at = (anomaly.window_end - start_ms) / 1000
                style = ":" if anomaly.phase == "end" else "-"
                ax.axvline(at, color=KIND_COLOURS.get(anomaly.kind, "k"), ls=style, lw=1.2)
                if anomaly.phase != "end":
                    ax.text(at, 0.75, f" {anomaly.kind} ({anomaly.severity})", transform=ax.get_xaxis_transform(),
                            fontsize=7, color=KIND_COLOURS.get(anomaly.kind, "k"))  # fmt: skip
        ax.tick_params(labelsize=7)
        ax.set_ylim(bottom=0)
    axes[-1, 0].set_xlabel(
        "seconds since the traffic started (shaded: injected; lines: anomalies read back through the API)"
    )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
