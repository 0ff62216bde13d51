"""KinesisDelivery against scripted clients: batching, retries of only what failed, the time budget."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from lambda_api.publishers.delivery import (
    CIRCUIT_OPEN,
    MAX_BATCH_BYTES,
    MAX_BATCH_RECORDS,
    CircuitBreaker,
    KinesisDelivery,
    KinesisRecord,
    batches,
)


def records(count: int, size: int = 20) -> list[KinesisRecord]:
    return [KinesisRecord(data=b"x" * size, partition_key=f"key-{n:05d}") for n in range(count)]


def throttled() -> ClientError:
    return ClientError(
        {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"},
         "ResponseMetadata": {"HTTPStatusCode": 400}},
        "PutRecords",
    )  # fmt: skip


class ScriptedKinesis:
    """put_records answers from a script: each call gets the next step (an exception, or a set of keys to fail)."""

    def __init__(self, steps: list[Exception | set[str] | Callable[[list[str]], set[str]]]) -> None:
        self.steps = steps
        self.calls: list[list[str]] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        keys = [r["PartitionKey"] for r in Records]
        self.calls.append(keys)
        step = self.steps[len(self.calls) - 1] if len(self.calls) <= len(self.steps) else set()
        if isinstance(step, Exception):
            raise step
        failing = step(keys) if callable(step) else step
        entries = [
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "rate"}
            if key in failing
            else {"SequenceNumber": str(n), "ShardId": "shardId-000000000000"}
            for n, key in enumerate(keys)
        ]
        return {"FailedRecordCount": sum(1 for key in keys if key in failing), "Records": entries}


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def delivery(client: Any, time: FakeTime, jitter: float = 1.0, **kwargs: Any) -> KinesisDelivery:
    return KinesisDelivery(
        "events", client, sleep=time.sleep, clock=time.clock, jitter=lambda: jitter,
        backoff_base_s=kwargs.get("base", 0.01), backoff_max_s=kwargs.get("cap", 0.08),
    )  # fmt: skip


def test_batches_respect_the_record_count_limit() -> None:
    sizes = [len(batch) for batch in batches(records(1201))]
    assert sizes == [MAX_BATCH_RECORDS, MAX_BATCH_RECORDS, 201]


def test_batches_respect_the_byte_limit_counting_partition_keys() -> None:
    # given records of 1,000,000 data bytes plus a 9-byte key: five fit in 5 MiB, six do not
    big = records(12, size=1_000_000)
    # when batched, then each batch stays within 5 MiB and nothing is dropped or reordered
    split = list(batches(big))
    assert [len(batch) for batch in split] == [5, 5, 2]
    assert all(sum(r.size for r in batch) <= MAX_BATCH_BYTES for batch in split)
    assert [r for batch in split for r in batch] == big


def test_a_batch_exactly_at_the_byte_limit_is_one_call() -> None:
    key = "k"
    exact = [KinesisRecord(b"x" * (MAX_BATCH_BYTES // 4 - 1), key) for _ in range(4)]
    assert [len(b) for b in batches(exact)] == [4]
    assert [len(b) for b in batches([*exact, KinesisRecord(b"x", key)])] == [4, 1]


def test_partial_failure_retries_only_the_failed_records() -> None:
    # given a first call where records 1 and 3 of 5 fail
    batch = records(5)
    client = ScriptedKinesis([{"key-00001", "key-00003"}])
    time = FakeTime()
    # when delivered
    undelivered = delivery(client, time).deliver(batch, budget_s=1.0)
    # then the second call carries exactly the two failed records, and everything is delivered
    assert undelivered == []
    assert client.calls == [[r.partition_key for r in batch], ["key-00001", "key-00003"]]
    assert len(time.sleeps) == 1


def test_throttled_calls_are_retried_with_exponential_backoff_within_the_budget() -> None:
    # given a stream that throttles three whole calls, then accepts
    client = ScriptedKinesis([throttled(), throttled(), throttled()])
    time = FakeTime()
    # when delivered with full jitter at its maximum
    undelivered = delivery(client, time, base=0.01, cap=0.03).deliver(records(3), budget_s=1.0)
    # then the delays double up to the cap, and the fourth call delivers
    assert undelivered == []
    assert len(client.calls) == 4
    assert time.sleeps == pytest.approx([0.01, 0.02, 0.03])


def test_jitter_scales_each_delay() -> None:
    client = ScriptedKinesis([throttled(), throttled()])
    time = FakeTime()
    delivery(client, time, jitter=0.5, base=0.02, cap=1.0).deliver(records(1), budget_s=1.0)
    assert time.sleeps == pytest.approx([0.01, 0.02])


def test_a_stream_that_never_recovers_exhausts_the_budget_and_reports_the_records() -> None:
    # given a stream that throttles forever
    client = ScriptedKinesis([throttled()] * 1000)
    time = FakeTime()
    # when delivered with a 0.25 s budget
    undelivered = delivery(client, time, base=0.01, cap=0.05).deliver(records(3), budget_s=0.25)
    # then delivery stops before the deadline and says why for each record
    assert time.now < 0.25
    assert [u.record.partition_key for u in undelivered] == ["key-00000", "key-00001", "key-00002"]
    assert {u.reason for u in undelivered} == {"budget_exhausted: ProvisionedThroughputExceededException"}
    assert {u.attempts for u in undelivered} == {len(client.calls)}


def test_records_still_failing_at_the_deadline_are_the_only_ones_reported() -> None:
    # given a stream where key-00002 always fails and the others succeed at once
    client = ScriptedKinesis([lambda keys: {"key-00002"}] * 1000)
    time = FakeTime()
    undelivered = delivery(client, time).deliver(records(4), budget_s=0.1)
    assert [u.record.partition_key for u in undelivered] == ["key-00002"]
    assert all(keys == ["key-00002"] for keys in client.calls[1:])


def test_connection_errors_are_retried() -> None:
    client = ScriptedKinesis([EndpointConnectionError(endpoint_url="http://127.0.0.1:1")])
    assert delivery(client, FakeTime()).deliver(records(2), budget_s=1.0) == []
    assert len(client.calls) == 2


@pytest.mark.parametrize("code", ["ResourceNotFoundException", "AccessDeniedException", "ValidationException"])
def test_errors_that_cannot_heal_are_not_retried(code: str) -> None:
    error = ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": 400}}, "PutRecords")
    client = ScriptedKinesis([error])
    undelivered = delivery(client, FakeTime()).deliver(records(2), budget_s=1.0)
    assert len(client.calls) == 1
    assert [(u.reason, u.attempts) for u in undelivered] == [(code, 1), (code, 1)]


def test_server_errors_are_retried_whatever_their_code() -> None:
    error = ClientError({"Error": {"Code": "Oops"}, "ResponseMetadata": {"HTTPStatusCode": 503}}, "PutRecords")
    client = ScriptedKinesis([error])
    assert delivery(client, FakeTime()).deliver(records(1), budget_s=1.0) == []


def test_an_unexpected_exception_never_escapes() -> None:
    client = ScriptedKinesis([RuntimeError("bug in a client plug-in")])
    undelivered = delivery(client, FakeTime()).deliver(records(1), budget_s=1.0)
    assert [u.reason for u in undelivered] == ["RuntimeError"]


def test_an_oversized_record_is_reported_without_a_call() -> None:
    client = ScriptedKinesis([])
    oversized = KinesisRecord(b"x" * (1024 * 1024), "key")
    undelivered = delivery(client, FakeTime()).deliver([oversized, *records(1)], budget_s=1.0)
    assert [u.record for u in undelivered] == [oversized]
    assert client.calls == [["key-00000"]]


def test_batches_of_one_delivery_are_separate_calls_and_only_failures_repeat() -> None:
    # given 1,001 records where the first call's last record fails
    client = ScriptedKinesis([{"key-00499"}])
    undelivered = delivery(client, FakeTime()).deliver(records(1001), budget_s=1.0)
    assert undelivered == []
    assert [len(call) for call in client.calls] == [500, 500, 1, 1]
    assert client.calls[3] == ["key-00499"]


def test_the_breaker_opens_after_repeated_failures_then_probes_and_recovers() -> None:
    # given Kinesis unreachable for three deliveries, then back (a budget of 0.1 s: one attempt each)
    down = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    time = FakeTime()
    client = ScriptedKinesis([down, down, down])
    breaker = CircuitBreaker(failures=3, cooldown_s=5.0, clock=time.clock)
    delivery = KinesisDelivery(
        "s", client, sleep=time.sleep, clock=time.clock, jitter=lambda: 0.5, breaker=breaker,
        backoff_base_s=1.0, backoff_max_s=1.0,
    )  # fmt: skip
    # when three deliveries fail, the breaker opens
    for _ in range(3):
        assert [u.reason for u in delivery.deliver(records(1), 0.1)] == ["budget_exhausted: EndpointConnectionError"]
    assert breaker.is_open and len(client.calls) == 3
    # then deliveries during the cool-down give up at once, without calling Kinesis
    assert [u.reason for u in delivery.deliver(records(2), 0.1)] == [CIRCUIT_OPEN, CIRCUIT_OPEN]
    assert len(client.calls) == 3 and time.sleeps == []
    # and after it, one delivery probes; Kinesis answers, so the breaker closes
    time.now += 5.0
    assert delivery.deliver(records(1), 0.1) == []
    assert not breaker.is_open and len(client.calls) == 4
    assert delivery.deliver(records(1), 0.1) == [] and len(client.calls) == 5


def test_a_failed_probe_opens_the_breaker_for_another_cool_down() -> None:
    down = EndpointConnectionError(endpoint_url="http://127.0.0.1:1")
    time = FakeTime()
    client = ScriptedKinesis([down] * 10)
    breaker = CircuitBreaker(failures=1, cooldown_s=2.0, clock=time.clock)
    delivery = KinesisDelivery(
        "s", client, sleep=time.sleep, clock=time.clock, jitter=lambda: 0.5, breaker=breaker,
        backoff_base_s=1.0, backoff_max_s=1.0,
    )  # fmt: skip
    delivery.deliver(records(1), 0.1)
    time.now += 2.0
    delivery.deliver(records(1), 0.1)  # the probe fails
    time.now += 1.0
    assert [u.reason for u in delivery.deliver(records(1), 0.1)] == [CIRCUIT_OPEN]
    assert len(client.calls) == 2 and breaker.opened == 2
