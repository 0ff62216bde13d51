"""Kinesis publishers: per-request (Lambda) and buffered in the background (long-running servers).

Both hand records to :class:`~lambda_api.publishers.delivery.KinesisDelivery` and write whatever
it could not deliver to the fallback log. Neither ever raises into the request.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections import deque

from lambda_api.events import RequestEvent
from lambda_api.publishers.delivery import MAX_BATCH_RECORDS, KinesisDelivery, KinesisRecord, Undelivered
from lambda_api.publishers.fallback import FallbackLog

logger = logging.getLogger("pulse.publisher")


def to_record(event: RequestEvent) -> KinesisRecord:
    """The Kinesis record of an event: its JSON, keyed by its id (random, so shards fill evenly)."""
    return KinesisRecord(data=event.to_json(), partition_key=event.id)


class RequestKinesisPublisher:
    """Delivers each event before ``publish`` returns: on Lambda nothing may stay in flight after the answer.

    ``publish`` blocks for at most the request budget (plus one attempt's client timeouts); that
    is the point of this mode, and why it is meant for one request at a time (Lambda).
    """

    def __init__(self, delivery: KinesisDelivery, fallback: FallbackLog, budget_s: float) -> None:
        self.delivery = delivery
        self.fallback = fallback
        self.budget_s = budget_s

    def publish(self, event: RequestEvent) -> None:
        undelivered = self.delivery.deliver([to_record(event)], self.budget_s)
        if undelivered:
            self.fallback.write(self.delivery.stream_name, undelivered)

    def flush(self) -> None:
        """Nothing is ever pending in this mode."""

    def close(self) -> None:
        self.fallback.close()


class BufferedKinesisPublisher:
    """Queues events and delivers them from one background thread in PutRecords batches.

    Flushes when ``flush_records`` events wait or ``flush_interval_s`` has passed, whichever comes
    first; on :meth:`flush`/:meth:`close` (lifespan shutdown, interpreter exit) synchronously. The
    queue is bounded: beyond ``max_events`` an event goes to the fallback log instead of memory.
    """

    def __init__(
        self,
        delivery: KinesisDelivery,
        fallback: FallbackLog,
        *,
        budget_s: float = 5.0,
        max_events: int = 10_000,
        flush_interval_s: float = 1.0,
        flush_records: int = MAX_BATCH_RECORDS,
    ) -> None:
        self.delivery = delivery
        self.fallback = fallback
        self.budget_s = budget_s
        self.max_events = max_events
        self.flush_interval_s = flush_interval_s
        self.flush_records = min(flush_records, MAX_BATCH_RECORDS)
        self._pending: deque[RequestEvent] = deque()
        self._wake = threading.Event()
        self._drain_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False
        # Flush at interpreter exit too (a server stopped without lifespan); weak, so tests can drop publishers.
        atexit.register(_close_if_alive, weakref.ref(self))

    def publish(self, event: RequestEvent) -> None:
        with self._state_lock:  # uncontended in practice; makes "closed" and "queued" exclusive
            if self._closed:
                refused = "publisher_closed"
            elif len(self._pending) >= self.max_events:
                refused = "buffer_full"
            else:
                refused = ""
                self._pending.append(event)
        if refused:
            self.fallback.write(self.delivery.stream_name, [Undelivered(to_record(event), refused, 0)])
            return
        if self._thread is None:
            self._start()
        if len(self._pending) >= self.flush_records:
            self._wake.set()

    @property
    def pending(self) -> int:
        """Events queued, not yet handed to a PutRecords call."""
        return len(self._pending)

    @property
    def delivering(self) -> bool:
        """Whether a flush is under way (in the background thread or a caller's)."""
        return self._drain_lock.locked()

    def flush(self) -> None:
        """Deliver everything queued now, in the caller's thread (each batch within the flush budget)."""
        self._drain()

    def close(self) -> None:
        """Stop the background thread, deliver what is left, and refuse (fallback-log) later events."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.budget_s + 1.0)
        self._drain()
        self.fallback.close()

    def _start(self) -> None:
        # Started on first use rather than in __init__, so a server that forks workers after
        # creating the app gets the thread in the worker that serves.
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pulse-kinesis-publisher", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        next_flush = time.monotonic() + self.flush_interval_s
        while not self._closed:
            self._wake.wait(max(0.0, next_flush - time.monotonic()))
            self._wake.clear()
            due = time.monotonic() >= next_flush
            try:
                # Woken by size: only full batches go, the rest waits to fill up (a call per 500 events,
                # not one per handful that arrived during the last call). On the interval: everything.
                self._drain(full_batches_only=not due)
            except Exception:
                logger.exception("pulse: background flush failed")
            if due:
                next_flush = time.monotonic() + self.flush_interval_s

    def _drain(self, full_batches_only: bool = False) -> None:
        with self._drain_lock:
            while self._pending and (not full_batches_only or len(self._pending) >= self.flush_records):
                batch: list[RequestEvent] = []
                while self._pending and len(batch) < self.flush_records:
                    batch.append(self._pending.popleft())
                records = [to_record(event) for event in batch]
                undelivered = self.delivery.deliver(records, self.budget_s)
                if undelivered:
                    self.fallback.write(self.delivery.stream_name, undelivered)


def _close_if_alive(ref: weakref.ref[BufferedKinesisPublisher]) -> None:
    publisher = ref()
    if publisher is not None:
        publisher.close()
