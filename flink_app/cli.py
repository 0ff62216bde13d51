"""``python -m flink_app run|backtest``: the streaming job, or the same detection over a file.

``run`` reads the configuration (``--config FILE``, else Managed Flink's properties file) and
runs until cancelled; Managed Flink's ``main.py`` is the same call. ``backtest`` overrides the
source with a bounded JSON-lines file, collects the anomalies, writes one per line (sorted by
``pk``, ``sk``) and prints a summary.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from flink_app.config import ConfigError, JobConfig, SinkConfig, SinkKind, SourceConfig, SourceKind
from pulse_contract import Anomaly

LOG = logging.getLogger("flink_app")


@dataclass
class BacktestResult:
    """What a backtest produced; the summary is printed from it."""

    anomalies: list[Anomaly]
    elapsed_s: float
    by_kind: Counter[str] = field(default_factory=Counter)


def backtest_config(config: JobConfig, input_path: Path, output_path: Path) -> JobConfig:
    """``config`` with a bounded file source and a JSON-lines sink."""
    source = SourceConfig.model_validate({"kind": SourceKind.FILESYSTEM, "path": str(input_path.resolve())})
    sink = SinkConfig.model_validate({"kind": SinkKind.JSONL, "path": str(output_path.resolve())})
    return config.model_copy(update={"source": source, "sink": sink})


def run_backtest(
    config: JobConfig,
    input_path: Path,
    output_path: Path,
    parallelism: int | None = None,
    on_anomaly: Callable[[Anomaly], None] | None = None,
) -> BacktestResult:
    """Run the detection over a bounded file and write ``output_path`` (one anomaly per line)."""
    from flink_app import job

    if not input_path.exists():
        raise ConfigError(f"backtest input {input_path} does not exist")
    config = backtest_config(config, input_path, output_path)
    started = time.monotonic()
    anomalies = []
    for anomaly in job.collect_anomalies(job.build(config, bounded=True, parallelism=parallelism)):
        anomalies.append(anomaly)
        if on_anomaly:
            on_anomaly(anomaly)
    anomalies.sort(key=lambda a: (a.pk, a.sk))
    write_jsonl(output_path, (a.to_record() for a in anomalies))
    return BacktestResult(anomalies, time.monotonic() - started, Counter(a.kind for a in anomalies))


def write_jsonl(path: Path, records: Iterable[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for record in records:
            out.write(json.dumps(record, sort_keys=True) + "\n")


def print_summary(result: BacktestResult, output_path: Path) -> None:
    """The summary table (anomalies per kind and subject, first and last seen), then where they went."""
    from flink_app import report

    report.print_summary(result.anomalies, title="Backtest")
    print(f"backtest: {len(result.anomalies)} anomalies in {result.elapsed_s:.1f} s -> {output_path}")


def run_backtest_with_progress(
    config: JobConfig, input_path: Path, output_path: Path, parallelism: int | None = None
) -> BacktestResult:
    """:func:`run_backtest` with a progress display: elapsed time and anomalies found so far."""
    from flink_app.report import BacktestProgress

    with BacktestProgress(total=None, unit="", description="backtest") as progress:
        return run_backtest(
            config,
            input_path,
            output_path,
            parallelism,
            on_anomaly=lambda _: progress.update(anomalies=progress.anomalies + 1),
        )


def run_streaming(config: JobConfig) -> None:
    from flink_app import job

    config.check_runnable()
    job.execute(job.build(config, bounded=False))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m flink_app", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the streaming job (Kinesis -> DynamoDB by default)")
    run.add_argument("--config", type=Path, help="property groups JSON (default: Managed Flink's file)")
    backtest = commands.add_parser("backtest", help="run the detection over a JSON-lines file of events")
    backtest.add_argument("--input", type=Path, required=True, help="events, one JSON object per line")
    backtest.add_argument("--output", type=Path, required=True, help="anomalies, one JSON object per line")
    backtest.add_argument("--config", type=Path, help="property groups JSON (windows, detectors)")
    backtest.add_argument("--parallelism", type=int, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        config = JobConfig.load(args.config)
        if args.command == "backtest":
            result = run_backtest_with_progress(config, args.input, args.output, parallelism=args.parallelism)
            print_summary(result, args.output)
        else:
            run_streaming(config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
