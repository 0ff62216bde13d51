"""What a user sees of a backtest: a progress display while it runs, a summary table at the end.

    with BacktestProgress(total=os.path.getsize(path), unit="bytes") as progress:
        ...  # progress.update(done=bytes_read, anomalies=found_so_far)
    print_summary(anomalies)

Plain Python and ``rich``; no Flink import, so the CLI, the demo and the benchmarks share it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from pulse_contract import KINDS, Anomaly, iso_utc

SEVERITY_ORDER = {"low": 0, "medium": 1, "high": 2}
SEVERITY_STYLE = {"low": "yellow", "medium": "dark_orange", "high": "bold red"}


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """Every record of one kind on one subject."""

    kind: str
    subject_type: str
    subject: str
    incidents: int  # records that opened an incident
    records: int
    worst: str  # highest severity seen
    first_seen: int  # earliest window_end, epoch ms
    last_seen: int  # latest window_end, epoch ms


def summarize(anomalies: Iterable[Anomaly]) -> list[SummaryRow]:
    """Group records by kind and subject, in the contract's kind order (pulse_contract.KINDS), then by first seen."""
    groups: dict[tuple[str, str, str], list[Anomaly]] = {}
    for anomaly in anomalies:
        groups.setdefault((anomaly.kind, anomaly.subject_type, anomaly.subject), []).append(anomaly)
    rows = [
        SummaryRow(
            kind=kind,
            subject_type=subject_type,
            subject=subject,
            incidents=sum(1 for r in records if r.phase == "open"),
            records=len(records),
            worst=max((r.severity for r in records), key=lambda s: SEVERITY_ORDER.get(s, -1)),
            first_seen=min(r.window_end for r in records),
            last_seen=max(r.window_end for r in records),
        )
        for (kind, subject_type, subject), records in groups.items()
    ]
    rank = {kind: i for i, kind in enumerate(KINDS)}
    return sorted(rows, key=lambda r: (rank.get(r.kind, len(rank)), r.first_seen, r.subject))


def summary_table(rows: Sequence[SummaryRow], title: str = "Anomalies") -> Table:
    """The summary as a ``rich`` table: one line per kind and subject."""
    table = Table(title=f"{title} ({sum(r.incidents for r in rows)} incidents, {sum(r.records for r in rows)} records)")
    table.add_column("kind")
    table.add_column("subject", overflow="fold")
    table.add_column("incidents", justify="right")
    table.add_column("records", justify="right")
    table.add_column("worst")
    table.add_column("first seen (UTC)")
    table.add_column("last seen (UTC)")
    for row in rows:
        table.add_row(
            row.kind,
            row.subject,
            str(row.incidents),
            str(row.records),
            f"[{SEVERITY_STYLE.get(row.worst, '')}]{row.worst}[/]",
            _when(row.first_seen),
            _when(row.last_seen),
        )
    return table


def print_summary(
    anomalies: Iterable[Anomaly], console: Console | None = None, title: str = "Anomalies"
) -> list[SummaryRow]:
    """Print the summary table (or a line saying nothing was found); return its rows."""
    console = console or Console()
    rows = summarize(anomalies)
    if rows:
        console.print(summary_table(rows, title))
    else:
        console.print(f"{title}: none found")
    return rows


def _when(epoch_ms: int) -> str:
    return iso_utc(epoch_ms).replace("T", " ").rstrip("Z")[:19]


class BacktestProgress:
    """A progress bar over the input (events, windows or bytes) with a running count of anomalies.

    ``total=None`` shows a spinner-like bar without an end. ``update`` takes absolute figures, so
    it can be driven from a poll of a growing output file as well as from a loop.
    """

    def __init__(
        self,
        total: int | None,
        unit: str = "events",
        description: str = "backtest",
        console: Console | None = None,
        disable: bool = False,
    ) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(unit),
            TextColumn("[cyan]{task.fields[anomalies]} anomalies"),
            TimeElapsedColumn(),
            console=console,
            disable=disable,
            transient=False,
        )
        self._task: TaskID = self._progress.add_task(description, total=total, anomalies=0)
        self.done = 0
        self.anomalies = 0

    def __enter__(self) -> BacktestProgress:
        self._progress.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._progress.stop()

    def update(self, done: int | None = None, anomalies: int | None = None) -> None:
        """Set how much of the input is done and how many anomalies were found so far."""
        if done is not None:
            self.done = done
        if anomalies is not None:
            self.anomalies = anomalies
        self._progress.update(self._task, completed=self.done, anomalies=self.anomalies)

    def callback(self) -> Callable[[int, int], None]:
        """A ``progress(done, total)`` callable, as :func:`flink_app.detect.backtest.replay` takes."""

        def report(done: int, total: int) -> None:
            self._progress.update(self._task, total=total)
            self.update(done)

        return report

    def count(self, anomalies: Iterable[Anomaly]) -> Iterator[Anomaly]:
        """Pass ``anomalies`` through, counting them on the display as they stream by."""
        for anomaly in anomalies:
            self.update(anomalies=self.anomalies + 1)
            yield anomaly
