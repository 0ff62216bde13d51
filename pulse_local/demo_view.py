"""What the demo shows: the live view while it runs, the summary table and the picture at the end (rich)."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from flink_app.report import SEVERITY_STYLE
from pulse_local import demo_profile
from pulse_local.evaluation import Evaluation, side_effect_of

if TYPE_CHECKING:
    from pulse_local.demo import Found, Run


def console() -> Console:
    """Rich's console; without a terminal (CI, a log file) lines are not folded at 80 columns."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _seconds(state: Run, ms: int | float) -> str:
    return f"{(ms - state.start_ms) / 1000:+.0f}s"


def _pipeline(state: Run) -> Table:
    driver, job, tail = state.driver, state.job, state.tail
    table = Table(title="pipeline", show_header=False, box=None, padding=(0, 1))
    table.add_column(style="bold")
    table.add_column()
    if driver is not None:
        stats = driver.stats
        classes = {"2xx": 0, "4xx": 0, "5xx": 0}
        for status, n in stats.statuses.items():
            key = f"{status // 100}xx"
            if key in classes:
                classes[key] += n
        table.add_row("requests/s", f"{stats.rate():.1f}  (sent {stats.sent} of {stats.planned})")
        table.add_row(
            "answers",
            "  ".join(f"{k} {v}" for k, v in classes.items()) + (f"  no answer {stats.failed}" if stats.failed else ""),
        )
    if tail is not None:
        delivered = f"{len(tail.events)}" + (f"  (stream unreadable: {tail.error})" if tail.error else "")
        table.add_row("events on the stream", delivered)
    if state.fallback is not None:
        from pulse_local.demo import count_lines

        table.add_row("in the fallback log", str(count_lines(state.fallback)))
    if job is not None:
        job_status = job.status()
        lag = job.source_lag_ms()
        style = "green" if job_status == "RUNNING" else "yellow"
        table.add_row(
            "job",
            f"[{style}]{job_status}[/]  source lag (millisBehindLatest): {'-' if lag is None else f'{lag:.0f} ms'}",
        )
    outage = state.outage
    if outage is not None and outage.state != "none":
        described = {
            "planned": f"outage planned at {_seconds(state, outage.at * 1000)} for {outage.seconds:.0f} s",
            "down": "[bold red]unreachable (outage)[/]",
            "back": "reachable again; replay once the API stops writing fallback lines",
            "replaying": "replaying the fallback log",
            "replayed": f"replay: {outage.replay_output}",
        }
        table.add_row("emulator", described.get(outage.state, outage.state))
    if state.reader is not None and state.reader.error:
        table.add_row("GET /monitoring/anomalies", f"[red]{state.reader.error}[/]")
    return table


def _injections(state: Run, found: list[Found]) -> Table:
    now_ms = time.time() * 1000
    table = Table(title="injections (announced) and what the API returned")
    for column in ("kind", "subject", "when", "state", "found through the API"):
        table.add_column(column)
    for f in found:
        label = f.label
        when = f"{_seconds(state, label.start_ms)} .. {_seconds(state, label.end_ms)}"
        if now_ms < label.start_ms:
            phase = "[dim]upcoming[/]"
        elif now_ms < label.end_ms:
            phase = "[bold]active[/]"
        else:
            phase = "ended"
        if f.anomaly is not None and f.latency_s is not None:
            severity = f.anomaly.severity
            result = f"[green]yes[/] after {f.latency_s:.1f} s ([{SEVERITY_STYLE.get(severity, '')}]{severity}[/])"
        else:
            result = (
                "[dim]not yet[/]" if now_ms < label.end_ms + demo_profile.tolerance_s() * 1000 else "[red]missed[/]"
            )
        table.add_row(label.kind, label.subject, when, phase, result)
    return table


def _anomalies(state: Run, limit: int = 8) -> Table:
    table = Table(title="latest anomalies read through GET /monitoring/anomalies")
    for column in ("window end", "kind", "subject", "phase", "severity", "score", "matches"):
        table.add_column(column)
    if state.reader is None:
        return table
    records = sorted(state.reader.records.values(), key=lambda a: a.window_end, reverse=True)[:limit]
    tolerance_ms = demo_profile.tolerance_s() * 1000
    for anomaly in records:
        matches = "[red]false alarm?[/]"
        for label in state.labels:
            inside = label.start_ms <= anomaly.window_end <= label.end_ms + tolerance_ms
            if inside and label.kind == anomaly.kind and label.subject == anomaly.subject:
                matches = f"[green]injected {label.kind}[/]"
                break
        else:
            for label in state.labels:
                if label.start_ms <= anomaly.window_end <= label.end_ms + tolerance_ms and side_effect_of(
                    label, _as_incident(anomaly)
                ):
                    matches = f"[yellow]side effect of {label.kind}[/]"
                    break
        style = SEVERITY_STYLE.get(anomaly.severity, "")
        table.add_row(
            _seconds(state, anomaly.window_end),
            anomaly.kind,
            anomaly.subject,
            anomaly.phase,
            f"[{style}]{anomaly.severity}[/]",
            f"{anomaly.score:.1f}",
            matches,
        )
    return table


