"""The direct PutRecords path gives way to anything that hooks boto3: moto's mock_aws, botocore's
Stubber, instrumentation that wraps the API call. Without them it is taken (it is what keeps the
middleware cheap)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from lambda_api.publishers.delivery import KinesisDelivery, PutRecordsClient, kinesis_client
from lambda_api.publishers.fallback import FallbackLog
from lambda_api.publishers.kinesis import RequestKinesisPublisher
from pulse_contract.request_event import RequestEvent


def make_event(n: int) -> RequestEvent:
    return RequestEvent(
        v=1,
        id=f"hook-{n}",
        ts=1_767_225_600_000 + n,
        method="GET",
        route="/items/{item_id}",
        path="/items/1",
        status=200,
        latency_ms=1.5,
        client_ip="10.0.0.1",
        user_agent="test",
        bytes_out=0,
    )


@pytest.fixture
def aws_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """No emulator endpoint: the client addresses AWS itself, which only a mock may answer."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture
def mocked_aws(aws_defaults: None) -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


def publish(client: PutRecordsClient, stream: str, fallback: Path, count: int) -> None:
    publisher = RequestKinesisPublisher(KinesisDelivery(stream, client), FallbackLog(str(fallback)), budget_s=2.0)
    for n in range(count):
        publisher.publish(make_event(n))
    publisher.close()


def test_under_mock_aws_the_events_reach_the_mocked_stream(mocked_aws: None, tmp_path: Path) -> None:
    import boto3

    # given a stream in moto's in-process mock, and the publisher's own client created as in the app
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName="mocked", ShardCount=1)
    client = kinesis_client(connect_timeout_s=1.0, read_timeout_s=1.0)
    assert client.hooked()

    # when events are published
    publish(client, "mocked", tmp_path / "fallback.log", 3)

    # then they are on the mocked stream, none in the fallback log
    shard = kinesis.list_shards(StreamName="mocked")["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName="mocked", ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"]
    assert sorted(json.loads(r["Data"])["id"] for r in records) == ["hook-0", "hook-1", "hook-2"]
    assert not (tmp_path / "fallback.log").exists() or (tmp_path / "fallback.log").read_text() == ""


def test_a_botocore_stubber_answers_the_publishers_calls(aws_defaults: None, tmp_path: Path) -> None:
    # given the publisher's client with a Stubber activated on it after creation
    client = kinesis_client(connect_timeout_s=1.0, read_timeout_s=1.0)
    assert not client.hooked()
    answer: dict[str, Any] = {"Records": [{"SequenceNumber": "1", "ShardId": "shardId-0"}]}  # FailedRecordCount: min 1
    with Stubber(client.client) as stubber:
        stubber.add_response("put_records", answer)
        assert client.hooked()

        # when one event is published
        publish(client, "stubbed", tmp_path / "fallback.log", 1)

        # then the stub answered it (nothing left queued), and nothing reached the network
        stubber.assert_no_pending_responses()
    assert not client.hooked()  # deactivated: the direct path again


def test_a_wrapped_api_call_is_not_bypassed(aws_defaults: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.client

    # given instrumentation that wraps every client's API call (as OpenTelemetry and X-Ray do)
    seen: list[str] = []
    original = botocore.client.BaseClient._make_api_call

    def traced(self: Any, operation_name: str, params: dict[str, Any]) -> Any:
        seen.append(operation_name)
        return {"FailedRecordCount": 0, "Records": [{"SequenceNumber": "1", "ShardId": "shardId-0"}]}

    client = kinesis_client(connect_timeout_s=1.0, read_timeout_s=1.0)
    assert not client.hooked()
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", traced)

    # when records are put, then the wrapper sees the call
    client.put_records(StreamName="traced", Records=[{"Data": b"x", "PartitionKey": "k"}])
    assert seen == ["PutRecords"]
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", original)
    assert not client.hooked()
