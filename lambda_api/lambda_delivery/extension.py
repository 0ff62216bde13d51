"""An internal Lambda extension: a thread in the runtime process that takes part in every invocation.

Lambda ends an invocation, and may freeze the environment, only when the runtime has posted the
response AND every registered extension has asked for its next event (Extensions API, "Invoke
phase"). An extension that registers for ``INVOKE`` during init therefore gets time after the
response to finish work, such as putting the invocation's request events on Kinesis, before it
asks for the next event.

What the Lambda documentation (runtimes-extensions-api) fixes, and this module follows:

- Register with ``POST http://${AWS_LAMBDA_RUNTIME_API}/2020-01-01/extension/register``, header
  ``Lambda-Extension-Name``, body ``{"events": [...]}``; the answer's ``Lambda-Extension-Identifier``
  header names the extension in every later call. Registration belongs to the init phase, which
  ends when the runtime first asks for an invocation, so the handler module registers at import.
- Internal extensions "are started and stopped by the runtime process, so they are not permitted
  to register for the Shutdown event": this one registers for ``INVOKE`` only. What an internal
  extension gets instead is the runtime's shutdown: with any extension registered, Lambda sends
  the runtime process SIGTERM before it removes the environment and allows it 500 ms (then
  SIGKILL). :func:`on_sigterm` hooks that.
- ``GET /2020-01-01/extension/event/next`` blocks until the next event; no timeout may be set on it.
- The name header is documented as the extension's "full file name", which is how Lambda matches
  external extensions with their executables in ``/opt/extensions``; an internal extension has no
  such file, and AWS's own internal-extension samples register with a plain name, as this one does.
"""

from __future__ import annotations

import http.client
import json
import logging
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

logger = logging.getLogger("pulse.extension")

API_VERSION = "2020-01-01"
EXTENSION_NAME = "pulse-events"
NAME_HEADER = "Lambda-Extension-Name"
IDENTIFIER_HEADER = "Lambda-Extension-Identifier"
REGISTER_TIMEOUT_S = 2.0


class ExtensionsApiError(RuntimeError):
    """The Extensions API refused a call, answered unexpectedly, or could not be reached."""


