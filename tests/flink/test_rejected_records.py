"""Every kind of bad record through the deployed path's real Kinesis source (the emulator), and the
one parse of each record.

A stream carries usable events with one record of each way a record can be unusable among them,
a few events delivered twice, and events whose windows have closed. The job must set each bad
record aside with its reason (per-reason metrics), count the late ones, keep one copy of a
duplicate, and parse every record it read exactly once (the parse function's own counter): nothing
is dropped without being counted.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flink_app.config import JobConfig
from flink_app.metrics import LATE, PARSED, REJECTED
from pulse_local.emulator import Emulator, create_anomaly_table, create_stream
from tests.conftest import unique_name
from tests.flink.conftest import START_MS, incident, job_groups, poll, running_job, small_config
from tests.streams import put

pytestmark = [pytest.mark.flink, pytest.mark.slow, pytest.mark.integration]

MAX_RECORD_CHARS = 2_000


REMOVED = object()


def usable(at: int, n: int, **changes: Any) -> dict[str, Any]:
    """A usable event at ``at`` (epoch ms), with ``changes`` (REMOVED drops a field)."""
    event = {
        "v": 1,
        "id": f"kind-{n}",
        "ts": at,
        "method": "GET",
        "route": "/x",
        "path": "/x",
        "status": 200,
        "latency_ms": 1.5,
        "client_ip": "10.9.9.9",
    }
    event.update(changes)
    return {key: value for key, value in event.items() if value is not REMOVED}


def bad_records(ts: int) -> list[tuple[str, str]]:
    """(the reason the job gives, the record as it goes on the stream); usable times are ``ts``."""

    def record(n: int, **changes: Any) -> str:
        return json.dumps(usable(ts, n, **changes))

    return [
        ("oversized", record(1, route="/x" * MAX_RECORD_CHARS)),
        ("oversized", "x" * (MAX_RECORD_CHARS + 1)),  # too long is said before not JSON
        ("bad_json", "not json"),
        ("bad_json", '"a string"'),
        ("bad_json", "[1, 2, 3]"),
        ("bad_json", "42"),
        ("bad_json", record(2)[:-1]),  # cut short
        ("bad_json", record(3).replace('"route"', "'route'")),
        ("bad_json", '{"id": NaN}'),
        ("bad_json", '{"v": 1, "x": 1e999999999999}'),  # a number Flink's JSON reading cannot hold
        ("bad_ts", record(4, ts=REMOVED)),
        ("bad_ts", record(5, ts="yesterday")),
        ("bad_ts", record(6, ts=None)),
        ("bad_ts", record(7, ts=631_152_000_000)),  # 1990: before 2000
        ("bad_ts", record(8, ts=7_258_118_400_000)),  # 2200: after 2100
        ("bad_ts", '{"ts": "yesterday", "route": "/x"}'),
        ("missing_or_mistyped_field", json.dumps({"v": 1, "ts": ts})),
        ("missing_or_mistyped_field", record(9, route=REMOVED)),
        ("missing_or_mistyped_field", record(10, id=None)),
        ("missing_or_mistyped_field", record(11, status="teapot")),
        ("missing_or_mistyped_field", record(12, latency_ms="fast")),
        ("missing_or_mistyped_field", record(13, client_ip={"ip": "10.0.0.1"})),
        ("missing_or_mistyped_field", record(14, route=["/x"])),
        ("out_of_range_field", record(15, status=700)),
        ("out_of_range_field", record(16, status=99)),
        ("out_of_range_field", record(17, latency_ms=-1)),
        ("out_of_range_field", record(18, id="i" * 129)),
        ("out_of_range_field", record(19, route="")),
        ("out_of_range_field", record(20, client_ip="")),
    ]


def odd_but_usable(ts: int) -> list[str]:
    """Usable records written oddly, read as JSON_VALUE reads them: a number as text, a member given
    twice (the last counts), text after the object, a non-ASCII route."""
    return [
        json.dumps(usable(ts, 30, status="404")),
        json.dumps(usable(ts, 31)).replace('"v": 1', '"route": 7, "v": 1'),
        json.dumps(usable(ts, 32)) + " trailing",
        json.dumps(usable(ts, 33, route="/caf\u00e9"), ensure_ascii=False),
    ]


def test_every_kind_of_bad_record_read_from_kinesis_is_counted_with_its_reason(
    emulator: Emulator, connector_jar: Path
) -> None:
    # given a stream of usable traffic with a block of bad records (each kind), odd but usable records
    # and events delivered twice among it, all dated with their neighbours (no record moves the
    # watermark), then events sent after their windows closed
    good: list[Any] = incident(START_MS, 30, "/api/r1/{item_id}", spike_at_s=20)
    bad = bad_records(good[299]["ts"])
    records: list[Any] = [*good[:300], *(record for _, record in bad), *good[300:]]
    records[100:100] = odd_but_usable(good[99]["ts"])
    records[500:500] = good[450:455]  # a client retry: the same ids again
    late = [{**good[n], "id": f"late-{n}", "ts": START_MS + 1_000 + n} for n in range(3)]
    stream_arn = create_stream(emulator, unique_name("pulse-bad-kinds"), shards=1)
    table = unique_name("pulse-anomalies")
    create_anomaly_table(emulator, table)
    put(emulator, stream_arn, records)

    # when the job reads it from its start, then the late events
    with running_job(kinesis_config(emulator, stream_arn, table)) as flink:
        poll(lambda: flink.metric(PARSED) >= len(records), 180, "every record to be parsed")
        poll(lambda: flink.metric(REJECTED) >= len(bad), 60, "the rejected-records metric")
        put(emulator, stream_arn, late)
        poll(lambda: flink.metric(LATE) >= len(late), 60, "the late-records metric")
        parsed, rejected, late_count = flink.metric(PARSED), flink.metric(REJECTED), flink.metric(LATE)
        by_reason = {reason: flink.metric(f"reason.{reason}.{REJECTED}") for reason, _ in bad}
        status = flink.status()

    # then each bad record is set aside once with its reason, the late ones are counted apart, the
    # odd ones and the retries are not rejected, every record read was parsed once, the job runs on
    assert by_reason == Counter(reason for reason, _ in bad)
    assert rejected == len(bad)
    assert late_count == len(late)
    assert parsed == len(records) + len(late)
    assert status == "RUNNING"


def kinesis_config(emulator: Emulator, stream_arn: str, table: str) -> JobConfig:
    """Test-sized windows, a small record limit; parallelism 1 and an idle timeout longer than the
    test, so that what the job computes depends on the records alone."""
    config = small_config(*job_groups(emulator, stream_arn, table))
    return config.model_copy(
        update={
            "windows": config.windows.model_copy(update={"idle_timeout_s": 3600, "max_record_bytes": MAX_RECORD_CHARS}),
            "job": config.job.model_copy(update={"parallelism": 1}),
        }
    )
