"""Lambda after-response delivery: events wait in memory until the runtime has posted the response.

The handler queues each request's event (:meth:`AfterResponsePublisher.publish`, no I/O) and says
when it returned and when the runtime client posted its response. The internal extension
(:mod:`lambda_api.lambda_delivery.extension`) receives every invocation's INVOKE event when the invocation starts,
calls :meth:`AfterResponsePublisher.serve_invocation`, which waits for that invocation's response
to be posted and then delivers what is queued with the shared :class:`KinesisDelivery` (same
retries, budget and fallback log as the other publishers), and only then asks Lambda for its next
event. So the client never waits for Kinesis, and the environment is never frozen with events
in memory.

SIGTERM (the runtime's notice that the environment goes away) runs :meth:`shutdown`: whatever is
still queued or in flight is delivered within the grace period, or written to the fallback log.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from itertools import islice

from lambda_api.publishers.delivery import MAX_BATCH_RECORDS, KinesisDelivery, KinesisRecord, Undelivered
from lambda_api.publishers.fallback import FallbackLog
from lambda_api.publishers.kinesis import to_record
from pulse_contract.request_event import RequestEvent

logger = logging.getLogger("pulse.publisher")

# How long the extension waits for the response post once the handler has returned, and for the
# handler to be called once the invocation has begun, before it delivers anyway: the runtime client
# posts in well under a millisecond and calls the handler at once, so this only bounds a runtime
# whose post cannot be observed, or an invocation answered without the handler (an event the
# runtime client cannot decode).
POST_WAIT_S = 1.0
# Longest an invocation can last on Lambda (15 minutes): the wait when INVOKE carries no deadline.
MAX_INVOCATION_S = 900.0
# Time kept back at shutdown for writing fallback lines of what could not be confirmed.
SHUTDOWN_RESERVE_S = 0.05


class AfterResponsePublisher:
    """Queues events during an invocation; the internal extension delivers them after the response.

    Until :meth:`attach_extension` (and again after :meth:`extension_failed`) there is no extension
    to deliver later, so ``publish`` delivers in the request, like the per-request publisher.
    """

    def __init__(
        self,
        delivery: KinesisDelivery,
        fallback: FallbackLog,
        budget_s: float,
        *,
        post_wait_s: float = POST_WAIT_S,
    ) -> None:
        self.delivery = delivery
        self.fallback = fallback
        self.budget_s = budget_s
        self.post_wait_s = post_wait_s
        self._pending: deque[RequestEvent] = deque()
        # The handler's progress: noted without waking the extension (a thread switch while the
        # runtime client posts the response would cost the client); only the post itself wakes it.
        self._started: str | None = None
        self._finished: tuple[str, float] | None = None
        self._posted: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._drain_lock = threading.Lock()
        self._in_flight: list[KinesisRecord] = []
        self._abandoned = False  # shutdown wrote the in-flight records to the fallback log already
        self._deferred = False
        self._closed = False
        self._warned = False

    # The handler's side (the runtime's main thread). While events are deferred, only lock-free
    # operations: SIGTERM may interrupt any of them, and the shutdown flush must not wait for a
    # lock held here.

    def publish(self, event: RequestEvent) -> None:
        if self._closed:
            self.fallback.write(self.delivery.stream_name, [Undelivered(to_record(event), "publisher_closed", 0)])
        elif self._deferred:
            self._pending.append(event)
        else:
            undelivered = self.delivery.deliver([to_record(event)], self.budget_s)
            if undelivered:
                self.fallback.write(self.delivery.stream_name, undelivered)

    def handler_started(self, request_id: str) -> None:
        """The handler of ``request_id`` was called."""
        self._started = request_id

    def handler_finished(self, request_id: str) -> None:
        """The handler of ``request_id`` returned; its response is about to be posted."""
        self._finished = (request_id, time.monotonic())

    def response_posted(self, request_id: str) -> None:
        """The runtime client posted the response of ``request_id``: the extension may deliver."""
        if self._deferred:
            self._posted.put(request_id)

    @property
    def pending(self) -> int:
        """Events queued, not yet handed to a delivery."""
        return len(self._pending)

    @property
    def deferred(self) -> bool:
        """Whether events wait for the extension (False: delivered in the request)."""
        return self._deferred

    def flush(self) -> None:
        """Deliver what is queued now, in the caller's thread."""
        self.deliver_pending()

    def close(self) -> None:
        self._closed = True
        self.deliver_pending()
        self.fallback.close()

    # The extension's side (its own thread).

    def attach_extension(self) -> None:
        """An extension is registered and will call :meth:`serve_invocation` for every invocation."""
        self._deferred = True

    def extension_failed(self, error: Exception) -> None:
        """The extension stopped: deliver in the request from now on, and what is queued now."""
        self._deferred = False
        self.deliver_pending()

    def serve_invocation(self, request_id: str, deadline_ms: int | None) -> None:
        """Wait until the response of ``request_id`` is posted, then deliver what is queued. Never raises."""
        try:
            self._await_post(request_id, deadline_ms)
        except Exception:
            logger.exception("pulse: waiting for the response failed")
        self.deliver_pending()

    def _await_post(self, request_id: str, deadline_ms: int | None) -> None:
        began = time.monotonic()
        remaining_s = MAX_INVOCATION_S if deadline_ms is None else deadline_ms / 1000.0 - time.time()
        deadline = began + max(0.0, min(remaining_s, MAX_INVOCATION_S))
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            try:
                if self._posted.get(timeout=min(deadline - now, self.post_wait_s)) == request_id:
                    return
                continue  # left over from an earlier invocation
            except queue.Empty:
                pass
            now = time.monotonic()
            finished = self._finished
            if finished is not None and finished[0] == request_id and now - finished[1] >= self.post_wait_s:
                self._warn_once(
                    "the runtime's response post was not observed; events are delivered %.1f s after the handler "
                    "returns instead"
                )
                return
            if self._started != request_id and now - began >= self.post_wait_s:
                self._warn_once("an invocation did not reach the handler within %.1f s; its extension moved on")
                return

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            logger.warning("pulse: " + message, self.post_wait_s)

    def deliver_pending(self) -> None:
        """Deliver everything queued (batches within Kinesis limits, one budget), fallback-log the rest."""
        with self._drain_lock:
            self._deliver_locked(time.monotonic() + self.budget_s)

    def _deliver_locked(self, deadline: float) -> None:
        while self._pending:
            batch = list(islice(self._pending, MAX_BATCH_RECORDS))  # one C call: atomic under the GIL
            records = [to_record(event) for event in batch]
            self._in_flight = records  # before leaving the queue: shutdown always sees them somewhere
            for _ in batch:
                if self._pending:  # shutdown may have taken them over (and cleared the queue) meanwhile
                    self._pending.popleft()
            undelivered = self.delivery.deliver(records, max(0.0, deadline - time.monotonic()))
            if undelivered and not self._abandoned:
                self.fallback.write(self.delivery.stream_name, undelivered)
            self._in_flight = []

    # Shutdown (SIGTERM, in the main thread).

    def shutdown(self, grace_s: float) -> None:
        """Deliver what is queued or in flight within ``grace_s``; write what is unconfirmed to the fallback log.

        The work runs in a helper thread, so the grace period holds even when a Kinesis call hangs
        or the interrupted main thread was in the middle of something. An event whose call is still
        unanswered at the end is logged as a fallback line, so it may also reach the stream: at
        least once, as everywhere in Pulse.
        """
        self._closed = True
        self._deferred = False
        started = time.monotonic()
        hard_deadline = started + max(0.0, grace_s - SHUTDOWN_RESERVE_S)
        worker = threading.Thread(target=self._final_flush, args=(hard_deadline,), name="pulse-shutdown-flush")
        worker.daemon = True
        worker.start()
        worker.join(max(0.0, hard_deadline - time.monotonic()))
        # Whatever is still queued or in a call now is unconfirmed; a delivery that ends later leaves
        # the fallback log to this (so an event is logged once, and may also reach the stream).
        self._abandoned = True
        unconfirmed: dict[str, KinesisRecord] = {}
        for record in [*self._in_flight, *(to_record(event) for event in list(self._pending))]:
            unconfirmed.setdefault(record.partition_key, record)
        self._pending.clear()
        if not unconfirmed:
            return
        self.fallback.write(
            self.delivery.stream_name,
            [Undelivered(record, "shutdown: delivery unconfirmed", 0) for record in unconfirmed.values()],
        )

    def _final_flush(self, hard_deadline: float) -> None:
        # The extension may be delivering: let it finish, then deliver what is left in the time remaining.
        if not self._drain_lock.acquire(timeout=max(0.0, hard_deadline - time.monotonic())):
            return
        try:
            self._deliver_locked(hard_deadline)
        finally:
            self._drain_lock.release()