class ExtensionsApiClient:
    """The two calls an internal extension makes: register once, then next, next, next..."""

    def __init__(self, address: str, name: str = EXTENSION_NAME) -> None:
        self.address = address
        self.name = name
        self.identifier: str | None = None
        self._socket: socket.socket | None = None

    def register(self, events: Sequence[str], timeout_s: float = REGISTER_TIMEOUT_S) -> dict[str, Any]:
        """Register for ``events`` and return the answer's body; ExtensionsApiError if refused."""
        body = json.dumps({"events": list(events)})
        connection = http.client.HTTPConnection(self.address, timeout=timeout_s)
        try:
            connection.request(
                "POST",
                f"/{API_VERSION}/extension/register",
                body=body,
                headers={NAME_HEADER: self.name, "Content-Type": "application/json"},
            )
            response = connection.getresponse()
            payload = response.read()
            identifier = response.getheader(IDENTIFIER_HEADER)
        except OSError as error:
            raise ExtensionsApiError(f"cannot reach the Extensions API at {self.address}: {error}") from None
        finally:
            connection.close()
        if response.status != 200 or not identifier:
            raise ExtensionsApiError(
                f"registration refused: HTTP {response.status} {payload[:300].decode('utf-8', 'replace')}"
            )
        self.identifier = identifier
        try:
            answer = json.loads(payload) if payload else {}
        except ValueError:
            answer = {}
        return answer if isinstance(answer, dict) else {}

    def next_event(self) -> dict[str, Any]:
        """Block until Lambda sends the next event (no timeout: the environment may be frozen meanwhile).

        One kept-alive connection, read by hand: the answer arrives as the invocation starts, in
        parallel with the handler, and http.client's header parsing would hold the interpreter lock
        for a good part of a millisecond of the client's time; this costs a few microseconds.
        """
        if self.identifier is None:
            raise ExtensionsApiError("next before register")
        request = (
            f"GET /{API_VERSION}/extension/event/next HTTP/1.1\r\nHost: {self.address}\r\n"
            f"{IDENTIFIER_HEADER}: {self.identifier}\r\n\r\n"
        ).encode("latin-1")
        for attempt in (1, 2):  # a kept-alive connection the server closed is reopened once
            try:
                if self._socket is None:
                    host, _, port = self.address.rpartition(":")
                    self._socket = socket.create_connection((host, int(port)))
                    self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._socket.sendall(request)
                status, payload = _read_response(self._socket)
            except (ConnectionError, OSError, ValueError) as error:
                self._close()
                if attempt == 2 or not isinstance(error, ConnectionError):
                    raise ExtensionsApiError(f"next failed: {error}") from None
                continue
            if status != 200:
                # 403 or 500: per the API, the extension should stop (its environment is being torn down).
                raise ExtensionsApiError(f"next refused: HTTP {status} {payload[:300]!r}")
            try:
                event = json.loads(payload)
            except ValueError:
                raise ExtensionsApiError(f"next answered with malformed JSON: {payload[:300]!r}") from None
            if not isinstance(event, dict):
                raise ExtensionsApiError(f"next answered with {type(event).__name__}, not an object")
            return event
        raise AssertionError("unreachable")

    def _close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and body of one HTTP/1.1 answer (Content-Length or chunked); ConnectionError if the peer closed."""
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("connection closed by the Extensions API")
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length: int | None = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip())
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
    if chunked:
        return status, _read_chunked(sock, body)
    length = length or 0
    while len(body) < length:
        chunk = sock.recv(max(65536, length - len(body)))
        if not chunk:
            raise ConnectionError("connection closed by the Extensions API")
        body += chunk
    return status, body[:length]


def _read_chunked(sock: socket.socket, data: bytes) -> bytes:
    body = b""
    while True:
        while b"\r\n" not in data:
            data += _recv(sock)
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0].strip(), 16)
        while len(data) < size + 2:
            data += _recv(sock)
        if size == 0:
            return body
        body += data[:size]
        data = data[size + 2 :]


def _recv(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise ConnectionError("connection closed by the Extensions API")
    return chunk


class InternalExtension:
    """A registered extension's event loop in a daemon thread: each INVOKE is handed to ``on_invoke``.

    ``on_invoke(request_id, deadline_ms)`` runs in the extension thread and the invocation is not
    over until it returns; then the thread asks for the next event. If the API fails, the loop
    ends and ``on_failure(error)`` is called once.
    """

    def __init__(
        self,
        client: ExtensionsApiClient,
        on_invoke: Callable[[str, int | None], None],
        on_failure: Callable[[Exception], None],
    ) -> None:
        self.client = client
        self.on_invoke = on_invoke
        self.on_failure = on_failure
        self.invocations = 0
        self._thread = threading.Thread(target=self._run, name="pulse-lambda-extension", daemon=True)

    @classmethod
    def register(
        cls,
        address: str,
        on_invoke: Callable[[str, int | None], None],
        on_failure: Callable[[Exception], None],
        name: str = EXTENSION_NAME,
    ) -> InternalExtension:
        """Register for INVOKE (internal extensions may not register for SHUTDOWN); ExtensionsApiError if refused."""
        client = ExtensionsApiClient(address, name)
        client.register(["INVOKE"])
        return cls(client, on_invoke, on_failure)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            while True:
                event = self.client.next_event()
                kind = event.get("eventType")
                if kind == "SHUTDOWN":  # not registered for it; honoured if Lambda ever sends it
                    return
                if kind != "INVOKE":
                    logger.warning("pulse: extension ignored an event of type %r", kind)
                    continue
                self.invocations += 1
                deadline = event.get("deadlineMs")
                self.on_invoke(str(event.get("requestId", "")), deadline if isinstance(deadline, int) else None)
        except Exception as error:
            logger.error("pulse: the Lambda extension stopped: %s", error)
            try:
                self.on_failure(error)
            except Exception:
                logger.exception("pulse: extension failure handling failed")


# Watching the runtime client post the response.

# awslambdaric (the runtime interface client of Lambda's Python runtimes and of container images)
# posts from these methods of its LambdaRuntimeClient, right after the handler returns.
RUNTIME_POST_FUNCTIONS = frozenset({"post_invocation_result", "post_invocation_error"})
_watch: Callable[..., object] | None = None


def watch_response_post(on_posted: Callable[[], None]) -> None:
    """Call ``on_posted`` in this thread as soon as the runtime client has posted the response.

    Called by the handler just before it returns: the runtime client then serialises the result and
    posts it from a method named in RUNTIME_POST_FUNCTIONS. A profile function (this thread only)
    notices that method's return and removes itself. :func:`cancel_response_watch` removes it too,
    so a runtime that posts differently never keeps it for more than one invocation.
    """
    global _watch
    cancel_response_watch()
    previous = sys.getprofile()

    def profile(frame: FrameType, event: Any, arg: Any) -> None:
        global _watch
        if previous is not None:
            previous(frame, event, arg)
        if event == "return" and frame.f_code.co_name in RUNTIME_POST_FUNCTIONS:
            sys.setprofile(previous)
            _watch = None
            try:
                on_posted()
            except Exception:
                logger.exception("pulse: response-posted callback failed")

    _watch = profile
    sys.setprofile(profile)


def cancel_response_watch() -> None:
    """Remove a watch still installed in this thread (the runtime posted in some other way)."""
    global _watch
    if _watch is not None and sys.getprofile() is _watch:
        sys.setprofile(None)
    _watch = None


# Shutdown: SIGTERM to the runtime process.

SHUTDOWN_GRACE_S = 0.45  # of the 500 ms Lambda allows a runtime with an internal extension


def on_sigterm(flush: Callable[[float], None], grace_s: float = SHUTDOWN_GRACE_S) -> bool:
    """Run ``flush(grace_s)`` when SIGTERM arrives, then end the process as SIGTERM would have.

    A handler installed before keeps working: it is called after the flush. Returns False when the
    handler cannot be installed (not the main thread).
    """
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except ValueError:
        return False

    def handle(signum: int, frame: FrameType | None) -> None:
        try:
            flush(grace_s)
        except Exception:
            logger.exception("pulse: flush on SIGTERM failed")
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_IGN:
            return
        else:  # the default: terminate, with the status SIGTERM gives
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.raise_signal(signal.SIGTERM)

    try:
        signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not the main thread
        return False
    return True
