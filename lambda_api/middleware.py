"""The request-event middleware: pure ASGI, one line on any FastAPI (or Starlette) app.

    app.add_middleware(PulseMiddleware)

Every HTTP request becomes one schema-v1 event handed to the publisher after the response's last
byte (or the app's exception, which still propagates). Monitoring never raises into the request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from functools import lru_cache
from typing import Any

from lambda_api.publishers import Publisher, build_publisher
from lambda_api.settings import ApiSettings, load_settings
from pulse_contract.request_event import SCHEMA_VERSION, UNKNOWN_CLIENT, UNMATCHED_ROUTE, RequestEvent

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger("pulse.middleware")

# Only the last hops of a forwarded chain are examined; a hostile header cannot cost more.
MAX_FORWARDED_HOPS = 16
MAX_CLIENT_IP_CHARS = 64


class PulseMiddleware:
    """Turns each HTTP request into a :class:`RequestEvent` for the publisher.

    ``settings`` default to the ``PULSE_*`` environment; ``publisher`` to the one they select
    (``PULSE_PUBLISHER=off``: no publisher, and the middleware only passes requests through).
    """

    def __init__(self, app: ASGIApp, settings: ApiSettings | None = None, publisher: Publisher | None = None) -> None:
        self.app = app
        self.settings = settings if settings is not None else load_settings()
        self.publisher = publisher if publisher is not None else build_publisher(self.settings)
        excluded = self.settings.excluded_routes
        self._excluded = frozenset(route for route in excluded if not route.endswith("*"))
        self._excluded_prefixes = tuple(route[:-1] for route in excluded if route.endswith("*"))
        self._max_path = self.settings.max_path_length
        self._max_user_agent = self.settings.max_user_agent_length
        self._record_path = self.settings.record_path
        self._trusted = self.settings.trusted_proxies
        self._is_trusted = lru_cache(maxsize=4096)(self._in_trusted_networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        publisher = self.publisher
        kind = scope["type"]
        if publisher is None or kind != "http":
            if publisher is not None and kind == "lifespan":
                await self.app(scope, receive, self._flushing_on_shutdown(send, publisher))
                return
            await self.app(scope, receive, send)
            return

        ts = time.time_ns() // 1_000_000
        started = time.perf_counter()
        root_path = scope.get("root_path", "")
        status = 0
        bytes_out = 0
        finished = 0.0
        start_headers: Any = ()

        async def observe(message: Message) -> None:
            nonlocal status, bytes_out, finished, start_headers
            kind = message["type"]
            if kind == "http.response.body":
                bytes_out += len(message.get("body", b""))
                if not message.get("more_body", False):
                    await send(message)
                    finished = time.perf_counter()
                    return
            elif kind == "http.response.start":
                status = message["status"]
                start_headers = message.get("headers") or ()
            elif kind == "http.response.pathsend":  # a file sent by the server: its size is the header's
                await send(message)
                finished = time.perf_counter()
                bytes_out = _content_length(start_headers) or bytes_out
                return
            await send(message)

        raised = False
        try:
            await self.app(scope, receive, observe)
        except Exception:
            raised = True
            raise
        finally:
            try:
                ended = finished or time.perf_counter()
                event = self._event(scope, root_path, ts, (ended - started) * 1000.0, status, bytes_out, raised)
                if event is not None:
                    publisher.publish(event)
            except Exception:
                logger.warning("pulse: could not record a request event", exc_info=True)

    def _event(
        self,
        scope: Scope,
        root_path: str,
        ts: int,
        latency_ms: float,
        status: int,
        bytes_out: int,
        raised: bool,
    ) -> RequestEvent | None:
        route = self._route_template(scope, root_path)
        if route in self._excluded or (self._excluded_prefixes and route.startswith(self._excluded_prefixes)):
            return None
        user_agent = b""
        forwarded: list[bytes] = []
        for name, value in scope.get("headers") or ():
            if name == b"user-agent":
                user_agent = value
            elif name == b"x-forwarded-for" and self._trusted:
                forwarded.append(value)
        return RequestEvent(
            SCHEMA_VERSION,
            os.urandom(16).hex(),  # 128 random bits, like uuid4, at a third of the cost
            ts,
            str(scope.get("method", ""))[:16],
            route,
            self._path(scope),
            500 if raised or not status else status,  # no response at all: the server answers 500
            round(latency_ms, 3),
            self._client_ip(scope.get("client"), forwarded),
            user_agent[: self._max_user_agent * 4].decode("utf-8", "replace")[: self._max_user_agent],
            bytes_out,
        )

    def _path(self, scope: Scope) -> str:
        """The path as ``PULSE_RECORD_PATH`` allows: nothing (default), redacted, or as requested."""
        if self._record_path == "off":
            return ""
        path = str(scope.get("path", ""))[: self._max_path]
        return redact_path(path) if self._record_path == "redacted" else path

    def _route_template(self, scope: Scope, root_path: str) -> str:
        """The matched route's template; mounted apps' routes get the mount's prefix."""
        route = scope.get("route")
        template = getattr(route, "path_format", None)
        if not isinstance(template, str):
            # FastAPI records its own routes in the scope, not plain Starlette ones (add_route, mounts):
            # when one of those served the request, find it again among the app's top-level routes.
            return self._plain_route_template(scope, root_path) if "endpoint" in scope else UNMATCHED_ROUTE
        mounted = scope.get("root_path", "")
        prefix = mounted[len(root_path) :] if mounted != root_path and mounted.startswith(root_path) else ""
        if prefix and _is_mount(route):
            # The route is the Mount itself (a non-router app): its own path is both in the prefix and the template.
            own = str(getattr(route, "path", ""))
            prefix = prefix[: -len(own)] if own and prefix.endswith(own) else ""
        return prefix + template

    @staticmethod
    def _plain_route_template(scope: Scope, root_path: str) -> str:
        from starlette.routing import Match

        probe = {"type": "http", "path": scope.get("path", ""), "root_path": root_path, "method": scope.get("method")}
        for candidate in getattr(scope.get("router"), "routes", ()):
            template = getattr(candidate, "path_format", None)
            if isinstance(template, str) and candidate.matches(probe)[0] is not Match.NONE:
                return template
        return UNMATCHED_ROUTE

    def _client_ip(self, client: Any, forwarded: list[bytes]) -> str:
        """The socket peer, or with trusted proxies the rightmost X-Forwarded-For hop that is not one of them."""
        peer = str(client[0])[:MAX_CLIENT_IP_CHARS] if client and client[0] else None
        if peer is None:
            return UNKNOWN_CLIENT
        if not forwarded or not self._is_trusted(peer):
            return peer
        hops = b",".join(forwarded).decode("latin-1").split(",")[-MAX_FORWARDED_HOPS:]
        current = peer
        for hop in reversed(hops):
            try:
                address = ipaddress.ip_address(hop.strip())
            except ValueError:
                break  # garbage in the chain: believe nothing left of it
            current = str(address)
            if not self._is_trusted(current):
                return current
        return current

    def _in_trusted_networks(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)

    @staticmethod
    def _flushing_on_shutdown(send: Send, publisher: Publisher) -> Send:
        async def send_after_close(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                try:
                    # In a worker thread: delivering and writing fallback lines never block the event loop;
                    # the publisher's close() keeps to its shutdown deadline.
                    await asyncio.to_thread(publisher.close)
                except Exception:
                    logger.warning("pulse: closing the publisher on shutdown failed", exc_info=True)
            await send(message)

        return send_after_close


# What PULSE_RECORD_PATH=redacted replaces: email addresses, and path segments that look like secrets or
# personal identifiers (JWTs, long hex/base64url tokens, long digit runs such as card or phone numbers).
REDACTED = "{redacted}"
_SECRETS = re.compile(
    r"[^/@\s]+@[^/@\s]+"  # an email address
    r"|eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]*)?"  # a JWT
    r"|(?<![A-Za-z0-9_-])(?=[A-Za-z_-]*[0-9])[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])"  # a long token with digits
    r"|\d{7,}"  # a long number
)


def redact_path(path: str) -> str:
    """``path`` with email addresses, tokens and long numbers replaced by ``{redacted}``."""
    return _SECRETS.sub(REDACTED, path)


def _is_mount(route: Any) -> bool:
    from starlette.routing import Mount

    return isinstance(route, Mount)


def _content_length(headers: Any) -> int:
    for name, value in headers:
        if name == b"content-length" and value.isdigit():
            return int(value)
    return 0
