"""Kinesis publishers against the emulated stream: limits, partial failures, throttling, buffering, shutdown."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambda_api.publishers.delivery import KinesisDelivery, KinesisRecord, Undelivered, kinesis_client
from lambda_api.publishers.fallback import LOST_KEY, FallbackLog, read_fallback_lines
from lambda_api.publishers.kinesis import BufferedKinesisPublisher, RequestKinesisPublisher
from pulse_contract.request_event import RequestEvent
from pulse_local.emulator import Emulator
from tests.streams import read_events, read_records, wait_for_events


def make_event(n: int = 0) -> RequestEvent:
    return RequestEvent(
        1, uuid.uuid4().hex, 1_700_000_000_000 + n, "GET", "/items/{item_id}", f"/items/{n}", 200, 1.5,
        "198.51.100.7", "pytest", 17,
    )  # fmt: skip


def throttled() -> ClientError:
    error = {"Code": "ProvisionedThroughputExceededException", "Message": "Rate exceeded"}
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, "PutRecords")


class FlakyKinesis:
    """The real (emulated) client, except that chosen records fail their first attempt the way Kinesis reports
    a partial failure, and the first ``throttle_calls`` calls are throttled as a whole."""

    def __init__(self, real: Any, fail_first: set[str] | None = None, throttle_calls: int = 0) -> None:
        self.real = real
        self.fail_first = set(fail_first or ())
        self.throttle_calls = throttle_calls
        self.calls: list[list[str]] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        keys = [r["PartitionKey"] for r in Records]
        self.calls.append(keys)
        if self.throttle_calls:
            self.throttle_calls -= 1
            raise throttled()
        failing = {key for key in keys if key in self.fail_first}
        self.fail_first -= failing
        passing = [r for r in Records if r["PartitionKey"] not in failing]
        accepted = iter(self.real.put_records(StreamName=StreamName, Records=passing)["Records"] if passing else [])
        entries = [
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard"}
            if key in failing
            else next(accepted)
            for key in keys
        ]
        return {"FailedRecordCount": len(failing), "Records": entries}


@pytest.fixture
def real_client(emulator: Emulator) -> Any:
    return kinesis_client(connect_timeout_s=1.0, read_timeout_s=5.0)


@pytest.fixture
def fallback_path(tmp_path: Path) -> Path:
    return tmp_path / "fallback.log"


def wait_until(condition: Any, timeout_s: float = 10.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout_s`` passed (False): for work another thread does."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def fallback_entries(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_request_publisher_puts_each_event_before_returning(
    emulator: Emulator, stream: tuple[str, str], real_client: Any, fallback_path: Path
) -> None:
    # given the per-request publisher on a fresh stream
    name, _ = stream
    publisher = RequestKinesisPublisher(KinesisDelivery(name, real_client), FallbackLog(str(fallback_path)), 1.0)
    events = [make_event(n) for n in range(3)]
    # when each event is published, then it is on the stream as soon as publish returns
    for count, event in enumerate(events, start=1):
        publisher.publish(event)
        assert len(read_records(emulator, name)) == count
    on_stream = read_records(emulator, name)
    assert [r["partition_key"] for r in on_stream] == [e.id for e in events]
    assert [RequestEvent.from_dict(json.loads(r["data"])) for r in on_stream] == events
    assert fallback_entries(fallback_path) == []


def test_buffered_publisher_splits_into_calls_the_stream_accepts(
    emulator: Emulator, stream: tuple[str, str], real_client: Any, fallback_path: Path
) -> None:
    # given a buffered publisher (the emulator rejects calls over 500 records)
    name, _ = stream
    recording = FlakyKinesis(real_client)
    publisher = BufferedKinesisPublisher(
        KinesisDelivery(name, recording), FallbackLog(str(fallback_path)), flush_interval_s=60
    )
    events = [make_event(n) for n in range(1201)]
    # when 1,201 events are published and the publisher closes
    for event in events:
        publisher.publish(event)
    publisher.close()
    # then every event is on the stream once, and no call carried more than 500
    assert sorted(e["id"] for e in read_events(emulator, name)) == sorted(e.id for e in events)
    assert max(len(call) for call in recording.calls) <= 500
    assert fallback_entries(fallback_path) == []


def test_delivery_splits_by_bytes_so_the_stream_accepts_every_call(
    emulator: Emulator, stream: tuple[str, str], real_client: Any
) -> None:
    # given six records of ~1 MB: 6 MB in all, over the 5 MiB a call may carry (the emulator enforces it)
    name, _ = stream
    big = [KinesisRecord(bytes([65 + n]) * 1_000_000, f"big-{n}") for n in range(6)]
    recording = FlakyKinesis(real_client)
    # when delivered
    undelivered = KinesisDelivery(name, recording).deliver(big, budget_s=30)
    # then two calls were needed and all six records landed
    assert undelivered == []
    assert [len(call) for call in recording.calls] == [5, 1]
    assert sorted(r["partition_key"] for r in read_records(emulator, name)) == [r.partition_key for r in big]


def test_partial_failure_is_retried_record_by_record_without_duplicates(
    emulator: Emulator, stream: tuple[str, str], real_client: Any, fallback_path: Path
) -> None:
    # given a stream that rejects 3 of 10 records on their first attempt
    name, _ = stream
    events = [make_event(n) for n in range(10)]
    failing = {events[1].id, events[4].id, events[9].id}
    flaky = FlakyKinesis(real_client, fail_first=failing)
    publisher = BufferedKinesisPublisher(KinesisDelivery(name, flaky), FallbackLog(str(fallback_path)))
    # when the events are published and flushed
    for event in events:
        publisher.publish(event)
    publisher.flush()
    publisher.close()
    # then the retry carried only the three rejected records, and each event is on the stream exactly once
    assert len(flaky.calls) == 2
    assert set(flaky.calls[1]) == failing and len(flaky.calls[1]) == 3
    assert sorted(e["id"] for e in read_events(emulator, name)) == sorted(e.id for e in events)
    assert fallback_entries(fallback_path) == []


def test_throttled_calls_are_retried_until_the_stream_accepts(
    emulator: Emulator, stream: tuple[str, str], real_client: Any, fallback_path: Path
) -> None:
    # given a stream that throttles the first two calls as a whole
    name, _ = stream
    flaky = FlakyKinesis(real_client, throttle_calls=2)
    publisher = RequestKinesisPublisher(KinesisDelivery(name, flaky), FallbackLog(str(fallback_path)), 2.0)
    event = make_event()
    # when one event is published
    publisher.publish(event)
    # then the third call delivered it, and nothing fell back
    assert len(flaky.calls) == 3
    assert [e["id"] for e in read_events(emulator, name)] == [event.id]
    assert fallback_entries(fallback_path) == []


def test_throttling_beyond_the_budget_falls_back_with_one_line_per_event(
    stream: tuple[str, str], real_client: Any, fallback_path: Path
) -> None:
    name, _ = stream
    flaky = FlakyKinesis(real_client, throttle_calls=10_000)
    publisher = RequestKinesisPublisher(
        KinesisDelivery(name, flaky, backoff_base_s=0.005, backoff_max_s=0.02), FallbackLog(str(fallback_path)), 0.1
    )
    event = make_event()
    publisher.publish(event)
    [line] = fallback_entries(fallback_path)
    assert line["event"] == event.to_dict()
    assert line["reason"] == "budget_exhausted: ProvisionedThroughputExceededException"
    assert line["stream"] == name and line["partition_key"] == event.id


def test_buffered_publisher_flushes_when_enough_events_wait(
    emulator: Emulator, stream: tuple[str, str], real_client: Any, fallback_path: Path
) -> None:
    # given a publisher that flushes at 10 events and otherwise only every minute
    name, _ = stream
    publisher = BufferedKinesisPublisher(
        KinesisDelivery(name, real_client), FallbackLog(str(fallback_path)), flush_records=10, flush_interval_s=60
    )
    # when 10 events are published, then they reach the stream without any explicit flush
    for n in range(10):
        publisher.publish(make_event(n))
    assert len(wait_for_events(emulator, name, 10)) == 10
    publisher.close()


def test_buffered_publisher_flushes_on_its_interval(
    emulator: Emulator, stream: tuple[str, str], real_client: Any, fallback_path: Path
) -> None:
    name, _ = stream
    publisher = BufferedKinesisPublisher(
        KinesisDelivery(name, real_client), FallbackLog(str(fallback_path)), flush_interval_s=0.05
    )
    publisher.publish(make_event())
    assert len(wait_for_events(emulator, name, 1)) == 1
    publisher.close()


class BlockingKinesis:
    """Holds every put_records call until released, to fill the buffered publisher's queue."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.entered = threading.Event()
        self.release = threading.Event()

    def put_records(self, **kwargs: Any) -> dict[str, Any]:
        self.entered.set()
        self.release.wait(timeout=10)
        return dict(self.real.put_records(**kwargs))


