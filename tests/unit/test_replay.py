"""python -m lambda_api.replay: fallback lines back onto the stream, once each, from any log."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from lambda_api import replay
from lambda_api.events import RequestEvent
from lambda_api.publishers.delivery import KinesisRecord, Undelivered
from lambda_api.publishers.fallback import fallback_line
from pulse_local.emulator import Emulator, create_stream
from tests.streams import read_events


def event(n: int) -> RequestEvent:
    return RequestEvent(1, uuid.uuid4().hex, 1_700_000_000_000 + n, "GET", "/health", "/health", 200, 0.5,
                        "192.0.2.1", "curl", 15)  # fmt: skip


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
    status = replay.main([str(log)])
    # then each event is on the stream once, and the summary says what happened
    assert status == 0
    assert sorted(e["id"] for e in read_events(emulator, name)) == sorted(e.id for e in events)
    out = capsys.readouterr()
    assert "delivered=3 undelivered=0 duplicates=1 malformed=1" in out.out
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
    assert replay.main([str(log), "--failed", str(failed), "--budget-s", "2"]) == 1
    assert [json.loads(line)["event"]["id"] for line in failed.read_text().splitlines()] == [e.id for e in events]
    # and once the stream exists, replaying those lines delivers them
    create_stream(emulator, name)
    assert replay.main([str(failed)]) == 0
    assert sorted(e["id"] for e in read_events(emulator, name)) == sorted(e.id for e in events)


def test_stream_override_and_dry_run(
    emulator: Emulator, stream: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name, _ = stream
    log = tmp_path / "fallback.log"
    log.write_text(line_for("old-stream", event(1)) + "\n")
    assert replay.main([str(log), "--stream", name, "--dry-run"]) == 0
    assert f"would deliver {name}=1" in capsys.readouterr().out
    assert read_events(emulator, name) == []
    assert replay.main([str(log), "--stream", name]) == 0
    assert len(read_events(emulator, name)) == 1


def test_an_unreadable_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert replay.main([str(tmp_path / "missing.log")]) == 2
    assert "cannot read" in capsys.readouterr().err
