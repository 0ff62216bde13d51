"""Putting records on Kinesis within a time budget: the one delivery component every publisher reuses.

:meth:`KinesisDelivery.deliver` splits records into ``PutRecords`` calls within Kinesis limits,
retries only what failed (the failed entries of a partial failure, or a whole call that was
throttled or could not connect) with exponential backoff and full jitter, never starts an attempt
or a backoff after the budget's deadline, never raises, and returns what is still undelivered
with the reason, for the caller to write to the fallback log.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _json_string  # type: ignore[attr-defined]
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


def kinesis_client(connect_timeout_s: float, read_timeout_s: float, max_pool_connections: int = 10) -> PutRecordsClient:
    """One Kinesis client with short timeouts and no retries of its own (deliver owns retries).

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
        parameter_validation=False,  # records are built within limits here
    )
    return PutRecordsClient(boto3.client("kinesis", config=config))


class PutRecordsClient:
    """PutRecords through a boto3 Kinesis client's own signer and connection pool, without its model walk.

    botocore serialises and parses every record by walking the service model, about 13 µs of CPU
    per record: most of what monitoring costs a busy server. This writes the same JSON body and
    reads the same JSON answer directly (about 4 µs), with the client's credentials, region,
    endpoint, proxies, TLS settings and timeouts. Answers and errors look like the boto3 client's
    (the same response dict; ``ClientError`` with the error code; botocore's connection errors).
    Without the client's internals it relies on (long stable, but private), it calls
    ``client.put_records`` instead.

    The direct path skips botocore's call pipeline (its events, and ``_make_api_call`` itself), so it
    is taken only while nothing but botocore's own handlers listens there: a ``Stubber``, moto's
    ``mock_aws``, or an instrumentation (OpenTelemetry, X-Ray) that hooks the client's events or
    wraps its API call gets every call through ``client.put_records``, as with any boto3 client.
    """

    TARGET = "Kinesis_20131202.PutRecords"
    # The events of a boto3 call that the direct path does not emit (signing's own still fire).
    BYPASSED_EVENTS = tuple(
        f"{event}.kinesis.PutRecords"
        for event in (
            "provide-client-params",
            "before-parameter-build",
            "before-call",
            "request-created",
            "before-send",
            "needs-retry",
            "after-call",
            "after-call-error",
        )
    )

    def __init__(self, client: Any) -> None:
        self.client = client
        self._signer = getattr(client, "_request_signer", None)
        self._http = getattr(getattr(client, "_endpoint", None), "http_session", None)
        self._url = str(client.meta.endpoint_url).rstrip("/") + "/"
        self.direct = self._signer is not None and callable(getattr(self._http, "send", None))
        self._checked_handlers: object = None  # the emitter's lookup cache that _foreign was found in
        self._foreign: list[Any] = []  # handlers of the bypassed events that are not botocore's

    def hooked(self) -> bool:
        """Whether anything but botocore listens to the call's events, or the API call is wrapped.

        The handlers are looked up again only once one is registered or removed (botocore then
        replaces its emitter's lookup cache), so a call normally pays a microsecond or two for this.
        """
        call = vars(self.client).get("_make_api_call") or next(
            (vars(klass)["_make_api_call"] for klass in type(self.client).__mro__ if "_make_api_call" in vars(klass)),
            None,
        )
        wrapped = not (  # wrapt's proxies (OpenTelemetry, X-Ray) are not functions to type(); a patch is another one
            type(call) is types.FunctionType
            and call.__module__ == "botocore.client"
            and call.__qualname__ == "BaseClient._make_api_call"
        )
        emitter = getattr(getattr(self.client.meta, "events", None), "_emitter", None)
        cache, handlers = getattr(emitter, "_lookup_cache", None), getattr(emitter, "_handlers", None)
        if cache is None or handlers is None:
            return True  # botocore's internals moved: take the ordinary path
        if cache is not self._checked_handlers:
            self._foreign = [
                handler
                for event in self.BYPASSED_EVENTS
                for handler in handlers.prefix_search(event)
                if not _botocore_handler(handler)
            ]
            self._checked_handlers = cache
        # A handler that says it is switched off (moto's, registered at import, until mock_aws starts) does
        # not listen; it is asked on every call, since switching it on registers nothing.
        return wrapped or any(getattr(handler, "enabled", True) is not False for handler in self._foreign)

    def put_records(self, StreamName: str, Records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not self.direct or self.hooked():
            return dict(self.client.put_records(StreamName=StreamName, Records=list(Records)))
        from botocore.awsrequest import AWSRequest

        entries = ",".join(
            f'{{"Data":"{base64.b64encode(_as_bytes(r["Data"])).decode("ascii")}",'
            f'"PartitionKey":{_json_string(r["PartitionKey"])}}}'
            for r in Records
        )
        body = f'{{"StreamName":{_json_string(StreamName)},"Records":[{entries}]}}'.encode("ascii")
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": self.TARGET}
        request = AWSRequest(method="POST", url=self._url, data=body, headers=headers)
        self._signer.sign("PutRecords", request)  # type: ignore[union-attr]
        response = self._http.send(request.prepare())  # type: ignore[union-attr]
        if response.status_code >= 300:
            raise _client_error(response.status_code, response.headers, response.content)
        answer: dict[str, Any] = json.loads(response.content)
        return answer


def _botocore_handler(handler: Any) -> bool:
    """A handler botocore registers itself (not its Stubber's, nor anyone else's)."""
    target = getattr(handler, "func", handler)  # functools.partial
    module = getattr(target, "__module__", None) or type(target).__module__
    return module.startswith("botocore.") and not module.startswith("botocore.stub")


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def _client_error(status: int, headers: Any, content: bytes) -> Exception:
    """The ClientError boto3 would raise for an error answer of the Kinesis JSON protocol."""
    from botocore.exceptions import ClientError

    try:
        payload = json.loads(content) if content else {}
    except ValueError:
        payload = {}
    if not isinstance(payload, dict):
        payload = {}
    code = str(headers.get("x-amzn-ErrorType", "")).split(":")[0]
    code = code or str(payload.get("__type", "")).rsplit("#", 1)[-1] or f"HTTP{status}"
    message = str(payload.get("message") or payload.get("Message") or "")
    error = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(error, "PutRecords")  # type: ignore[arg-type]


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


CIRCUIT_OPEN = "circuit_open"


class CircuitBreaker:
    """Stops waiting for a Kinesis that keeps failing: after ``failures`` failed deliveries in a row it
    opens, and deliveries give up at once (their records go to the fallback log) for ``cooldown_s``;
    then one delivery probes, and its success closes the breaker (its failure opens it again).

    On Lambda this bounds what an outage costs each invocation (the environment is held for the
    delivery after every response); on a server it keeps the queue from filling behind a dead stream.
    Thread-safe.
    """

    def __init__(self, failures: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failed = 0
        self._open_until = 0.0
        self._probing = False
        self.opened = 0  # how many times it opened (for tests and benchmarks)

    @property
    def is_open(self) -> bool:
        return self._failed >= self.failures

    def allow(self) -> bool:
        """Whether a delivery may call Kinesis now (closed, or this one is the probe after the cool-down)."""
        with self._lock:
            if self._failed < self.failures:
                return True
            if self._probing or self._clock() < self._open_until:
                return False
            self._probing = True
            return True

    def record(self, succeeded: bool) -> None:
        """The outcome of a delivery that :meth:`allow` let through."""
        with self._lock:
            self._probing = False
            if succeeded:
                self._failed = 0
                return
            self._failed += 1
            if self._failed >= self.failures:
                if self._open_until <= self._clock():
                    self.opened += 1
                self._open_until = self._clock() + self.cooldown_s


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
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.stream_name = stream_name
        self.breaker = breaker
        self.client = client
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter

    def deliver(self, records: Sequence[KinesisRecord], budget_s: float) -> list[Undelivered]:
        """Put ``records`` on the stream within ``budget_s``; return those that did not make it. Never raises.

        The budget bounds when an attempt or a backoff may start; one attempt in flight is bounded
        by the client's connect and read timeouts. With the breaker open, nothing is attempted: every
        record comes back at once, reason ``circuit_open``.
        """
        breaker = self.breaker
        if breaker is not None and records:
            if not breaker.allow():
                return [Undelivered(record, CIRCUIT_OPEN, 0) for record in records]
            undelivered = self._deliver(records, budget_s)
            # Failed: nothing got through (Kinesis down, black-holed, or refusing every record).
            breaker.record(len(undelivered) < len(records))
            return undelivered
        return self._deliver(records, budget_s)

    def _deliver(self, records: Sequence[KinesisRecord], budget_s: float) -> list[Undelivered]:
        deadline = self._clock() + budget_s
        undelivered: list[Undelivered] = []
        pending: list[KinesisRecord] = []
        for record in records:
            if record.size > MAX_RECORD_BYTES or not 0 < len(record.partition_key) <= MAX_PARTITION_KEY_CHARS:
                undelivered.append(Undelivered(record, "record_too_large_or_bad_key", 0))
            else:
                pending.append(record)
        # Every round sends each pending record once, so a record retried in round n was attempted n times.
        attempt = 0
        while pending:
            attempt += 1
            retryable: list[tuple[KinesisRecord, str]] = []
            for batch in batches(pending):
                failed, fatal = self._put(batch)
                retryable.extend(failed)
                undelivered.extend(Undelivered(record, reason, attempt) for record, reason in fatal)
            if not retryable:
                break
            delay = self._jitter() * min(self._backoff_max_s, self._backoff_base_s * 2 ** (attempt - 1))
            if self._clock() + delay >= deadline:
                undelivered.extend(Undelivered(r, f"budget_exhausted: {reason}", attempt) for r, reason in retryable)
                break
            self._sleep(delay)
            pending = [record for record, _ in retryable]
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
