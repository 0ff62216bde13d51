"""The fallback log: one structured JSON line per event that could not be delivered, so nothing is lost silently.

A line looks like::

    {"pulse_fallback":1,"stream":"pulse-events","reason":"EndpointConnectionError","attempts":3,
     "partition_key":"5f0c…","event":{"v":1,"id":"5f0c…",…}}

Replay trusts a line only when the fallback object is the whole line, or the rest of the line after
a prefix of tab-separated fields without quotes or braces (the Lambda runtime's level, timestamp
and request id): a marker inside another line (a query string in an access log) is not a fallback
line. Each event is then validated (:func:`pulse_contract.request_event.check_replayable`) before replay.
"""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from lambda_api.publishers.delivery import KinesisRecord, Undelivered
from pulse_contract.request_event import encode_json

MARKER = '{"pulse_fallback"'
# The key of the one JSON line written when fallback lines themselves cannot be written (its value:
# how many events are gone); CDK's metric filter adds these up (cdk/observability.py).
LOST_KEY = "pulse_lost"
# What may precede the object on a fallback line: up to 4 tab-separated fields without quotes or braces.
_PREFIX = re.compile(r'(?:[^\t{}"]*\t){0,4}')
FALLBACK_VERSION = 1


class LineSink:
    """Whole lines to stdout, stderr or an appended file; one write per line under a lock."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._file: IO[str] | None = None

    def _stream(self) -> IO[str]:
        # Looked up per write, so a replaced sys.stderr (test capture, log shipping) is honoured.
        if self.target == "stderr":
            return sys.stderr
        if self.target == "stdout":
            return sys.stdout
        if self._file is None:
            self._file = open(self.target, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - long-lived
        return self._file

    def write_lines(self, lines: Iterable[str]) -> None:
        text = "".join(line + "\n" for line in lines)
        if not text:
            return
        with self._lock:
            stream = self._stream()
            stream.write(text)
            stream.flush()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def fallback_line(stream_name: str, item: Undelivered) -> str:
    """The fallback line for one undelivered record (its event inline when the data is JSON)."""
    line: dict[str, Any] = {
        "pulse_fallback": FALLBACK_VERSION,
        "stream": stream_name,
        "reason": item.reason,
        "attempts": item.attempts,
        "partition_key": item.record.partition_key,
    }
    try:
        line["event"] = json.loads(item.record.data)
    except ValueError:
        line["data_b64"] = base64.b64encode(item.record.data).decode("ascii")
    return encode_json(line).decode("ascii")


class FallbackLog:
    """Writes fallback lines; never raises (a broken log must not break the request either)."""

    def __init__(self, target: str = "stderr") -> None:
        self._sink = LineSink(target)
        self.target = target

    def write(self, stream_name: str, items: Iterable[Undelivered]) -> int:
        lines = [fallback_line(stream_name, item) for item in items]
        try:
            self._sink.write_lines(lines)
        except Exception as error:
            report_lost(stream_name, len(lines), f"fallback log {self.target!r} unwritable: {type(error).__name__}")
        return len(lines)

    def close(self) -> None:
        self._sink.close()


def report_lost(stream_name: str, count: int, reason: str) -> None:
    """One JSON line on the process's own stderr (on Lambda: CloudWatch Logs) saying ``count`` events are gone."""
    line = encode_json({LOST_KEY: count, "stream": stream_name, "reason": reason}).decode("ascii")
    try:
        stream = sys.__stderr__ or sys.stderr
        stream.write(line + "\n")
        stream.flush()
    except Exception:  # nowhere left to say it
        pass


@dataclass(frozen=True, slots=True)
class FallbackEntry:
    """One parsed fallback line: where the record was going and the record itself."""

    stream: str
    record: KinesisRecord


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)


def parse_fallback_line(line: str) -> FallbackEntry | None:
    """The entry in ``line``, or None when the line is not a fallback line. ValueError when it is one but broken.

    A fallback line is the fallback object alone, or after a prefix of plain tab-separated fields;
    a marker anywhere else (inside a string of another log line) makes no fallback line.
    """
    start = line.find(MARKER)
    if start < 0:
        return None
    text = line.rstrip("\r\n")
    prefix = _PREFIX.match(text)
    if prefix is None or prefix.end() != start:
        return None
    try:
        obj, end = _DECODER.raw_decode(text, start)
    except ValueError:
        raise ValueError("broken fallback object") from None
    if text[end:].strip():
        return None  # the object is part of a longer line: not written by Pulse
    if not isinstance(obj, dict) or obj.get("pulse_fallback") != FALLBACK_VERSION:
        raise ValueError("not a version-1 fallback line")
    stream, key = obj.get("stream"), obj.get("partition_key")
    if not isinstance(stream, str) or not isinstance(key, str) or not key:
        raise ValueError("fallback line without stream or partition_key")
    if "event" in obj:
        data = encode_json(obj["event"])
    elif isinstance(obj.get("data_b64"), str):
        data = base64.b64decode(obj["data_b64"], validate=True)
    else:
        raise ValueError("fallback line without event or data_b64")
    return FallbackEntry(stream=stream, record=KinesisRecord(data=data, partition_key=key))


def read_fallback_lines(lines: Iterable[str]) -> Iterator[FallbackEntry | ValueError]:
    """Each fallback entry in ``lines`` (other lines skipped); broken fallback lines yield their error."""
    for number, line in enumerate(lines, start=1):
        try:
            entry = parse_fallback_line(line)
        except ValueError as error:
            yield ValueError(f"line {number}: {error}")
            continue
        if entry is not None:
            yield entry
