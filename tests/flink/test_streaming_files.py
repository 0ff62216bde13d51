"""The streaming job on a monitored directory: windows, detection, the rejected branch, timers.

Runs without AWS; the Kinesis → DynamoDB path is in test_kinesis_dynamodb.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flink_app.sinks import REJECTED_METRIC
from tests.flink.conftest import MALFORMED_RECORDS, START_MS, incident, poll, running_job, small_config

pytestmark = [pytest.mark.flink, pytest.mark.slow]

FIRST, SECOND = "/api/r1/{item_id}", "/api/r2/{item_id}"


def write_lines(path: Path, items: list[Any]) -> None:
    scratch = path.with_name("." + path.name)  # the source ignores hidden files until the rename
    with scratch.open("w") as out:
        for item in items:
            out.write((item if isinstance(item, str) else json.dumps(item)) + "\n")
    scratch.rename(path)


def anomalies_in(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for part in sorted(directory.rglob("part-*")) if not part.name.startswith(".")
            for line in part.read_text().splitlines()]


def test_a_running_job_detects_spikes_and_sets_malformed_records_aside(tmp_path: Path) -> None:
    # given: a job watching an empty directory
    inbox, outbox = tmp_path / "in", tmp_path / "out"
    inbox.mkdir()
    config = small_config(
        {"PropertyGroupId": "pulse.source",
         "PropertyMap": {"kind": "filesystem", "path": str(inbox), "monitor.interval.s": "1"}},
        {"PropertyGroupId": "pulse.sink", "PropertyMap": {"kind": "jsonl", "path": str(outbox)}},
    )
    with running_job(config) as flink:
        # when: a file with a spike and malformed lines arrives
        first: list[Any] = incident(START_MS, 60, FIRST, spike_at_s=40)
        for offset, record in enumerate(MALFORMED_RECORDS):
            first.insert(50 + offset * 100, record)
        write_lines(inbox / "001.jsonl", first)

        # then: the spike is written and every malformed line counted
        found = poll(lambda: [a for a in anomalies_in(outbox) if a["subject"] == FIRST], 120, "the first spike")
        assert {a["kind"] for a in found} == {"spike"}
        poll(lambda: flink.metric(REJECTED_METRIC) >= len(MALFORMED_RECORDS), 60, "the rejected-records metric")

        # when: more traffic follows, with a spike on another route
        write_lines(inbox / "002.jsonl", incident(START_MS + 60_000, 60, SECOND, spike_at_s=40))

        # then: the job kept running after the malformed lines and finds that one too
        poll(lambda: [a for a in anomalies_in(outbox) if a["subject"] == SECOND], 120, "the second spike")
        assert flink.status() == "RUNNING"
        assert flink.metric(REJECTED_METRIC) == len(MALFORMED_RECORDS)

