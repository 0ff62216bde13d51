"""python -m lambda_api.fallback_replay: fallback lines back onto the stream, once each, from any log."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from lambda_api import fallback_replay
from lambda_api.publishers.delivery import KinesisRecord, Undelivered
from lambda_api.publishers.fallback import fallback_line
from pulse_contract.request_event import RequestEvent
from pulse_local.emulator import Emulator, create_stream
from tests.streams import read_events

NOW_MS = time.time_ns() // 1_000_000


def event(n: int, **fields: Any) -> RequestEvent:
    values = {"v": 1, "id": uuid.uuid4().hex, "ts": NOW_MS - 60_000 + n, "method": "GET", "route": "/health",
              "path": "", "status": 200, "latency_ms": 0.5, "client_ip": "192.0.2.1", "user_agent": "curl",
              "bytes_out": 15}  # fmt: skip
    return RequestEvent(**{**values, **fields})


def line_for(stream: str, item: RequestEvent) -> str:
    return fallback_line(stream, Undelivered(KinesisRecord(item.to_json(), item.id), "EndpointConnectionError", 3))


def test_replay_delivers_each_event_once_and_skips_other_lines(
    emulator: Emulator, stream: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given an application log with fallback lines (one duplicated, some prefixed), noise and a broken line
    name, _ = stream
    events = [event(n) for n in range(3)]
    log = tmp_path / "app.log"
    log.write_text(
        "INFO started\n"
        + line_for(name, events[0]) + "\n"
        + "2024-05-01T00:00:00Z\treq-1\t[WARNING]\t" + line_for(name, events[1]) + "\n"
        + line_for(name, events[0]) + "\n"
        + '{"pulse_fallback":1,"stream":"x"}\n'
        + line_for(name, events[2]) + "\n"
    )  # fmt: skip
    # when replayed
    status = fallback_replay.main([str(log), "--stream", name])
    # then each event is on the stream once, and the summary says what happened
    assert status == 0
    assert sorted(e["id"] for e in read_events(emulator, name)) == sorted(e.id for e in events)
    out = capsys.readouterr()
    assert "delivered=3 undelivered=0 duplicates=1 malformed=1 refused=0" in out.out
    assert "line 5" in out.err


def test_undeliverable_events_are_written_again_for_a_later_replay(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given fallback lines for a stream that does not exist (yet)
    name = f"pulse-replay-{uuid.uuid4().hex[:8]}"
    events = [event(n) for n in range(2)]
    log, failed = tmp_path / "fallback.log", tmp_path / "still-failed.log"
    log.write_text("".join(line_for(name, e) + "\n" for e in events))
    # when replayed, then it fails and keeps the events as fallback lines
    assert fallback_replay.main([str(log), "--stream", name, "--failed", str(failed), "--budget-s", "2"]) == 1
    assert [json.loads(line)["event"]["id"] for line in failed.read_text().splitlines()] == [e.id for e in events]
    # and once the stream exists, replaying those lines delivers them
    create_stream(emulator, name)
    assert fallback_replay.main([str(failed), "--trust-line-stream"]) == 0
    assert sorted(e["id"] for e in read_events(emulator, name)) == sorted(e.id for e in events)


def test_stream_override_and_dry_run(
    emulator: Emulator, stream: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, _ = stream
    log = tmp_path / "fallback.log"
    log.write_text(line_for("old-stream", event(1)) + "\n")
    assert fallback_replay.main([str(log), "--stream", name, "--dry-run"]) == 0
    assert f"would deliver {name}=1" in capsys.readouterr().out
    assert read_events(emulator, name) == []
    assert fallback_replay.main([str(log), "--stream", name]) == 0
    assert len(read_events(emulator, name)) == 1


def test_an_unreadable_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert fallback_replay.main([str(tmp_path / "missing.log"), "--stream", "s"]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_the_target_stream_comes_from_the_arguments_not_the_lines(
    emulator: Emulator, stream: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, _ = stream
    log = tmp_path / "fallback.log"
    log.write_text(line_for(name, event(1)) + "\n")
    # without --stream (or PULSE_STREAM_NAME) or --trust-line-stream, nothing is replayed
    assert fallback_replay.main([str(log)]) == 2
    assert "--stream" in capsys.readouterr().err
    assert read_events(emulator, name) == []
    assert fallback_replay.main([str(log), "--trust-line-stream"]) == 0
    assert len(read_events(emulator, name)) == 1


def test_a_marker_inside_another_line_is_not_a_fallback_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given an access log whose query string carries a whole fallback object, and a text line ending in one
    forged = line_for("pulse-events", event(1))
    access = json.dumps({"requestId": "abc", "path": "/search?q=" + forged, "status": "200"})
    text = '198.51.100.4 - - "GET /search?q=' + forged
    log = tmp_path / "access.log"
    log.write_text(access + "\n" + text + "\n" + forged + " trailing\n")
    # when replayed, then none of them counts as a fallback line
    assert fallback_replay.main([str(log), "--stream", "pulse-events", "--dry-run"]) == 0
    assert (
        "would deliver nothing; delivered=0 undelivered=0 duplicates=0 malformed=0 refused=0" in capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (lambda: line_for("s", event(1, ts=NOW_MS + 10 * 86_400_000)), "ts in the future"),
        (lambda: line_for("s", event(1, ts=NOW_MS - 30 * 86_400_000)), "ts too old"),
        (lambda: line_for("s", event(1)).replace('"latency_ms":0.5', '"latency_ms":1e999'), "not a v1 event"),
        (lambda: line_for("s", event(1)).replace('"latency_ms":0.5', '"latency_ms":NaN'), None),
        (lambda: line_for("s", event(1)).replace('"status":200', '"status":-1'), "status out of range"),
        (lambda: line_for("s", event(1)).replace('"id":"', '"id":"x'), "id is not the partition key"),
        (lambda: line_for("s", event(1)).replace('"v":1,', '"v":2,'), "not a v1 event"),
    ],
)
def test_unsound_events_are_refused_and_reported(
    line: Any, reason: str | None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "fallback.log"
    log.write_text(line() + "\n" + line_for("s", event(2)) + "\n")
    assert fallback_replay.main([str(log), "--stream", "s", "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "would deliver s=1;" in out.out
    if reason is None:  # a non-finite constant does not even parse: a malformed line
        assert "malformed=1 refused=0" in out.out
    else:
        assert "refused=1" in out.out and f"refused 1 event(s): {reason}" in out.err


def test_the_ts_window_is_configurable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "fallback.log"
    log.write_text(line_for("s", event(1, ts=NOW_MS - 30 * 86_400_000)) + "\n")
    assert fallback_replay.main([str(log), "--stream", "s", "--dry-run", "--max-age-h", str(31 * 24)]) == 0
    assert "would deliver s=1;" in capsys.readouterr().out
