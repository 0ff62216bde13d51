"""Publish the fallback log's events again: ``python -m lambda_api.fallback_replay LOGFILE [LOGFILE ...]``.

Reads fallback lines (other lines are skipped, so a whole application log or a CloudWatch
export works), refuses any event that is not a sound v1 event (finite numbers, ``ts`` within a
window around now), drops duplicates by stream and event id, and delivers them to ``--stream``
(or ``PULSE_STREAM_NAME``; the stream each line names only with ``--trust-line-stream``) with the
same retry rules as the publishers. Whatever is still undelivered is written as fallback lines again
(stderr, or ``--failed FILE``) so it can be replayed later. Exit status: 0 all delivered, 1 some
not, 2 bad usage or unreadable input.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lambda_api.publishers.delivery import KinesisDelivery, KinesisRecord, kinesis_client
from lambda_api.publishers.fallback import FallbackLog, read_fallback_lines
from lambda_api.settings import ApiSettingsError, load_settings
from pulse_contract.request_event import check_replayable

DAY_S = 86_400


@dataclass
class ReplayReport:
    delivered: int = 0
    undelivered: int = 0
    duplicates: int = 0
    malformed: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    refusals: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        return (
            f"delivered={self.delivered} undelivered={self.undelivered} "
            f"duplicates={self.duplicates} malformed={self.malformed} refused={self.refused}"
        )


@dataclass(frozen=True)
class EventWindow:
    """The ``ts`` a replayed event may carry: from ``max_age_s`` before now to ``max_ahead_s`` after."""

    now_ms: int
    max_age_s: float = 7 * DAY_S
    max_ahead_s: float = 300.0

    def check(self, record: KinesisRecord) -> str | None:
        return check_replayable(
            record.data, record.partition_key, self.now_ms, int(self.max_age_s * 1000), int(self.max_ahead_s * 1000)
        )


def collect(
    lines: Iterable[str],
    stream: str | None,
    report: ReplayReport,
    window: EventWindow | None = None,
) -> dict[str, list[KinesisRecord]]:
    """Sound records to replay, grouped by target stream, first occurrence of each event id kept.

    ``stream`` is the target; None means the stream each line names (``--trust-line-stream``).
    Records that are not sound events within ``window`` (default: now) are counted as refused.
    """
    window = window if window is not None else EventWindow(time.time_ns() // 1_000_000)
    by_stream: dict[str, list[KinesisRecord]] = {}
    seen: set[tuple[str, str]] = set()
    for entry in read_fallback_lines(lines):
        if isinstance(entry, ValueError):
            report.malformed += 1
            report.errors.append(str(entry))
            continue
        refusal = window.check(entry.record)
        if refusal is not None:
            report.refused += 1
            report.refusals[refusal.split(" (")[0]] += 1
            continue
        target = stream or entry.stream
        if (target, entry.record.partition_key) in seen:
            report.duplicates += 1
            continue
        seen.add((target, entry.record.partition_key))
        by_stream.setdefault(target, []).append(entry.record)
    return by_stream


def replay(
    by_stream: dict[str, list[KinesisRecord]],
    client: Any,
    budget_s: float,
    failed: FallbackLog,
    report: ReplayReport,
    backoff_base_s: float = 0.05,
    backoff_max_s: float = 2.0,
) -> None:
    """Deliver each stream's records; write what is still undelivered to ``failed``."""
    for stream, records in by_stream.items():
        delivery = KinesisDelivery(stream, client, backoff_base_s=backoff_base_s, backoff_max_s=backoff_max_s)
        undelivered = delivery.deliver(records, budget_s)
        failed.write(stream, undelivered)
        report.delivered += len(records) - len(undelivered)
        report.undelivered += len(undelivered)


def _lines(paths: Sequence[str], stack: ExitStack) -> Iterator[str]:
    for path in paths:
        if path == "-":
            yield from sys.stdin
        else:
            yield from stack.enter_context(Path(path).open(encoding="utf-8", errors="replace"))  # noqa: SIM115


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lambda_api.fallback_replay", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("logfiles", nargs="+", metavar="LOGFILE", help="log file(s) with fallback lines; - for stdin")
    parser.add_argument("--stream", help="the stream to deliver to (default: PULSE_STREAM_NAME)")
    parser.add_argument(
        "--trust-line-stream",
        action="store_true",
        help="deliver each event to the stream its line names (only for logs nobody else can write to)",
    )
    parser.add_argument(
        "--max-age-h", type=float, default=7 * 24.0, help="refuse events whose ts is older (default: 168 h)"
    )
    parser.add_argument(
        "--max-ahead-s",
        type=float,
        default=300.0,
        help="refuse events whose ts is further in the future (default: 300)",
    )
    parser.add_argument("--budget-s", type=float, default=60.0, help="time for delivery and retries, per stream")
    parser.add_argument("--failed", default="stderr", help="where still-undelivered events go (default: stderr)")
    parser.add_argument("--dry-run", action="store_true", help="count what would be replayed, deliver nothing")
    args = parser.parse_args(argv)
    try:
        # Client timeouts and backoff come from the same PULSE_* settings as the API's.
        settings = load_settings(publisher="off")
    except ApiSettingsError as error:
        print(f"replay: {error}", file=sys.stderr)
        return 2
    stream = args.stream or settings.stream_name
    if args.trust_line_stream:
        stream = args.stream  # an explicit --stream still wins over the lines
    elif not stream:
        print("replay: give --stream (or PULSE_STREAM_NAME), or --trust-line-stream", file=sys.stderr)
        return 2
    report = ReplayReport()
    window = EventWindow(time.time_ns() // 1_000_000, args.max_age_h * 3600, args.max_ahead_s)
    try:
        with ExitStack() as stack:
            by_stream = collect(_lines(args.logfiles, stack), stream, report, window)
    except OSError as error:
        print(f"replay: cannot read {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    for message in report.errors[:10]:
        print(f"replay: skipped malformed fallback {message}", file=sys.stderr)
    for reason, count in sorted(report.refusals.items()):
        print(f"replay: refused {count} event(s): {reason}", file=sys.stderr)
    if args.dry_run:
        counts = " ".join(f"{name}={len(records)}" for name, records in by_stream.items())
        print(f"replay: would deliver {counts or 'nothing'}; {report.summary()}")
        return 0
    failed = FallbackLog(args.failed)
    try:
        if by_stream:
            client = kinesis_client(max(settings.connect_timeout_s, 1.0), max(settings.read_timeout_s, 5.0))
            replay(by_stream, client, args.budget_s, failed, report, settings.backoff_base_s, settings.backoff_max_s)
    finally:
        failed.close()
    print(f"replay: {report.summary()}")
    return 0 if report.undelivered == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