def test_a_full_queue_sends_events_to_the_fallback_log_not_to_memory(
    emulator: Emulator, stream: tuple[str, str], real_client: Any, fallback_path: Path
) -> None:
    # given a publisher whose queue holds 5 events, while its thread is stuck delivering the first
    name, _ = stream
    blocking = BlockingKinesis(real_client)
    publisher = BufferedKinesisPublisher(
        KinesisDelivery(name, blocking), FallbackLog(str(fallback_path)), max_events=5, flush_records=1
    )
    first = make_event(0)
    publisher.publish(first)
    assert blocking.entered.wait(timeout=10)
    # when 7 more events come
    more = [make_event(n) for n in range(1, 8)]
    for event in more:
        publisher.publish(event)
    # then 5 wait in memory and the last 2 go to the fallback log (written by the publisher's writer thread)
    assert publisher.pending == 5
    assert wait_until(lambda: len(fallback_entries(fallback_path)) == 2)
    assert [(line["event"]["id"], line["reason"]) for line in fallback_entries(fallback_path)] == [
        (more[5].id, "buffer_full"),
        (more[6].id, "buffer_full"),
    ]
    # and once the stream answers, the queued ones are delivered; after close, events are refused to the log
    blocking.release.set()
    publisher.close()
    assert sorted(e["id"] for e in read_events(emulator, name)) == sorted(e.id for e in [first, *more[:5]])
    late = make_event(99)
    publisher.publish(late)
    assert fallback_entries(fallback_path)[-1]["event"]["id"] == late.id
    assert fallback_entries(fallback_path)[-1]["reason"] == "publisher_closed"


