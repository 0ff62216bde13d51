"""A local API Gateway (HTTP API, payload 2.0) in front of local Lambda environments: the demo's ``--api lambda``.

HTTP requests on a loopback port become API Gateway events (:func:`pulse_local.apigw.http_api_event`)
and are invoked on one of a pool of :class:`pulse_local.lambda_runtime.LocalLambdaRuntime`
environments, each running the real runtime client with the demo app's handler and its
after-response extension. An environment takes one invocation at a time and is busy until the
invocation is complete (response posted and the extension's delivery done), as on Lambda.

What stands in for the real service:

* the client address (``sourceIp``) is the last ``X-Forwarded-For`` hop the caller sent: the demo's
  traffic comes from one loopback address and plays thousands of clients;
* ``GET /monitoring/*`` is the route with IAM authorization: a request signed with SigV4
  (``Authorization: AWS4-HMAC-SHA256 ...``) gets the IAM authorizer context API Gateway adds for an
  allowed caller; the signature is not verified (any local credentials do). Unsigned requests
  to it get API Gateway's 403, and every other path goes to the ``$default`` route, as deployed.
"""

from __future__ import annotations

import base64
import contextlib
import json
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from pulse_local.apigw import http_api_event, iam_authorizer
from pulse_local.emulator import free_port
from pulse_local.lambda_runtime import LambdaRuntimeError, LocalLambdaRuntime

HANDLER = "pulse_local.demo_app.handler"
MONITORING_PREFIX = "/monitoring/"
WAIT_FOR_ENVIRONMENT_S = 30.0


class LocalApiGateway:
    def __init__(self, environments: int, env: dict[str, str], log_dir: Path, account_id: str) -> None:
        self.environments = environments
        self.env = env
        self.log_dir = log_dir
        self.account_id = account_id
        self.pool: queue.Queue[LocalLambdaRuntime] = queue.Queue()
        self.runtimes: list[LocalLambdaRuntime] = []
        self.port = free_port()
        self.server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalApiGateway:
        def one(n: int) -> LocalLambdaRuntime:
            runtime = LocalLambdaRuntime(HANDLER, env=self.env, log_path=self.log_dir / f"lambda-{n}.log")
            self.runtimes.append(runtime)
            runtime.start()
            return runtime

        with ThreadPoolExecutor(self.environments) as starting:  # cold starts in parallel
            for runtime in starting.map(one, range(self.environments)):
                self.pool.put(runtime)
        gateway = self

        class Handler(_GatewayHandler):
            owner = gateway

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, name="local-apigw", daemon=True).start()
        return self

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        for runtime in self.runtimes:  # SIGTERM with the extension registered: it delivers what it holds
            with contextlib.suppress(Exception):
                runtime.close()

    def event_for(self, method: str, target: str, headers: dict[str, str], body: bytes) -> dict[str, Any] | None:
        """The payload 2.0 event for a request, or None when API Gateway itself refuses it (403)."""
        parts = urlsplit(target)
        forwarded = headers.get("x-forwarded-for", "")
        source_ip = forwarded.split(",")[-1].strip() or "127.0.0.1"
        signed = headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 ")
        route_key, authorizer = "$default", None
        if parts.path.startswith(MONITORING_PREFIX) and method == "GET":
            if not signed:
                return None
            route_key, authorizer = f"GET {parts.path}", iam_authorizer(self.account_id, user="pulse-demo-reader")
        payload = json.loads(body) if body else None
        passed = {k: v for k, v in headers.items() if k not in ("host", "content-length", "x-forwarded-for")}
        return http_api_event(
            method,
            parts.path,
            query=parts.query,
            body=payload,
            source_ip=source_ip,
            user_agent=headers.get("user-agent", ""),
            headers=passed,
            route_key=route_key,
            authorizer=authorizer,
        )

    def invoke(self, event: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        try:
            runtime = self.pool.get(timeout=WAIT_FOR_ENVIRONMENT_S)
        except queue.Empty:
            return 503, {}, b'{"message":"Service Unavailable"}'  # no environment free: throttled
        try:
            invocation = runtime.invoke(event, wait="response")
            payload = invocation.payload()
            status = int(payload.get("statusCode", 502))
            headers = {str(k): str(v) for k, v in (payload.get("headers") or {}).items()}
            raw = payload.get("body") or ""
            data = base64.b64decode(raw) if payload.get("isBase64Encoded") else str(raw).encode()
            return status, headers, data
        except (LambdaRuntimeError, ValueError, AttributeError):
            return 502, {}, b'{"message":"Internal Server Error"}'
        finally:
            threading.Thread(target=self._release, args=(runtime,), daemon=True).start()

    def _release(self, runtime: LocalLambdaRuntime) -> None:
        """Back to the pool once its invocation is complete (the extension has delivered)."""
        if runtime.invocations:  # only this request's invocation runs on it: the last one
            runtime.invocations[-1].done.wait(runtime.timeout_s + 10)
        self.pool.put(runtime)


class _GatewayHandler(BaseHTTPRequestHandler):
    owner: LocalApiGateway
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        event = self.owner.event_for(self.command, self.path, headers, body)
        out_headers: dict[str, str]
        if event is None:
            status, out_headers, data = 403, {}, b'{"message":"Forbidden"}'
        else:
            status, out_headers, data = self.owner.invoke(event)
        self.send_response(status)
        for name, value in out_headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve


def sigv4_auth(region: str, credentials: tuple[str, str]) -> httpx.Auth:
    """Signs each request for ``execute-api`` as an IAM caller would (botocore's SigV4 signer)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    signer = SigV4Auth(Credentials(*credentials), "execute-api", region)

    class Signed(httpx.Auth):
        def auth_flow(self, request: httpx.Request) -> Any:
            aws = AWSRequest(method=request.method, url=str(request.url), data=request.content,
                             headers={"host": request.url.netloc.decode()})  # fmt: skip
            signer.add_auth(aws)
            for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
                if name in aws.headers:
                    request.headers[name] = aws.headers[name]
            yield request

    return Signed()


def start_lambda_api(env: dict[str, str], out: Path, stack: contextlib.ExitStack, environments: int = 8) -> Any:
    """The demo app in ``environments`` local Lambda environments behind a local API Gateway."""
    import boto3

    from pulse_local.demo import Api

    env = {k: v for k, v in env.items() if k.startswith(("PULSE_", "AWS_")) or k in ("CBOR_ENABLED", "PYTHONPATH")}
    # The delivery Lambda uses in production: after the response, by the internal extension.
    env.pop("PULSE_PUBLISHER_MODE", None)
    env.pop("PULSE_MONITORING_AUTH", None)  # auto: IAM on Lambda, as deployed
    sts = boto3.client("sts", endpoint_url=env.get("AWS_ENDPOINT_URL"), region_name=env.get("AWS_REGION"))
    account = str(sts.get_caller_identity()["Account"])
    gateway = LocalApiGateway(environments, env, out, account)
    stack.callback(gateway.close)
    gateway.start()
    credentials = (env.get("AWS_ACCESS_KEY_ID", "testing"), env.get("AWS_SECRET_ACCESS_KEY", "testing"))
    return Api(gateway.base_url, None, gateway.close, auth=sigv4_auth(env.get("AWS_REGION", "us-east-1"), credentials))
