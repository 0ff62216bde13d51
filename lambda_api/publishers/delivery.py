"""Putting records on Kinesis within a time budget: the one delivery component every publisher reuses.

:meth:`KinesisDelivery.deliver` splits records into ``PutRecords`` calls within Kinesis limits,
retries only what failed (the failed entries of a partial failure, or a whole call that was
throttled or could not connect) with exponential backoff and full jitter, never starts an attempt
or a backoff after the budget's deadline, never raises, and returns what is still undelivered
with the reason, for the caller to write to the fallback log.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

# Kinesis PutRecords limits (per call, and per record: data plus partition key).
MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024
MAX_PARTITION_KEY_CHARS = 256

# Whole-call errors worth another attempt; any other client error (missing stream, access denied,
# validation) will not heal within a budget of seconds.
RETRYABLE_ERROR_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "LimitExceededException",
        "ThrottlingException",
        "KMSThrottlingException",
        "InternalFailure",
        "InternalFailureException",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


@dataclass(frozen=True, slots=True)
class KinesisRecord:
    data: bytes
    partition_key: str

    @property
    def size(self) -> int:
        """What Kinesis counts against its limits: data plus the UTF-8 partition key."""
        return len(self.data) + len(self.partition_key.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class Undelivered:
    record: KinesisRecord
    reason: str  # the last error: an error code, an exception name, "budget_exhausted: <code>"
    attempts: int


def batches(
    records: Sequence[KinesisRecord],
    max_records: int = MAX_BATCH_RECORDS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> Iterator[list[KinesisRecord]]:
    """Consecutive runs of ``records``, each within ``max_records`` and ``max_bytes``."""
    batch: list[KinesisRecord] = []
    batch_bytes = 0
    for record in records:
        size = record.size
        if batch and (len(batch) >= max_records or batch_bytes + size > max_bytes):
            yield batch
            batch, batch_bytes = [], 0
        batch.append(record)
        batch_bytes += size
    if batch:
        yield batch


def kinesis_client(connect_timeout_s: float, read_timeout_s: float, max_pool_connections: int = 10) -> Any:
    """One boto3 Kinesis client with short timeouts and no retries of its own (deliver owns retries).

    Region, credentials and ``AWS_ENDPOINT_URL`` (emulators) come from the standard environment.
    """
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=max_pool_connections,
        tcp_keepalive=True,
        # Records are built here within limits; botocore's per-parameter walk costs ~1 ms per 500.
        parameter_validation=False,
    )
    return boto3.client("kinesis", config=config)


def _classify(error: Exception) -> tuple[str, bool]:
    """(reason, retryable) for an exception from a PutRecords call."""
    from botocore.exceptions import ClientError, ConnectionError, EndpointConnectionError, HTTPClientError

    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code") or "ClientError")
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return code, code in RETRYABLE_ERROR_CODES or status >= 500
    if isinstance(error, EndpointConnectionError | ConnectionError | HTTPClientError):
        return type(error).__name__, True
    return type(error).__name__, False


class KinesisDelivery:
    """A Kinesis client wrapper that delivers records to one stream, or says which it could not.

    Thread-safe (boto3 clients are). ``sleep``, ``clock`` and ``jitter`` are injectable for tests.
    """

    def __init__(
        self,
        stream_name: str,
        client: Any,
        *,
        backoff_base_s: float = 0.02,
        backoff_max_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.stream_name = stream_name
        self.client = client
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter

    def deliver(self, records: Sequence[KinesisRecord], budget_s: float) -> list[Undelivered]:
        """Put ``records`` on the stream within ``budget_s``; return those that did not make it. Never raises.

        The budget bounds when an attempt or a backoff may start; one attempt in flight is bounded
        by the client's connect and read timeouts.
        """
        deadline = self._clock() + budget_s
        undelivered: list[Undelivered] = []
        # pending: record -> (attempts so far, last failure reason)
        pending: list[tuple[KinesisRecord, int, str]] = []
        for record in records:
            if record.size > MAX_RECORD_BYTES or not 0 < len(record.partition_key) <= MAX_PARTITION_KEY_CHARS:
                undelivered.append(Undelivered(record, "record_too_large_or_bad_key", 0))
            else:
                pending.append((record, 0, ""))
        retry = 0
        while pending:
            if self._clock() >= deadline:
                undelivered.extend(Undelivered(r, f"budget_exhausted: {reason}", n) for r, n, reason in pending)
                break
            retryable: list[tuple[KinesisRecord, int, str]] = []
            attempts = {id(record): n for record, n, _ in pending}
            for batch in batches([record for record, _, _ in pending]):
                failed, fatal = self._put(batch)
                retryable.extend((record, attempts[id(record)] + 1, reason) for record, reason in failed)
                undelivered.extend(Undelivered(record, reason, attempts[id(record)] + 1) for record, reason in fatal)
            pending = retryable
            if not pending:
                break
            retry += 1
            delay = self._jitter() * min(self._backoff_max_s, self._backoff_base_s * 2 ** (retry - 1))
            if self._clock() + delay >= deadline:
                undelivered.extend(Undelivered(r, f"budget_exhausted: {reason}", n) for r, n, reason in pending)
                break
            self._sleep(delay)
        return undelivered

    def _put(
        self, batch: list[KinesisRecord]
    ) -> tuple[list[tuple[KinesisRecord, str]], list[tuple[KinesisRecord, str]]]:
        """One PutRecords call: (records to retry, records given up), each with its reason."""
        try:
            response = self.client.put_records(
                StreamName=self.stream_name,
                Records=[{"Data": r.data, "PartitionKey": r.partition_key} for r in batch],
            )
        except Exception as error:
            reason, retryable = _classify(error)
            outcome = [(record, reason) for record in batch]
            return (outcome, []) if retryable else ([], outcome)
        if not response.get("FailedRecordCount"):
            return [], []
        entries = response.get("Records") or []
        if len(entries) != len(batch):  # a malformed answer: nothing is known to be delivered
            return [(record, "malformed_response") for record in batch], []
        # Per-record failures are ProvisionedThroughputExceededException or InternalFailure: both retryable.
        pairs = zip(batch, entries, strict=True)
        failed = [(record, str(entry["ErrorCode"])) for record, entry in pairs if entry.get("ErrorCode")]
        return failed, []