def test_under_load_calls_carry_full_batches_and_the_remainder_waits(
    emulator: Emulator, stream: tuple[str, str], real_client: Any, fallback_path: Path
) -> None:
    # given a publisher flushing at 10 events, whose first call is held while 25 more events arrive
    name, _ = stream
    blocking = BlockingKinesis(real_client)
    recording = FlakyKinesis(blocking)
    publisher = BufferedKinesisPublisher(
        KinesisDelivery(name, recording), FallbackLog(str(fallback_path)), flush_records=10, flush_interval_s=60
    )
    for n in range(10):
        publisher.publish(make_event(n))
    assert blocking.entered.wait(timeout=10)
    for n in range(10, 35):
        publisher.publish(make_event(n))
    # when the stream answers again
    blocking.release.set()
    deadline = time.monotonic() + 10
    while (len(recording.calls) < 3 or publisher.delivering) and time.monotonic() < deadline:
        time.sleep(0.01)
    # then the thread sent full batches only, and the 5 left over wait for the interval (or shutdown)
    assert [len(call) for call in recording.calls] == [10, 10, 10]
    assert publisher.pending == 5
    publisher.close()
    assert [len(call) for call in recording.calls] == [10, 10, 10, 5]
    assert len(read_records(emulator, name)) == 35


def test_fallback_lines_are_what_replay_reads(tmp_path: Path) -> None:
    # given an event the publisher could not deliver, logged with a CloudWatch-style prefix
    event = make_event()
    log = tmp_path / "app.log"
    unreachable = KinesisDelivery("gone", FlakyKinesis(None, throttle_calls=10_000), backoff_base_s=0.001)
    RequestKinesisPublisher(unreachable, FallbackLog(str(log)), 0.01).publish(event)
    prefixed = "2024-05-01T00:00:00.000Z\tc0ffee\t[WARNING]\t" + log.read_text()
    # when read back, then the record is byte-identical to what the publisher would have put
    [entry] = list(read_fallback_lines(["some other log line\n", prefixed]))
    assert not isinstance(entry, ValueError)
    assert entry.stream == "gone"
    assert entry.record == KinesisRecord(event.to_json(), event.id)


