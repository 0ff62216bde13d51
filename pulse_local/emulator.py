"""An AWS emulator for local runs and tests: an embedded moto server, or the one named by AWS_ENDPOINT_URL.

The embedded server is a child process on a free loopback port, started in well under a second
and stopped by its process. When ``AWS_ENDPOINT_URL`` is already set (LocalStack, say), nothing is
started and the same code talks to that endpoint instead.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from pulse_contract import anomaly_table as keys

DEFAULT_REGION = "us-east-1"
# Emulators accept any credentials; real ones must never leak into a local run.
EMULATOR_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class EmulatorError(RuntimeError):
    """The emulator could not be started or reached."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint + "/moto-api/", timeout=0.5):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up
    except OSError:
        return False


@dataclass
class Emulator:
    """A reachable AWS endpoint, embedded (a moto server we own) or external (we only use it)."""

    endpoint: str
    region: str = DEFAULT_REGION
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    port: int | None = None
    _env_before: dict[str, str | None] = field(default_factory=dict)

    @property
    def embedded(self) -> bool:
        return self.process is not None

    @property
    def env(self) -> dict[str, str]:
        """Environment variables that point an AWS SDK (Python or Java) at this emulator."""
        env = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            # The Java SDK speaks CBOR to Kinesis by default; emulators answer JSON only.
            "CBOR_ENABLED": "false",
            "AWS_CBOR_DISABLE": "true",
        }
        for key, value in EMULATOR_CREDENTIALS.items():
            env[key] = os.environ.get(key, value) if not self.embedded else value
        return env

    def client(self, service: str, **kwargs: Any) -> Any:
        """A boto3 client for ``service`` on this emulator."""
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=self.region,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            **kwargs,
        )

    def apply_env(self) -> None:
        """Export :attr:`env` into this process (restored by :meth:`restore_env`)."""
        for key, value in self.env.items():
            self._env_before.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def restore_env(self) -> None:
        for key, value in self._env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._env_before.clear()

    def stop(self) -> None:
        """Stop the embedded server (no-op for an external endpoint)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def restart(self, timeout_s: float = 15.0) -> None:
        """Start the embedded server again on the same port (its data is gone, as after a crash)."""
        if self.port is None:
            raise EmulatorError("only an embedded emulator can be restarted")
        self.stop()
        fresh = start_moto(port=self.port, region=self.region, log_path=self.log_path, timeout_s=timeout_s)
        self.process = fresh.process

    def reset(self) -> None:
        """Forget every resource (embedded moto only)."""
        if self.embedded:
            request = urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST")
            with urllib.request.urlopen(request, timeout=5):
                pass


def start_moto(
    port: int | None = None,
    region: str = DEFAULT_REGION,
    log_path: Path | None = None,
    timeout_s: float = 15.0,
) -> Emulator:
    """Start ``moto_server`` on 127.0.0.1 and wait until it answers."""
    port = port or free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **EMULATOR_CREDENTIALS},
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmulatorError(f"moto_server exited with code {process.returncode} on port {port}")
        if _answers(endpoint):
            return Emulator(endpoint=endpoint, region=region, process=process, log_path=log_path, port=port)
        time.sleep(0.05)
    process.kill()
    raise EmulatorError(f"moto_server did not answer on {endpoint} within {timeout_s:.0f} s")


def connect(environ: Mapping[str, str] | None = None) -> Emulator | None:
    """The external emulator named by AWS_ENDPOINT_URL, or None when none is set."""
    environ = os.environ if environ is None else environ
    endpoint = environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return None
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    return Emulator(endpoint=endpoint.rstrip("/"), region=region)


@contextmanager
def running_emulator(log_path: Path | None = None, apply_env: bool = True) -> Iterator[Emulator]:
    """An emulator for the duration of the block: AWS_ENDPOINT_URL's if set, else an embedded moto."""
    emulator = connect() or start_moto(log_path=log_path)
    if apply_env:
        emulator.apply_env()
    try:
        yield emulator
    finally:
        if apply_env:
            emulator.restore_env()
        emulator.stop()


def create_stream(emulator: Emulator, name: str, shards: int = 1, timeout_s: float = 30.0) -> str:
    """Create a Kinesis stream, wait until ACTIVE, and return its ARN."""
    kinesis = emulator.client("kinesis")
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    deadline = time.monotonic() + timeout_s
    while True:
        summary = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        if summary["StreamStatus"] == "ACTIVE":
            return str(summary["StreamARN"])
        if time.monotonic() > deadline:
            raise EmulatorError(f"stream {name} not ACTIVE after {timeout_s:.0f} s")
        time.sleep(0.1)


def create_anomaly_table(emulator: Emulator, name: str, timeout_s: float = 30.0) -> None:
    """Create the anomaly table with :mod:`pulse_contract.anomaly_table`'s keys and index; wait until ACTIVE."""
    dynamodb = emulator.client("dynamodb")
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key in keys.KEY_ATTRIBUTES],
        KeySchema=[
            {"AttributeName": keys.PARTITION_KEY, "KeyType": "HASH"},
            {"AttributeName": keys.SORT_KEY, "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": keys.TIME_INDEX,
                "KeySchema": [
                    {"AttributeName": keys.TIME_INDEX_PARTITION_KEY, "KeyType": "HASH"},
                    {"AttributeName": keys.TIME_INDEX_SORT_KEY, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": keys.TTL_ATTRIBUTE}
    )
    deadline = time.monotonic() + timeout_s
    while dynamodb.describe_table(TableName=name)["Table"]["TableStatus"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise EmulatorError(f"table {name} not ACTIVE after {timeout_s:.0f} s")
        time.sleep(0.1)


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
