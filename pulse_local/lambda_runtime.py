"""A local Lambda environment: Runtime and Extensions APIs on loopback, the real runtime client in a child process.

    with LocalLambdaRuntime("lambda_api.handler.handler", env={"PULSE_STREAM_NAME": "events"}) as runtime:
        invocation = runtime.invoke(http_api_event("GET", "/health"))
        json.loads(invocation.response)["statusCode"]

The child runs ``python -m awslambdaric HANDLER`` (the runtime interface client of Lambda's Python
runtimes) with the environment Lambda gives a function (``AWS_LAMBDA_RUNTIME_API``,
``LAMBDA_TASK_ROOT``, ``_HANDLER``, ``AWS_LAMBDA_FUNCTION_NAME``, ``AWS_EXECUTION_ENV`` ...). The
server speaks the two APIs as documented and enforces their rules:

- extensions register (``POST /2020-01-01/extension/register``) only during init, i.e. before the
  runtime's first ``GET /2018-06-01/runtime/invocation/next``; at most 10; internal extensions
  (every registration here: no external extension processes are started) may not register for
  SHUTDOWN;
- init is complete, and the first invocation handed out, only when the runtime and every
  registered extension have asked for their next event;
- an invocation is handed to the runtime together with an ``INVOKE`` event to every extension
  registered for it (written right after the runtime's answer, so that this server's own work is
  not counted in the runtime's time), and is complete only when the runtime has posted its response (or error)
  AND each of those extensions has asked for its next event; the next invocation waits for that;
- when the runtime and every extension wait and nothing is queued, the process is frozen
  (SIGSTOP) until the next invocation (SIGCONT), as Lambda freezes an idle environment;
- an invocation still incomplete at its deadline (function timeout) resets the environment;
  shutting down sends SHUTDOWN to extensions registered for it and, when any extension is
  registered, SIGTERM to the runtime process with 500 ms to exit (2 s would be for external
  extensions), then SIGKILL; without extensions, SIGKILL at once.

Error types and status codes of refusals that the documentation does not spell out are this
emulator's choice (400 for a bad registration, 403 once registration is closed or for an unknown
extension). Every step is timestamped (``time.monotonic()``, comparable across processes on one
Linux host): when an invocation was queued, handed out, answered, and when each extension asked
for its next event. ``on_response`` and ``on_extension_next`` let a test look at the world at
those instants (they run before the runtime's post is acknowledged and before the extension's
call is counted).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pulse_build.runtimes import LAMBDA_PYTHON

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_API = "/2018-06-01/runtime"
EXTENSIONS_API = "/2020-01-01/extension"
MAX_EXTENSIONS = 10
INTERNAL_EXTENSION_SHUTDOWN_S = 0.5  # runtime + internal extensions: 500 ms after SIGTERM
EXTERNAL_EXTENSION_SHUTDOWN_S = 2.0
LOCAL_ACCOUNT = "000000000000"  # only in the invoked-function ARN handed to the handler
EXECUTION_ENV = f"AWS_Lambda_python{LAMBDA_PYTHON}"  # the deployed runtime


class LambdaRuntimeError(RuntimeError):
    """The local runtime could not start, or an invocation could not be made."""


@dataclass
class Invocation:
    """One invocation and what happened to it; times are ``time.monotonic()`` seconds."""

    request_id: str
    event: bytes
    queued_at: float
    handed_out_at: float | None = None
    deadline_ms: int | None = None
    response_at: float | None = None
    response: bytes | None = None
    error: bytes | None = None
    error_type: str | None = None
    extension_next_at: dict[str, float] = field(default_factory=dict)
    extensions_expected: tuple[str, ...] = ()
    completed_at: float | None = None
    outcome: str | None = None  # "response", "error", "timeout", "crash", "aborted"
    answered: threading.Event = field(default_factory=threading.Event, repr=False)
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def client_ms(self) -> float:
        """What a caller waits for: from the invocation handed to the runtime to its response posted."""
        if self.handed_out_at is None or self.response_at is None:
            raise LambdaRuntimeError(f"invocation {self.request_id} has no response ({self.outcome})")
        return (self.response_at - self.handed_out_at) * 1000.0

    @property
    def duration_ms(self) -> float:
        """What Lambda bills: from hand-out until the runtime and every extension were done."""
        if self.handed_out_at is None or self.completed_at is None:
            raise LambdaRuntimeError(f"invocation {self.request_id} did not complete ({self.outcome})")
        return (self.completed_at - self.handed_out_at) * 1000.0

    def payload(self) -> Any:
        """The handler's response, decoded."""
        if self.response is None:
            raise LambdaRuntimeError(f"invocation {self.request_id} has no response ({self.outcome})")
        return json.loads(self.response)