# The PutRecords client: the boto3 client's signer and connection pool, without its per-record model walk


def test_put_records_client_answers_like_boto3(emulator: Emulator, stream: tuple[str, str], real_client: Any) -> None:
    # given the direct client and the plain boto3 client it wraps, on the same stream
    name, _ = stream
    assert real_client.direct
    records = [{"Data": b"\x00\xffbinary", "PartitionKey": "k\u00e9y-1"}, {"Data": "text", "PartitionKey": "k2"}]
    # when both put the same records
    direct = real_client.put_records(StreamName=name, Records=records)
    plain = real_client.client.put_records(StreamName=name, Records=records)
    # then the answers have the same shape and the stream holds the same bytes and keys twice
    assert direct["FailedRecordCount"] == plain["FailedRecordCount"] == 0
    assert [sorted(entry) for entry in direct["Records"]] == [sorted(entry) for entry in plain["Records"]]
    on_stream = [(r["data"], r["partition_key"]) for r in read_records(emulator, name)]
    assert on_stream == [(b"\x00\xffbinary", "k\u00e9y-1"), (b"text", "k2")] * 2


def test_put_records_client_raises_the_error_code_boto3_would(real_client: Any) -> None:
    records = [{"Data": b"x", "PartitionKey": "k"}]
    with pytest.raises(ClientError) as direct:
        real_client.put_records(StreamName="no-such-stream", Records=records)
    with pytest.raises(ClientError) as plain:
        real_client.client.put_records(StreamName="no-such-stream", Records=records)
    assert direct.value.response["Error"]["Code"] == plain.value.response["Error"]["Code"]
    assert direct.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_put_records_client_falls_back_to_the_boto3_call_without_its_internals() -> None:
    class PlainClient:
        class meta:
            endpoint_url = "https://kinesis.us-east-1.amazonaws.com"

        def put_records(self, **kwargs: Any) -> dict[str, Any]:
            return {"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1", "ShardId": "s"}], "via": "boto3"}

    from lambda_api.publishers.delivery import PutRecordsClient

    client = PutRecordsClient(PlainClient())
    assert not client.direct
    assert client.put_records(StreamName="s", Records=[{"Data": b"x", "PartitionKey": "k"}])["via"] == "boto3"


def test_an_unwritable_fallback_log_reports_the_lost_events_as_one_counted_json_line(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    # given a fallback log whose file cannot be opened (a directory)
    log = FallbackLog(str(tmp_path))
    record = KinesisRecord(b'{"v":1}', "k")
    # when two undelivered events are written to it
    log.write("pulse-events", [Undelivered(record, "Timeout", 3), Undelivered(record, "Timeout", 3)])
    # then stderr gets one JSON line with the count, the field CDK's LostEvents metric filter adds up
    (line,) = [json.loads(text) for text in capfd.readouterr().err.splitlines() if LOST_KEY in text]
    assert line[LOST_KEY] == 2 and line["stream"] == "pulse-events" and "unwritable" in line["reason"]


class BlackHole:
    """A Kinesis that never answers (each call hangs until released, at most 30 s)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def put_records(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        self.release.wait(timeout=30)
        raise ConnectionResetError("black hole")


def test_close_keeps_its_deadline_and_logs_everything_still_queued(fallback_path: Path) -> None:
    # given 10,000 events queued in front of a Kinesis that never answers, with a 5 s flush budget
    hole = BlackHole()
    publisher = BufferedKinesisPublisher(
        KinesisDelivery("pulse-events", hole), FallbackLog(str(fallback_path)),
        budget_s=5.0, flush_interval_s=60, max_events=10_000,
    )  # fmt: skip
    events = [make_event(n) for n in range(10_000)]
    for event in events:
        publisher.publish(event)
    # when the publisher closes with a 2 s deadline
    started = time.monotonic()
    publisher.close(deadline_s=2.0)
    took = time.monotonic() - started
    hole.release.set()
    # then it returned before the deadline, and every event is in the fallback log (none lost at SIGKILL)
    assert took < 2.0, took
    logged = {line["event"]["id"] for line in fallback_entries(fallback_path)}
    assert logged == {event.id for event in events}


class SlowFallbackLog(FallbackLog):
    """A fallback log that blocks every write made off the test's thread until released (a full disk, a
    stderr pipe nobody reads), and records which threads wrote. A write on the test's own thread is
    recorded and not blocked, so a publisher that writes on its caller fails the test instead of hanging it."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.caller = threading.get_ident()
        self.release = threading.Event()
        self.entered = threading.Event()
        self.writers: list[int] = []

    def write(self, stream_name: str, items: Any) -> int:
        items = list(items)
        self.writers.append(threading.get_ident())
        if threading.get_ident() != self.caller:
            self.entered.set()
            self.release.wait(timeout=30)
        return super().write(stream_name, items)


