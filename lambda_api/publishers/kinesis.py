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

from lambda_api.publishers.delivery import MAX_BATCH_RECORDS, KinesisDelivery, KinesisRecord, Undelivered
from lambda_api.publishers.fallback import FallbackLog
from pulse_contract.request_event import RequestEvent

logger = logging.getLogger("pulse.publisher")

# Time close() keeps back before its deadline for writing what is unconfirmed to the fallback log.
SHUTDOWN_RESERVE_S = 1.0
OVERFLOW_REASON = "buffer_full"


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
    queue is bounded: beyond ``max_events`` an event goes to the fallback log instead of memory,
    written by a small writer thread, never by ``publish``'s caller (the server's event loop): a
    slow log (a full disk, a blocked stderr pipe) must not stall requests exactly when Kinesis is
    already in trouble. That hand-off holds at most ``max_events`` more; only beyond both bounds
    does the caller write its own line (back-pressure rather than a lost event).
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
        shutdown_deadline_s: float = 20.0,
    ) -> None:
        self.delivery = delivery
        self.shutdown_deadline_s = shutdown_deadline_s
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
        self._in_flight: list[KinesisRecord] = []
        self._abandoned = False  # close() wrote what was unconfirmed at its deadline to the fallback log
        self._drain_deadline: float | None = None
        # Events refused for a full queue, waiting for the fallback writer thread (bounded by max_events too).
        self._overflow: deque[RequestEvent] = deque()
        self._overflow_wake = threading.Event()
        self._overflow_lock = threading.Lock()  # one writer of overflow lines at a time (its thread or close)
        self._writer: threading.Thread | None = None
        # Flush at interpreter exit too (a server stopped without lifespan); weak, so tests can drop publishers.
        atexit.register(_close_if_alive, weakref.ref(self))

    def publish(self, event: RequestEvent) -> None:
        handed_off = False
        with self._state_lock:  # uncontended in practice; makes "closed" and "queued" exclusive
            if self._closed:
                refused = "publisher_closed"  # after shutdown: no server loop is serving any more
            elif len(self._pending) >= self.max_events:
                refused = OVERFLOW_REASON
                if len(self._overflow) < self.max_events:
                    self._overflow.append(event)  # the writer thread logs it; this caller moves on
                    handed_off = True
            else:
                refused = ""
                self._pending.append(event)
        if handed_off:
            if self._writer is None:
                self._start_writer()
            self._overflow_wake.set()
            return
        if refused:  # closed, or the writer is a whole queue behind: write here rather than lose the event
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

    @property
    def overflowing(self) -> int:
        """Events refused for a full queue whose fallback lines the writer thread has not written yet."""
        return len(self._overflow)

    def flush(self) -> None:
        """Deliver everything queued now, in the caller's thread (each batch within the flush budget);
        write the fallback lines of events refused for a full queue that the writer has not written yet."""
        self._drain()
        self._write_overflow()

    def close(self, deadline_s: float | None = None) -> None:
        """Stop, deliver what is queued, and refuse (fallback-log) later events; return within ``deadline_s``.

        ``deadline_s`` (default ``shutdown_deadline_s``) should sit inside the platform's grace period
        (SIGTERM to SIGKILL). Delivery runs in a helper thread; whatever is still queued or in an
        unanswered call when the deadline nears is written to the fallback log before it, so nothing
        queued is lost without a trace (an unanswered call's records may also reach the stream: at
        least once).
        """
        started = time.monotonic()
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        deadline = started + (self.shutdown_deadline_s if deadline_s is None else deadline_s)
        hard = deadline - min(SHUTDOWN_RESERVE_S, (deadline - started) / 2)
        self._drain_deadline = hard
        self._wake.set()
        worker = threading.Thread(target=self._final_flush, name="pulse-shutdown-flush", daemon=True)
        worker.start()
        worker.join(max(0.0, hard - time.monotonic()))
        with self._state_lock:
            self._abandoned = True  # a delivery that ends later leaves the fallback log to this
            unconfirmed = {r.partition_key: r for r in self._in_flight}
            for event in self._pending:
                record = to_record(event)
                unconfirmed.setdefault(record.partition_key, record)
            self._pending.clear()
        if unconfirmed:
            reason = "shutdown: delivery unconfirmed"
            self.fallback.write(self.delivery.stream_name, [Undelivered(r, reason, 0) for r in unconfirmed.values()])
        self._write_overflow()  # waits for a batch the writer thread is writing, then writes the rest
        self.fallback.close()

    def _final_flush(self) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(0.0, (self._drain_deadline or 0.0) - time.monotonic()))
        self._drain()

    def _start(self) -> None:
        # Started on first use rather than in __init__, so a server that forks workers after
        # creating the app gets the thread in the worker that serves.
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pulse-kinesis-publisher", daemon=True)
                self._thread.start()

    def _start_writer(self) -> None:
        with self._start_lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._run_writer, name="pulse-fallback-writer", daemon=True)
                self._writer.start()

    def _run_writer(self) -> None:
        while True:
            self._overflow_wake.wait()
            self._overflow_wake.clear()
            try:
                self._write_overflow()
            except Exception:  # FallbackLog.write never raises; this keeps the thread alive regardless
                logger.exception("pulse: fallback writer failed")

    def _write_overflow(self) -> None:
        """Write the fallback lines of every event handed to the writer (in batches, so memory is freed as it goes)."""
        with self._overflow_lock:
            while self._overflow:
                batch: list[Undelivered] = []
                while self._overflow and len(batch) < MAX_BATCH_RECORDS:
                    batch.append(Undelivered(to_record(self._overflow.popleft()), OVERFLOW_REASON, 0))
                self.fallback.write(self.delivery.stream_name, batch)

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
        # Fallback lines are written after the lock is released: a slow log never holds up a flush.
        while True:
            with self._drain_lock:
                if not self._pending or (full_batches_only and len(self._pending) < self.flush_records):
                    return
                batch: list[RequestEvent] = []
                while self._pending and len(batch) < self.flush_records:
                    batch.append(self._pending.popleft())
                records = [to_record(event) for event in batch]
                self._in_flight = records
                budget = self.budget_s
                if self._drain_deadline is not None:  # closing: no call may outlast close()'s deadline
                    budget = min(budget, max(0.0, self._drain_deadline - time.monotonic()))
                undelivered = self.delivery.deliver(records, budget) if budget > 0 else _unsent(records)
                self._in_flight = []
                abandoned = self._abandoned
            if undelivered and not abandoned:
                self.fallback.write(self.delivery.stream_name, undelivered)


def _unsent(records: list[KinesisRecord]) -> list[Undelivered]:
    return [Undelivered(record, "shutdown: deadline", 0) for record in records]


def _close_if_alive(ref: weakref.ref[BufferedKinesisPublisher]) -> None:
    publisher = ref()
    if publisher is not None:
        publisher.close()