@dataclass
class Extension:
    identifier: str
    name: str
    events: tuple[str, ...]
    registered_at: float
    ready: bool = False  # asked for its first event (its init is done)
    waiting: bool = False
    awaiting: str | None = None  # request id of an INVOKE it received and has not answered with next
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    next_calls: list[float] = field(default_factory=list)


@dataclass
class Shutdown:
    reason: str
    started_at: float
    sigterm_at: float | None = None
    exited_at: float | None = None
    returncode: int | None = None
    killed: bool = False  # needed SIGKILL


@dataclass
class RefusedRegistration:
    at: float
    name: str
    status: int
    reason: str


class LocalLambdaRuntime:
    """One Lambda execution environment on this machine, for tests and benchmarks."""

    def __init__(
        self,
        handler: str | None,
        env: Mapping[str, str] | None = None,
        *,
        function_name: str = "pulse-api",
        timeout_s: float = 10.0,
        memory_mb: int = 512,
        extensions_api: bool = True,
        registration_status: int | None = None,
        freeze: bool = True,
        task_root: Path = ROOT,
        log_path: Path | None = None,
        execution_env: str = EXECUTION_ENV,
        on_response: Callable[[Invocation], None] | None = None,
        on_extension_next: Callable[[Invocation, str], None] | None = None,
    ) -> None:
        """``handler=None`` serves the APIs only: the caller plays the runtime (and its extensions) over HTTP.

        ``extensions_api=False``: the Extensions API answers 404; ``registration_status``: registrations
        are refused with that status.
        """
        self.handler = handler
        self.function_name = function_name
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.extensions_api = extensions_api
        self.registration_status = registration_status
        self.freeze = freeze
        self.task_root = task_root
        self.execution_env = execution_env
        self.on_response = on_response
        self.on_extension_next = on_extension_next
        self._user_env = dict(env or {})
        self.region = self._user_env.get("AWS_REGION") or self._user_env.get("AWS_DEFAULT_REGION") or "us-east-1"
        self._own_log = log_path is None
        self._kept_log: str | None = None  # an own log's text once closed (the file is removed)
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="lambda-runtime-", suffix=".log")[1])

        self._cond = threading.Condition()
        self._state = "new"  # new -> init -> running -> shutting_down -> dead
        self._registration_open = True
        self._runtime_asked = False
        self._runtime_waiting = False
        self._frozen = False
        self._queue: deque[Invocation] = deque()
        self._current: Invocation | None = None
        self.invocations: list[Invocation] = []
        self.extensions: list[Extension] = []
        self.refused_registrations: list[RefusedRegistration] = []
        self.init_error: dict[str, Any] | None = None
        self.extension_errors: list[tuple[str, str, bytes]] = []
        self.shutdown_record: Shutdown | None = None
        self.freezes = 0
        self._server: ThreadingHTTPServer | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None

    # Life cycle

    def __enter__(self) -> LocalLambdaRuntime:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def address(self) -> str:
        if self._server is None:
            raise LambdaRuntimeError("not started")
        return f"127.0.0.1:{self._server.server_port}"

    @property
    def registration_open(self) -> bool:
        """Extensions may still register (the runtime has not asked for its first invocation)."""
        with self._cond:
            return self._registration_open

    @property
    def runtime_waiting(self) -> bool:
        """The runtime has asked for its next invocation and not received it yet."""
        with self._cond:
            return self._runtime_waiting

    @property
    def pid(self) -> int:
        if self._process is None:
            raise LambdaRuntimeError("not started")
        return self._process.pid

    def process_env(self) -> dict[str, str]:
        """The environment Lambda gives the runtime process, plus the caller's variables."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "en_US.UTF-8",
            "TZ": ":UTC",
            "AWS_LAMBDA_RUNTIME_API": self.address,
            "LAMBDA_TASK_ROOT": str(self.task_root),
            "LAMBDA_RUNTIME_DIR": str(self.task_root),
            "_HANDLER": self.handler or "",
            "AWS_EXECUTION_ENV": self.execution_env,
            "AWS_LAMBDA_FUNCTION_NAME": self.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{self.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": f"local/[$LATEST]{uuid.uuid4().hex}",
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }
        env.update(self._user_env)
        return env

    def start(self, timeout_s: float = 60.0) -> None:
        """Serve the APIs, start the runtime process, and wait until its init is complete."""
        self._server = _Server(("127.0.0.1", 0), _ApiHandler, self)
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="lambda-runtime-api", daemon=True
        ).start()
        with self._cond:
            self._state = "init"
        threading.Thread(target=self._watchdog, name="lambda-runtime-watchdog", daemon=True).start()
        if self.handler is None:
            return
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - owned until close()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "awslambdaric", self.handler],
            cwd=self.task_root,
            env=self.process_env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        threading.Thread(target=self._reap, name="lambda-runtime-reaper", daemon=True).start()
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._state == "init" and self.init_error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            ready = self._state == "running"
        if not ready:
            problem = self.init_error or f"the runtime did not finish its init ({self._state})"
            self.close()
            raise LambdaRuntimeError(f"{problem}; log:\n{self.log_text()[-3000:]}")

    def close(self) -> None:
        """Shut the environment down (if it still runs) and stop serving."""
        if self._process is not None and self._process.poll() is None:
            self.shutdown()
        with self._cond:
            self._state = "dead"
            for invocation in self.invocations:  # nobody waits for an environment that is gone
                if invocation.outcome is None:
                    invocation.outcome = "aborted"
                invocation.answered.set()
                invocation.done.set()
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._own_log and self._kept_log is None:  # a temporary file of ours: keep its text, not the file
            self._kept_log = self.log_text()
            self.log_path.unlink(missing_ok=True)

    def log_text(self) -> str:
        """What the runtime process wrote to stdout and stderr (its CloudWatch log on Lambda)."""
        if self._kept_log is not None:
            return self._kept_log
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    # Invoking

    def invoke(self, event: Any, *, wait: str = "response", timeout_s: float | None = None) -> Invocation:
        """Queue an invocation; return when its response is posted (``wait="response"``, what a caller
        sees) or when it is complete (``"complete"``: runtime and extensions done)."""
        body = event if isinstance(event, bytes) else json.dumps(event).encode("utf-8")
        invocation = Invocation(request_id=str(uuid.uuid4()), event=body, queued_at=time.monotonic())
        with self._cond:
            if self._state not in ("init", "running"):  # during init it waits, as the first invocation does
                raise LambdaRuntimeError(f"the environment is {self._state}")
            self._queue.append(invocation)
            self.invocations.append(invocation)
            self._cond.notify_all()
        flag = invocation.answered if wait == "response" else invocation.done
        if not flag.wait(timeout_s if timeout_s is not None else self.timeout_s + 10.0):
            raise LambdaRuntimeError(f"invocation {invocation.request_id} got no {wait} in time")
        return invocation

    def shutdown(self, reason: str = "spindown") -> Shutdown:
        """Remove the environment as Lambda does (SHUTDOWN to extensions, SIGTERM with extensions, then SIGKILL)."""
        with self._cond:
            if self.shutdown_record is not None:  # under way (a timeout reset) or done: wait for its end
                record = self.shutdown_record
                deadline = time.monotonic() + EXTERNAL_EXTENSION_SHUTDOWN_S + 5.0
                while record.exited_at is None and time.monotonic() < deadline:
                    self._cond.wait(0.05)
                return record
            record = self.shutdown_record = Shutdown(reason=reason, started_at=time.monotonic())
            self._state = "shutting_down"
            self._thaw()
            deadline_ms = int((time.time() + EXTERNAL_EXTENSION_SHUTDOWN_S) * 1000)
            for extension in self.extensions:
                if "SHUTDOWN" in extension.events:
                    event = {"eventType": "SHUTDOWN", "shutdownReason": reason, "deadlineMs": deadline_ms}
                    extension.queue.append(event)
            registered = bool(self.extensions)
            self._cond.notify_all()
        process = self._process
        if process is not None and process.poll() is None:
            if registered:
                record.sigterm_at = time.monotonic()
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(INTERNAL_EXTENSION_SHUTDOWN_S)
                except subprocess.TimeoutExpired:
                    record.killed = True
            else:
                record.killed = True
            if record.killed:
                process.kill()
            process.wait()
        with self._cond:
            record.exited_at = time.monotonic()
            record.returncode = process.returncode if process is not None else None
            self._state = "dead"
            self._cond.notify_all()
        return record

    # State machine (caller holds self._cond unless said otherwise)

    def _init_complete(self) -> bool:
        return all(extension.ready for extension in self.extensions)

    def _maybe_running(self) -> None:
        """Init ends when the runtime and every registered extension have asked for their next event."""
        if self._state == "init" and self._runtime_asked and self._init_complete():
            self._state = "running"
            self._cond.notify_all()

    def _thaw(self) -> None:
        if self._frozen and self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGCONT)
        self._frozen = False

    def _maybe_freeze(self) -> None:
        idle = (
            self.freeze
            and self._state == "running"
            and self._runtime_waiting
            and self._current is None
            and not self._queue
            and all(extension.waiting for extension in self.extensions)
        )
        if idle and not self._frozen and self._process is not None and self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGSTOP)
            self._frozen = True
            self.freezes += 1

    def _maybe_complete(self) -> None:
        invocation = self._current
        if invocation is None or invocation.outcome is None:
            return
        if any(name not in invocation.extension_next_at for name in invocation.extensions_expected):
            return
        invocation.completed_at = time.monotonic()
        self._current = None
        invocation.done.set()
        self._cond.notify_all()

    def _runtime_next(self) -> Invocation | None:
        with self._cond:
            if not self._runtime_asked:
                self._runtime_asked = True
                self._registration_open = False
                self._maybe_running()
            self._runtime_waiting = True
            self._maybe_freeze()
            while not (self._state == "running" and self._current is None and self._queue):
                if self._state == "dead" or (self._state == "shutting_down" and self._process is None):
                    # shutting down, Lambda leaves a pending next unanswered: the process ends by signal
                    self._runtime_waiting = False
                    return None
                self._cond.wait()
                self._maybe_freeze()
            invocation = self._queue.popleft()
            self._thaw()
            self._current = invocation
            self._runtime_waiting = False
            invocation.handed_out_at = time.monotonic()
            invocation.deadline_ms = int((time.time() + self.timeout_s) * 1000)
            expected = []
            for extension in self.extensions:
                if "INVOKE" in extension.events:
                    expected.append(extension.name)
                    extension.awaiting = invocation.request_id
            invocation.extensions_expected = tuple(expected)
            return invocation

    def _send_invoke_events(self, invocation: Invocation) -> None:
        """INVOKE to every extension registered for it, once the runtime's answer is written.

        Lambda sends both together; writing the runtime's first keeps this server's own work (one
        process serving every connection) out of the time measured from the hand-out.
        """
        with self._cond:
            for extension in self.extensions:
                if extension.awaiting == invocation.request_id:
                    extension.queue.append(self._invoke_event(invocation))
            self._cond.notify_all()

    def _invoke_event(self, invocation: Invocation) -> dict[str, Any]:
        return {
            "eventType": "INVOKE",
            "deadlineMs": invocation.deadline_ms,
            "requestId": invocation.request_id,
            "invokedFunctionArn": self.function_arn,
            "tracing": {"type": "X-Amzn-Trace-Id", "value": _trace_id(invocation.request_id)},
        }

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{LOCAL_ACCOUNT}:function:{self.function_name}"

    def _post_result(self, request_id: str, body: bytes, error_type: str | None) -> tuple[int, dict[str, Any]]:
        at = time.monotonic()
        with self._cond:
            invocation = self._current
            if invocation is None or invocation.request_id != request_id:
                return 400, _error("InvalidRequestID", f"no invocation {request_id} in progress")
            if invocation.outcome is not None:
                return 400, _error("InvalidStateTransition", f"invocation {request_id} was answered already")
            invocation.response_at = at
            if error_type is None:
                invocation.response, invocation.outcome = body, "response"
            else:
                invocation.error, invocation.error_type, invocation.outcome = body, error_type, "error"
        if self.on_response is not None:
            self.on_response(invocation)
        invocation.answered.set()
        with self._cond:
            self._maybe_complete()
        return 202, {"status": "OK"}

    def _register(self, name: str | None, body: bytes) -> tuple[int, dict[str, Any], Extension | None]:
        at = time.monotonic()
        try:
            request = json.loads(body or b"{}")
            events = request.get("events", []) if isinstance(request, dict) else None
        except ValueError:
            events = None
        with self._cond:
            refusal: tuple[int, str, str] | None = None
            if self.registration_status is not None:
                refusal = (self.registration_status, "Extension.RegistrationRefused", "refused by configuration")
            elif not name:
                refusal = (400, "InvalidRequest", "Lambda-Extension-Name header missing")
            elif not self._registration_open:
                refusal = (403, "Extension.RegistrationClosed", "registration is only allowed during init")
            elif not isinstance(events, list) or not all(e in ("INVOKE", "SHUTDOWN") for e in events):
                refusal = (400, "InvalidRequest", "events must be a list of INVOKE and SHUTDOWN")
            elif "SHUTDOWN" in events:
                refusal = (400, "ShutdownEventNotSupportedForInternalExtension", "internal extensions get no SHUTDOWN")
            elif len(self.extensions) >= MAX_EXTENSIONS:
                refusal = (400, "TooManyExtensions", f"at most {MAX_EXTENSIONS} extensions")
            if refusal is not None:
                self.refused_registrations.append(RefusedRegistration(at, name or "", refusal[0], refusal[2]))
                return refusal[0], _error(refusal[1], refusal[2]), None
            assert name is not None and isinstance(events, list)
            extension = Extension(str(uuid.uuid4()), name, tuple(events), at)
            self.extensions.append(extension)
            answer = {"functionName": self.function_name, "functionVersion": "$LATEST", "handler": self.handler}
            return 200, answer, extension

    def _extension_next(self, identifier: str | None) -> tuple[int, dict[str, Any]]:
        at = time.monotonic()
        with self._cond:
            extension = next((e for e in self.extensions if e.identifier == identifier), None)
            if extension is None:
                return 403, _error("Extension.UnknownExtensionIdentifier", "unknown Lambda-Extension-Identifier")
            invocation = self._current if extension.awaiting is not None else None
        if invocation is not None and self.on_extension_next is not None:
            self.on_extension_next(invocation, extension.name)
        with self._cond:
            extension.next_calls.append(at)
            extension.ready = True
            self._maybe_running()
            if extension.awaiting is not None and invocation is not None:
                invocation.extension_next_at[extension.name] = at
                extension.awaiting = None
                self._maybe_complete()
            extension.waiting = True
            self._cond.notify_all()
            self._maybe_freeze()
            while not extension.queue:
                if self._state == "dead" or (self._state == "shutting_down" and self._process is None):
                    extension.waiting = False
                    return 500, _error("Runtime.ExitError", "the environment is gone")
                self._cond.wait()
                self._maybe_freeze()
            extension.waiting = False
            return 200, extension.queue.popleft()

    # Background threads

    def _reap(self) -> None:
        process = self._process
        assert process is not None
        process.wait()
        with self._cond:
            current = self._current
            if current is not None and current.outcome is None:
                current.outcome = "crash"
                current.answered.set()
                current.done.set()
            if self._state in ("init", "running"):
                self._state = "dead"
            self._cond.notify_all()

    def _watchdog(self) -> None:
        with self._cond:
            while self._state in ("new", "init", "running"):
                invocation = self._current
                if invocation is None or invocation.deadline_ms is None:
                    self._cond.wait(0.5)
                    continue
                remaining = invocation.deadline_ms / 1000.0 - time.time()
                if remaining > 0:
                    self._cond.wait(remaining)
                    continue
                if invocation.outcome is None:
                    invocation.outcome = "timeout"
                invocation.answered.set()
                break
            else:
                return
        record = self.shutdown("timeout")
        with self._cond:
            if invocation.completed_at is None:
                invocation.completed_at = record.exited_at
            invocation.done.set()


def _error(error_type: str, message: str) -> dict[str, Any]:
    return {"errorType": error_type, "errorMessage": message}


def _trace_id(request_id: str) -> str:
    digits = request_id.replace("-", "")
    return f"Root=1-{int(time.time()):08x}-{digits[:24]};Parent={digits[8:24]};Sampled=0"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], runtime: LocalLambdaRuntime):
        self.runtime = runtime
        super().__init__(address, handler)


class _ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small answers go out at once (no 40 ms delayed-ACK stalls)
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the runtime's own log is what matters."""

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
        lines = [f"{self.protocol_version} {status} {self.responses.get(status, ('',))[0]}"]
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.wfile.write(head + body)  # one write, head and body together
        except OSError:
            self.close_connection = True  # the process went away meanwhile

    def do_GET(self) -> None:
        runtime = self.server.runtime
        if self.path == f"{RUNTIME_API}/invocation/next":
            invocation = runtime._runtime_next()
            if invocation is None:
                self._send(500, _error("Runtime.ExitError", "the environment is shutting down"))
                self.close_connection = True
                return
            self._send(
                200,
                invocation.event,
                {
                    "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": runtime.function_arn,
                    "Lambda-Runtime-Trace-Id": _trace_id(invocation.request_id),
                },
            )
            runtime._send_invoke_events(invocation)
        elif self.path == f"{EXTENSIONS_API}/event/next" and runtime.extensions_api:
            status, event = runtime._extension_next(self.headers.get("Lambda-Extension-Identifier"))
            headers = {"Lambda-Extension-Event-Identifier": str(uuid.uuid4())} if status == 200 else {}
            self._send(status, event, headers)
        else:
            self._send(404, _error("NotFound", self.path))

    def do_POST(self) -> None:
        runtime = self.server.runtime
        body = self._body()
        path = self.path
        if path.startswith(f"{RUNTIME_API}/invocation/") and path.endswith(("/response", "/error")):
            request_id, _, kind = path[len(f"{RUNTIME_API}/invocation/") :].rpartition("/")
            error_type = None
            if kind == "error":
                error_type = self.headers.get("Lambda-Runtime-Function-Error-Type") or "Unhandled"
            status, payload = runtime._post_result(request_id, body, error_type)
            self._send(status, payload)
        elif path == f"{RUNTIME_API}/init/error":
            try:
                runtime.init_error = json.loads(body or b"{}")
            except ValueError:
                runtime.init_error = {"errorMessage": body.decode("utf-8", "replace")}
            with runtime._cond:
                runtime._cond.notify_all()
            self._send(202, {"status": "OK"})
        elif path == f"{EXTENSIONS_API}/register" and runtime.extensions_api:
            status, payload, extension = runtime._register(self.headers.get("Lambda-Extension-Name"), body)
            headers = {"Lambda-Extension-Identifier": extension.identifier} if extension is not None else {}
            self._send(status, payload, headers)
        elif path in (f"{EXTENSIONS_API}/init/error", f"{EXTENSIONS_API}/exit/error") and runtime.extensions_api:
            identifier = self.headers.get("Lambda-Extension-Identifier") or ""
            runtime.extension_errors.append((identifier, path.rsplit("/", 2)[-2], body))
            self._send(202, {"status": "OK"})
        else:
            self._send(404, _error("NotFound", path))
