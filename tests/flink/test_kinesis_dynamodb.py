"""The deployed path on the emulator: Flink's Kinesis source → the job → Flink's DynamoDB sink.

Records are put on a fresh stream with boto3; anomalies are read back from the table. One stream
serves the module:

* the first run reads it from its start: a spike becomes an item; malformed, oversized and late
  records are counted (separate metrics) and the job goes on; a second incident follows;
* a replay (a new job over the same stream into the same table) overwrites every item, adds none;
* a run that crashes in the middle of the incident and restarts from its last checkpoint, fed the
  same records in the same order on a stream of its own, ends with exactly the first run's items:
  same keys, same figures (an event counted twice would change a window's count and every figure
  after it).

These jobs run at parallelism 1 on one shard, and their idle timeout is longer than any test: what
they compute is then a function of the records and their order alone (the idle-stream estimate of
event time from wall time would add records that depend on how long a test waits).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flink_app.config import JobConfig
from flink_app.metrics import LATE as LATE_METRIC
from flink_app.metrics import REJECTED as REJECTED_METRIC
from flink_app.metrics import WINDOWS_EVALUATED
from pulse_local.emulator import Emulator, create_anomaly_table, create_stream
from tests.conftest import unique_name
from tests.flink.conftest import MALFORMED_RECORDS, START_MS, incident, job_groups, poll, running_job, small_config
from tests.streams import put

pytestmark = [pytest.mark.flink, pytest.mark.slow, pytest.mark.integration]

FIRST, SECOND = "/api/r1/{item_id}", "/api/r2/{item_id}"
WALL_CLOCK_FIELDS = ("detected_at", "ttl")


def items(emulator: Emulator, table: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Every item of the table by (pk, sk), attribute values as strings."""
    dynamodb = emulator.client("dynamodb")
    found: dict[tuple[str, str], dict[str, Any]] = {}
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = dynamodb.scan(**kwargs)
        for item in page["Items"]:
            values = {key: next(iter(value.values())) for key, value in item.items()}
            found[(values["pk"], values["sk"])] = values
        if "LastEvaluatedKey" not in page:
            return found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def settled(emulator: Emulator, table: str, quiet_s: float = 6.0, timeout_s: float = 120) -> dict[Any, Any]:
    """The table's items once nothing has changed for ``quiet_s`` (sink flushes every second)."""
    deadline = time.monotonic() + timeout_s
    last, since = items(emulator, table), time.monotonic()
    while time.monotonic() - since < quiet_s:
        if time.monotonic() > deadline:
            pytest.fail(f"table {table} still changing after {timeout_s:.0f} s")
        time.sleep(1)
        now = items(emulator, table)
        if now != last:
            last, since = now, time.monotonic()
    return last