def _as_incident(anomaly: Any) -> Any:
    from pulse_local.evaluation import Incident

    return Incident(anomaly.kind, anomaly.subject_type, anomaly.subject, anomaly.window_end, anomaly.window_end,
                    anomaly.severity, 1)  # fmt: skip


def render(state: Run) -> Any:
    from pulse_local.demo import match

    elapsed = time.time() - state.start_ms / 1000
    total = (state.end_ms - state.start_ms) / 1000
    traffic = f"traffic {max(elapsed, 0):.0f}/{total:.0f} s" if state.start_ms else "no traffic yet"
    phase = escape(f"[{state.phase}]")
    header = f"Pulse demo  seed={state.args.seed}  api={state.api_name}  {traffic}  {phase}  (Ctrl-C: stop)"
    parts: list[Any] = [_pipeline(state)]
    if state.reader is not None:
        found, _ = match(state.labels, state.reader, demo_profile.tolerance_s())
        parts += [_injections(state, found), _anomalies(state)]
    return Panel(Group(*parts), title=header)


class _View:
    def __init__(self, live: Live | None, state: Run, console: Console) -> None:
        self.live, self.state, self.console = live, state, console
        self.last_line = 0.0

    def update(self) -> None:
        if self.live is not None:
            self.live.update(render(self.state))
            return
        if time.monotonic() - self.last_line >= 10:  # plain lines (no terminal, CI, tests)
            self.last_line = time.monotonic()
            s = self.state
            sent = s.driver.stats.sent if s.driver else 0
            on_stream = len(s.tail.events) if s.tail else 0
            read = len(s.reader.records) if s.reader else 0
            status = s.job.status() if s.job else "-"
            lag = s.job.source_lag_ms() if s.job else None
            t = f"{time.time() - s.start_ms / 1000:.0f}s" if s.start_ms else "-"
            self.console.print(
                f"demo: {s.phase} t={t} requests={sent} on_stream={on_stream} "
                f"job={status} lag_ms={'-' if lag is None else f'{lag:.0f}'} anomalies_read={read}"
            )


@contextlib.contextmanager
def live(console: Console, state: Run, enabled: bool) -> Iterator[_View]:
    if not enabled or not console.is_terminal:
        yield _View(None, state, console)
        return
    with Live(render(state), console=console, refresh_per_second=2, transient=False) as view:
        yield _View(view, state, console)


def summary(console: Console, state: Run, found: list[Found], evaluation: Evaluation, png: Path) -> None:
    table = Table(
        title="Pulse demo: each injection, found or missed (latency: its start to the anomaly read through the API)"
    )
    for column in ("kind", "subject", "injected", "found", "latency", "window delay", "severity"):
        table.add_column(column)
    for f in found:
        label = f.label
        when = f"{_seconds(state, label.start_ms)} .. {_seconds(state, label.end_ms)}"
        if f.anomaly is None:
            table.add_row(label.kind, label.subject, when, "[red]missed[/]", "-", "-", "-")
        else:
            style = SEVERITY_STYLE.get(f.anomaly.severity, "")
            table.add_row(label.kind, label.subject, when, "[green]found[/]", f"{f.latency_s:.1f} s",
                          f"{f.delay_s:.0f} s", f"[{style}]{f.anomaly.severity}[/]")  # fmt: skip
    console.print(table)
    if evaluation.unexplained:
        alarms = Table(title="false alarms (incidents no injection explains)")
        for column in ("kind", "subject", "opened", "severity"):
            alarms.add_column(column)
        for incident in evaluation.unexplained:
            alarms.add_row(incident.kind, incident.subject, _seconds(state, incident.opened_ms), incident.severity)
        console.print(alarms)
    else:
        console.print("false alarms: none")
    if evaluation.side_effects:
        effects = ", ".join(f"{i.kind} on {i.subject}" for i in evaluation.side_effects)
        console.print(f"side effects of injections (reported, explained): {effects}")
    console.print(f"picture: {png}")


def picture(state: Run, found: list[Found], evaluation: Evaluation) -> Path:
    from pulse_local.demo_plot import timeline

    found_n = sum(1 for f in found if f.anomaly is not None)
    title = (
        f"Pulse demo (seed {state.args.seed}, api {state.api_name}): {found_n} of {len(found)} injections found, "
        f"{len(evaluation.unexplained)} false alarms"
    )
    anomalies = list(state.reader.records.values()) if state.reader else []
    events = state.tail.events if state.tail else []
    path = state.out / f"pulse-demo-seed{state.args.seed}.png"
    return timeline(path, events, state.labels, anomalies, state.start_ms, state.stopped_ms or state.end_ms, title)