def test_a_slow_fallback_log_never_blocks_publish_when_the_queue_is_full(fallback_path: Path) -> None:
    # given a publisher whose queue (2 events) is full, in front of a stuck Kinesis and a fallback log that blocks
    hole = BlackHole()
    slow = SlowFallbackLog(str(fallback_path))
    publisher = BufferedKinesisPublisher(
        KinesisDelivery("pulse-events", hole), slow, max_events=2, flush_records=500, flush_interval_s=60
    )
    queued = [make_event(n) for n in range(2)]
    for event in queued:
        publisher.publish(event)
    # when more events come than the queue holds (no more than the writer's hand-off holds), the log stuck
    refused = [make_event(n) for n in range(2, 4)]
    for event in refused:
        publisher.publish(event)  # on the caller's thread (a server's event loop): must not write the log
    # then publish returned without writing a line on the caller's thread: the writer thread is the one stuck
    assert slow.entered.wait(timeout=10)
    assert slow.caller not in slow.writers
    assert publisher.pending == 2
    # and once the log moves again, every refused event is in it, once, and nothing is lost at close
    slow.release.set()
    hole.release.set()
    publisher.close(deadline_s=2.0)
    lines = fallback_entries(fallback_path)
    by_reason = {line["event"]["id"]: line["reason"] for line in lines if line["reason"] == "buffer_full"}
    assert sorted(by_reason) == sorted(event.id for event in refused)
    assert len([line for line in lines if line["reason"] == "buffer_full"]) == len(refused)
    assert {line["event"]["id"] for line in lines} == {event.id for event in queued + refused}


def test_events_handed_to_the_fallback_writer_are_written_by_close(fallback_path: Path) -> None:
    # given a full queue and a fallback writer thread stuck on its first line, with more events waiting for it
    hole = BlackHole()
    slow = SlowFallbackLog(str(fallback_path))
    publisher = BufferedKinesisPublisher(
        KinesisDelivery("pulse-events", hole), slow, max_events=1, flush_records=500, flush_interval_s=60
    )
    events = [make_event(n) for n in range(3)]
    publisher.publish(events[0])
    publisher.publish(events[1])
    assert slow.entered.wait(timeout=10)
    publisher.publish(events[2])  # waits for the stuck writer
    # when the log moves again and the publisher closes
    slow.release.set()
    hole.release.set()
    publisher.close(deadline_s=2.0)
    # then close waited for the writer: every event is in the fallback log exactly once
    ids = [line["event"]["id"] for line in fallback_entries(fallback_path)]
    assert sorted(ids) == sorted(event.id for event in events)
    assert publisher.overflowing == 0


def test_beyond_the_queue_and_the_writers_hand_off_the_caller_writes_rather_than_loses(fallback_path: Path) -> None:
    # given a full queue (1 event) and a stuck fallback writer that already holds one event and has one more waiting
    hole = BlackHole()
    slow = SlowFallbackLog(str(fallback_path))
    publisher = BufferedKinesisPublisher(
        KinesisDelivery("pulse-events", hole), slow, max_events=1, flush_records=500, flush_interval_s=60
    )
    events = [make_event(n) for n in range(4)]
    publisher.publish(events[0])
    publisher.publish(events[1])
    assert slow.entered.wait(timeout=10)
    publisher.publish(events[2])
    # when one more comes, with both bounds reached
    publisher.publish(events[3])
    # then the caller wrote that one itself (back-pressure), and after close every event is in the log once
    assert slow.writers.count(slow.caller) == 1
    slow.release.set()
    hole.release.set()
    publisher.close(deadline_s=2.0)
    ids = [line["event"]["id"] for line in fallback_entries(fallback_path)]
    assert sorted(ids) == sorted(event.id for event in events)
