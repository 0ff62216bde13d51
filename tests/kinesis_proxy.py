"""A recording proxy in front of the emulator's Kinesis (test support): each call, what it carried, when answered.

Point a process's ``AWS_ENDPOINT_URL`` at :attr:`RecordingKinesisProxy.endpoint`. Every request is
forwarded to the emulator unchanged and recorded with ``time.monotonic()`` timestamps (comparable
with :mod:`pulse_local.lambda_runtime`'s). ``delay_puts_s`` holds each PutRecord(s) call that long
before forwarding it, and forwards it only if its client is still connected (a request whose
sender died never reaches the service); ``black_hole=True`` never answers PutRecord(s) at all.
"""

from __future__ import annotations

import base64
import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

PUT_OPERATIONS = ("Kinesis_20131202.PutRecords", "Kinesis_20131202.PutRecord")
HOP_HEADERS = ("connection", "content-length", "transfer-encoding")


@dataclass
class KinesisCall:
    operation: str
    received_at: float
    events: list[dict[str, Any]] = field(default_factory=list)  # the records' data, decoded as JSON events
    answered_at: float | None = None
    status: int | None = None
    failed_keys: set[str] = field(default_factory=set)  # partition keys the answer reported as failed
    forwarded: bool = False

    def delivered(self) -> list[dict[str, Any]]:
        """The events this call put on the stream (answered 200 and not reported failed)."""
        if self.status != 200:
            return []
        return [event for event in self.events if event.get("id") not in self.failed_keys]


class RecordingKinesisProxy:
    def __init__(self, upstream: str, *, delay_puts_s: float = 0.0, black_hole: bool = False) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.delay_puts_s = delay_puts_s
        self.black_hole = black_hole
        self.calls: list[KinesisCall] = []
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler, self)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> RecordingKinesisProxy:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="kinesis-proxy", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.closing.set()
        self._server.shutdown()
        self._server.server_close()

    def put_calls(self) -> list[KinesisCall]:
        with self.lock:
            return [call for call in self.calls if call.operation in PUT_OPERATIONS]

    def calls_carrying(self, user_agent: str) -> list[KinesisCall]:
        """The PutRecord(s) calls that carried an event with this user agent."""
        return [c for c in self.put_calls() if any(e.get("user_agent") == user_agent for e in c.events)]


def _decode_events(operation: str, body: bytes) -> list[dict[str, Any]]:
    try:
        request = json.loads(body)
        records = request["Records"] if operation.endswith("PutRecords") else [request]
        return [json.loads(base64.b64decode(record["Data"])) for record in records]
    except (ValueError, KeyError, TypeError):
        return []


def _failed_keys(call: KinesisCall, answer: bytes) -> set[str]:
    if not call.operation.endswith("PutRecords") or call.status != 200:
        return set()
    try:
        entries = json.loads(answer).get("Records") or []
    except ValueError:
        return set()
    return {str(event.get("id")) for event, entry in zip(call.events, entries, strict=False) if entry.get("ErrorCode")}


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], proxy: RecordingKinesisProxy):
        self.proxy = proxy
        super().__init__(address, handler)


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _client_gone(self) -> bool:
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def do_POST(self) -> None:
        proxy = self.server.proxy
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        operation = self.headers.get("X-Amz-Target", "")
        call = KinesisCall(operation, time.monotonic(), _decode_events(operation, body))
        with proxy.lock:
            proxy.calls.append(call)
        if operation in PUT_OPERATIONS:
            if proxy.black_hole:
                proxy.closing.wait()
                self.close_connection = True
                return
            if proxy.delay_puts_s:
                time.sleep(proxy.delay_puts_s)
                if self._client_gone():
                    self.close_connection = True
                    return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        upstream = HTTPConnection(*proxy.upstream, timeout=30)
        try:
            upstream.request("POST", self.path, body=body, headers=headers)
            response = upstream.getresponse()
            answer = response.read()
            call.forwarded = True
            call.status = response.status
            call.failed_keys = _failed_keys(call, answer)
            call.answered_at = time.monotonic()
            head = [f"HTTP/1.1 {response.status} {response.reason}"]
            head += [f"{k}: {v}" for k, v in response.getheaders() if k.lower() not in HOP_HEADERS]
            head.append(f"Content-Length: {len(answer)}")
            self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + answer)
        except OSError:
            self.close_connection = True
        finally:
            upstream.close()