def without_wall_clock(found: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {key: {k: v for k, v in item.items() if k not in WALL_CLOCK_FIELDS} for key, item in found.items()}


def late_copies(events: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """Valid events dated in the first seconds, sent once the watermark is far past them."""
    return [{**events[n], "id": f"late-{n}", "ts": START_MS + 5_000 + n} for n in range(count)]


@dataclass
class Traffic:
    """The records of the module's runs, in the order they go on a stream."""

    first: list[Any]  # the first incident (a spike on FIRST), malformed records among it
    late: list[dict[str, Any]]  # sent after the first incident was read
    second: list[dict[str, Any]]  # a spike on SECOND, a minute later


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    first: list[Any] = incident(START_MS, 60, FIRST, spike_at_s=40)
    for offset, record in enumerate(MALFORMED_RECORDS):
        first.insert(50 + offset * 100, record)
    second = [{**e, "id": f"second-{e['id']}"} for e in incident(START_MS + 60_000, 60, SECOND, spike_at_s=40)]
    events = [record for record in first if isinstance(record, dict)]
    return Traffic(first, late_copies(events, 3), second)


def job_config(groups: list[dict[str, Any]], checkpoint_interval_s: int | None = None) -> JobConfig:
    """Test-sized windows, parallelism 1 and an idle timeout longer than any test (module docstring)."""
    config = small_config(*groups)
    runtime = {"parallelism": 1}
    if checkpoint_interval_s:
        runtime["checkpoint_interval_s"] = checkpoint_interval_s
    return config.model_copy(
        update={
            "windows": config.windows.model_copy(update={"idle_timeout_s": 3600}),
            "job": config.job.model_copy(update=runtime),
        }
    )


@dataclass
class FirstRun:
    emulator: Emulator
    stream_arn: str
    table: str
    groups: list[dict[str, Any]]
    first_items: dict[Any, dict[str, Any]]
    rejected: int
    late: int
    status_after_more_traffic: str
    final_items: dict[Any, dict[str, Any]]


@pytest.fixture(scope="module")
def first_run(emulator: Emulator, traffic: Traffic, connector_jar: Path) -> FirstRun:
    """A fresh stream and table; the job reads the stream from its start, then more traffic comes."""
    stream_arn = create_stream(emulator, unique_name("pulse-flink"), shards=1)
    table = unique_name("pulse-anomalies")
    create_anomaly_table(emulator, table)
    put(emulator, stream_arn, traffic.first)
    groups = job_groups(emulator, stream_arn, table)
    with running_job(job_config(groups)) as flink:
        first_items = poll(
            lambda: {k: i for k, i in items(emulator, table).items() if i["subject"] == FIRST}, 180, "the spike item"
        )
        rejected = poll(
            lambda: flink.metric(REJECTED_METRIC) >= len(MALFORMED_RECORDS) and flink.metric(REJECTED_METRIC),
            60,
            "the rejected-records metric",
        )
        put(emulator, stream_arn, [*traffic.late, *traffic.second])
        late = poll(lambda: flink.metric(LATE_METRIC), 60, "the late-records metric")
        poll(lambda: any(i["subject"] == SECOND for i in items(emulator, table).values()), 120, "the second spike")
        final = settled(emulator, table)
        status = flink.status()
        rejected, late = flink.metric(REJECTED_METRIC), flink.metric(LATE_METRIC)
    return FirstRun(emulator, stream_arn, table, groups, first_items, rejected, late, status, final)


def test_a_kinesis_spike_becomes_a_dynamodb_item_with_deterministic_keys(first_run: FirstRun) -> None:
    [item] = [i for i in first_run.first_items.values() if i["kind"] == "spike"]
    assert item["pk"] == f"route#{FIRST}"
    assert item["sk"].endswith("#spike") and item["sk"][:10] == "2026-01-01" == item["day"]
    assert float(item["observed"]) > 3 * float(item["expected"])
    assert int(item["ttl"]) > int(item["detected_at"]) // 1000


def test_malformed_oversized_and_late_records_are_counted_apart_and_the_job_goes_on(first_run: FirstRun) -> None:
    assert first_run.rejected == len(MALFORMED_RECORDS)  # bad JSON, types, fields, an oversized record
    assert first_run.late == 3  # valid events whose windows had closed: dropped by the windows, counted
    assert any(i["subject"] == SECOND and i["kind"] == "spike" for i in first_run.final_items.values())
    assert first_run.status_after_more_traffic == "RUNNING"


def test_replaying_the_same_stream_overwrites_instead_of_duplicating(first_run: FirstRun) -> None:
    # given: the items the first run wrote
    before = first_run.final_items
    assert before

    # when: a new job reads the same stream again from its start
    with running_job(job_config(first_run.groups)):

        def all_rewritten() -> bool:
            now = items(first_run.emulator, first_run.table)
            return all(int(now[key]["detected_at"]) > int(item["detected_at"]) for key, item in before.items())

        poll(all_rewritten, 180, "every item to be written again")
        after = settled(first_run.emulator, first_run.table)

    # then: the same keys, each overwritten with the same figures, none added
    assert set(after) == set(before)
    assert without_wall_clock(after) == without_wall_clock(before)


def test_a_job_restarted_from_its_checkpoint_mid_incident_ends_as_an_uninterrupted_run(
    first_run: FirstRun, traffic: Traffic, tmp_path: Path
) -> None:
    # given: the first run's records on a stream of their own, fed in three parts
    emulator = first_run.emulator
    stream_arn = create_stream(emulator, unique_name("pulse-restart"), shards=1)
    table = unique_name("pulse-anomalies")
    create_anomaly_table(emulator, table)
    groups = job_groups(emulator, stream_arn, table)
    before_spike = [r for r in traffic.first if isinstance(r, str) or r["ts"] < START_MS + 30_000]
    cut = len(before_spike)
    mid_spike = [r for r in traffic.first[cut:] if isinstance(r, str) or r["ts"] < START_MS + 45_000]
    rest = traffic.first[cut + len(mid_spike) :]
    assert before_spike + mid_spike + rest == traffic.first
    checkpoints = {
        "execution.checkpointing.dir": (tmp_path / "checkpoints").as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
    }
    # Checkpoints only when the test asks for one: the crash then lands well after the last one.
    config = job_config(groups, checkpoint_interval_s=3600)

    # when: a checkpoint is taken before the spike, the job reads into the spike (it reports it)...
    put(emulator, stream_arn, before_spike)
    with running_job(config, checkpoints) as crashing:
        poll(lambda: crashing.metric(WINDOWS_EVALUATED) > 0, 120, "the first windows")
        evaluated = poll(_stable(lambda: crashing.metric(WINDOWS_EVALUATED)), 60, "the first part to be read")
        checkpoint = crashing.checkpoint()
        put(emulator, stream_arn, mid_spike)
        poll(lambda: any(i["kind"] == "spike" for i in items(emulator, table).values()), 120, "the spike item")
        assert crashing.metric(WINDOWS_EVALUATED) > evaluated  # read past the checkpoint before the crash
    # ...and crashes (cancelled: nothing is saved on the way out); it restarts from that checkpoint, which
    # reads again what came after it, and the traffic goes on
    with running_job(config, {**checkpoints, "execution.state-recovery.path": checkpoint}) as restarted:
        poll(lambda: restarted.metric(WINDOWS_EVALUATED) > 0, 120, "the restored job's windows")
        put(emulator, stream_arn, rest)
        put(emulator, stream_arn, [*traffic.late, *traffic.second])
        poll(lambda: set(items(emulator, table)) >= set(first_run.final_items), 180, "the uninterrupted run's items")
        after = settled(emulator, table)
        late = restarted.metric(LATE_METRIC)

    # then: exactly the uninterrupted run's items, figures included: no event counted twice
    assert without_wall_clock(after) == without_wall_clock(first_run.final_items)
    assert late == len(traffic.late)


def _stable(read: Any, quiet_s: float = 3.0) -> Any:
    """A condition that holds once ``read()`` has kept one value for ``quiet_s``; it returns that value."""
    state: dict[str, Any] = {}

    def condition() -> Any:
        value, now = read(), time.monotonic()
        if state.get("value") != value:
            state.update(value=value, since=now)
            return None
        return value if now - state["since"] >= quiet_s else None

    return condition
