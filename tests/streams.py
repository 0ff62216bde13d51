"""Reading what landed on an emulated Kinesis stream (test support)."""

from __future__ import annotations

import json
import time
from typing import Any

from pulse_local.emulator import Emulator


def read_records(emulator: Emulator, stream_name: str) -> list[dict[str, Any]]:
    """Every record on every shard of the stream, from the start: [{"data": bytes, "partition_key": str}]."""
    kinesis = emulator.client("kinesis")
    records: list[dict[str, Any]] = []
    for shard in kinesis.list_shards(StreamName=stream_name)["Shards"]:
        iterator = kinesis.get_shard_iterator(
            StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            records.extend({"data": r["Data"], "partition_key": r["PartitionKey"]} for r in page["Records"])
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return records


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
