"""The deployed path on the emulator: Flink's Kinesis source → the job → Flink's DynamoDB sink.

Records are put on a fresh stream with boto3; anomalies are read back from the table. The first
job run serves several assertions (the spike item, the malformed-record metric, the job going on
after them); a second run over the same stream checks that a replay overwrites, not duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flink_app.sinks import REJECTED_METRIC
from pulse_local.emulator import Emulator, create_anomaly_table, create_stream
from tests.conftest import unique_name
from tests.flink.conftest import MALFORMED_RECORDS, START_MS, incident, poll, running_job, small_config

pytestmark = [pytest.mark.flink, pytest.mark.slow, pytest.mark.integration]

FIRST, SECOND = "/api/r1/{item_id}", "/api/r2/{item_id}"


def put(emulator: Emulator, stream_arn: str, records: Iterable[Any]) -> None:
    """PutRecords in batches of 500; malformed strings go on the stream as they are."""
    kinesis = emulator.client("kinesis")
    batch: list[dict[str, Any]] = []
    for n, record in enumerate(records):
        data = record if isinstance(record, str) else json.dumps(record)
        batch.append(
            {
                "Data": data.encode(),
                "PartitionKey": str(record.get("id", n)) if isinstance(record, dict) else f"bad-{n}",
            }
        )
        if len(batch) == 500:
            assert kinesis.put_records(StreamARN=stream_arn, Records=batch)["FailedRecordCount"] == 0
            batch = []
    if batch:
        assert kinesis.put_records(StreamARN=stream_arn, Records=batch)["FailedRecordCount"] == 0


def items(emulator: Emulator, table: str) -> list[dict[str, Any]]:
    dynamodb = emulator.client("dynamodb")
    found: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = dynamodb.scan(**kwargs)
        found += [{key: next(iter(value.values())) for key, value in item.items()} for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@dataclass
class FirstRun:
    emulator: Emulator
    stream_arn: str
    table: str
    config_file: Path
    first_items: list[dict[str, Any]]
    rejected: int
    items_after_more_traffic: list[dict[str, Any]]
    status_after_more_traffic: str


@pytest.fixture(scope="module")
def first_run(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory, connector_jar: Path) -> FirstRun:
    """A fresh stream and table; the job reads the stream from its start, then more traffic comes."""
    stream_arn = create_stream(emulator, unique_name("pulse-flink"), shards=1)
    table = unique_name("pulse-anomalies")
    create_anomaly_table(emulator, table)
    first: list[Any] = incident(START_MS, 60, FIRST, spike_at_s=40)
    for offset, record in enumerate(MALFORMED_RECORDS):
        first.insert(50 + offset * 100, record)
    put(emulator, stream_arn, first)
    groups = [
        {
            "PropertyGroupId": "pulse.source",
            "PropertyMap": {
                "stream.arn": stream_arn,
                "aws.endpoint": emulator.endpoint,
                "init.position": "TRIM_HORIZON",
            },
        },
        {
            "PropertyGroupId": "pulse.sink",
            "PropertyMap": {"table.name": table, "aws.endpoint": emulator.endpoint, "aws.region": emulator.region},
        },
    ]
    config_file = tmp_path_factory.mktemp("flink") / "properties.json"
    config_file.write_text(json.dumps(groups))
    with running_job(small_config(*groups)) as flink:
        first_items = poll(lambda: [i for i in items(emulator, table) if i["subject"] == FIRST], 180, "the spike item")
        rejected = poll(
            lambda: flink.metric(REJECTED_METRIC) >= len(MALFORMED_RECORDS) and flink.metric(REJECTED_METRIC),
            60,
            "the rejected-records metric",
        )
        put(emulator, stream_arn, incident(START_MS + 60_000, 60, SECOND, spike_at_s=40))
        later = poll(
            lambda: [i for i in items(emulator, table) if i["subject"] == SECOND] and items(emulator, table),
            120,
            "the second spike item",
        )
        status = flink.status()
    return FirstRun(emulator, stream_arn, table, config_file, first_items, rejected, later, status)


def test_a_kinesis_spike_becomes_a_dynamodb_item_with_deterministic_keys(first_run: FirstRun) -> None:
    [item] = [i for i in first_run.first_items if i["kind"] == "spike"]
    assert item["pk"] == f"route#{FIRST}"
    assert item["sk"].endswith("#spike") and item["sk"][:10] == "2026-01-01" == item["day"]
    assert float(item["observed"]) > 3 * float(item["expected"])
    assert int(item["ttl"]) > int(item["detected_at"]) // 1000


def test_malformed_records_are_counted_and_the_job_goes_on(first_run: FirstRun) -> None:
    assert first_run.rejected == len(MALFORMED_RECORDS)
    assert any(i["subject"] == SECOND and i["kind"] == "spike" for i in first_run.items_after_more_traffic)
    assert first_run.status_after_more_traffic == "RUNNING"


def test_replaying_the_same_stream_overwrites_instead_of_duplicating(first_run: FirstRun) -> None:
    # given: the items the first run wrote
    before = {(i["pk"], i["sk"]): int(i["detected_at"]) for i in items(first_run.emulator, first_run.table)}
    assert before

    # when: the job reads the same stream again from its start
    groups = json.loads(first_run.config_file.read_text())
    with running_job(small_config(*groups)):

        def all_rewritten() -> dict[tuple[str, str], int] | None:
            now = {(i["pk"], i["sk"]): int(i["detected_at"]) for i in items(first_run.emulator, first_run.table)}
            return now if all(now.get(key, 0) > at for key, at in before.items()) else None

        after = poll(all_rewritten, 180, "every item to be written again")

    # then: the same keys, each overwritten, none added
    assert set(after) == set(before)
