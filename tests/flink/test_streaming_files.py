"""The streaming job on a monitored directory reports what backtest reports on the same input.

Runs without AWS (the Kinesis -> DynamoDB path is in test_kinesis_dynamodb.py). The labelled input
arrives as two files, the first ending in malformed lines. What may legitimately differ: a stream has
no end, so once its input stops and it has idled for ``idle.timeout.s + watermark.delay.s`` of wall
time, it reports what an idle stream means (busy routes go silent, open incidents end). Such records
are dated after the last watermark of the input; every record up to it must be backtest's, exactly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flink_app.config import JobConfig
from flink_app.metrics import REJECTED as REJECTED_METRIC
from tests.flink.conftest import FlinkBacktest, LabelledInput, comparable, poll, running_job

pytestmark = [pytest.mark.flink, pytest.mark.slow]


def anomalies_in(directory: Path) -> list[dict[str, Any]]:
    """The records of every committed part file (in-progress files are hidden until a checkpoint)."""
    return [
        json.loads(line)
        for part in sorted(directory.rglob("part-*"))
        if not part.name.startswith(".")
        for line in part.read_text().splitlines()
    ]


def after_the_input(record: dict[str, Any]) -> bool:
    """What an idle stream may add beyond the input: a silence, or the end of an incident."""
    return record["phase"] == "end" or (record["kind"] == "silence" and record["phase"] == "open")


def test_the_streaming_job_reports_exactly_what_backtest_reports(
    labelled_input: LabelledInput, flink_backtest: FlinkBacktest, tmp_path: Path
) -> None:
    # given a streaming job watching an empty directory (one reader, so the files are read in order)
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    groups = [
        *labelled_input.config.to_property_groups(),
        {
            "PropertyGroupId": "pulse.source",
            "PropertyMap": {"kind": "filesystem", "path": str(inbox), "monitor.interval.s": "1"},
        },
        {"PropertyGroupId": "pulse.sink", "PropertyMap": {"kind": "jsonl", "path": str(outbox)}},
    ]
    for group in groups:
        if group["PropertyGroupId"] == "pulse.job":
            group["PropertyMap"]["parallelism"] = "1"
    config = JobConfig.from_property_groups(groups)
    first_file = labelled_input.lines.index(next(line for line in labelled_input.lines if not line.startswith("{")))
    first = labelled_input.lines[: first_file + labelled_input.malformed]
    expected = comparable(flink_backtest.result.anomalies)
    last_watermark = labelled_input.last_watermark

    with running_job(config) as flink:
        # when the first half arrives, then (once read to its malformed end) the second
        labelled_input.write(inbox / "001.jsonl", first)
        poll(lambda: flink.metric(REJECTED_METRIC) >= labelled_input.malformed, 120, "the first file to be read")
        labelled_input.write(inbox / "002.jsonl", labelled_input.lines[len(first) :])

        def reported() -> list[dict[str, Any]] | None:
            found = [r for r in anomalies_in(outbox) if r["window_end"] <= last_watermark]
            return found if len(found) >= len(expected) else None

        found = poll(reported, 180, f"{len(expected)} records up to the last watermark")

        # then up to the input's last watermark it wrote exactly backtest's records
        assert comparable(found) == expected
        # and whatever it wrote beyond is what idling means, never a judged window
        beyond = [r for r in anomalies_in(outbox) if r["window_end"] > last_watermark]
        assert [r for r in beyond if not after_the_input(r)] == []
        # and it counted the malformed records, set them aside and kept running
        assert flink.metric(REJECTED_METRIC) == labelled_input.malformed
        assert flink.status() == "RUNNING"
