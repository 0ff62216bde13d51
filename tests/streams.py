"""Reading what landed on an emulated Kinesis stream (test support)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from pulse_local.emulator import Emulator, read_records


def read_events(emulator: Emulator, stream_name: str) -> list[dict[str, Any]]:
    """The stream's records decoded as JSON events."""
    return [json.loads(record["data"]) for record in read_records(emulator, stream_name)]


def wait_for_events(emulator: Emulator, stream_name: str, count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """Poll until at least ``count`` events are on the stream (or the timeout passes); return them."""
    deadline = time.monotonic() + timeout_s
    while True:
        events = read_events(emulator, stream_name)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def put(emulator: Emulator, stream_arn: str, records: Iterable[Any]) -> None:
    """PutRecords in batches of 500, in order; malformed strings go on the stream as they are."""
    kinesis = emulator.client("kinesis")
    batch: list[dict[str, Any]] = []

    def send() -> None:
        assert kinesis.put_records(StreamARN=stream_arn, Records=batch)["FailedRecordCount"] == 0
        batch.clear()

    for n, record in enumerate(records):
        data = record if isinstance(record, str) else json.dumps(record)
        key = str(record.get("id", n)) if isinstance(record, dict) else f"bad-{n}"
        batch.append({"Data": data.encode(), "PartitionKey": key})
        if len(batch) == 500:
            send()
    if batch:
        send()
