"""`make demo`'s flow end to end: every injected anomaly comes back through GET /monitoring/anomalies.

The demo runs as a user runs it (``python -m pulse_local.demo``, its own process, its own JVM): the
example API under uvicorn with the buffered publisher, a two-shard stream, the job on the local
mini-cluster through Flink's Kinesis source and DynamoDB sink (the Maven-built JAR), labelled
traffic over HTTP with one injection of each kind. With ``AWS_ENDPOINT_URL`` set (LocalStack) the
demo uses that endpoint instead of an embedded moto server; nothing here changes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pulse_contract import KINDS, Anomaly
from pulse_local.processes import without_pyflink_runtime

pytestmark = [pytest.mark.integration, pytest.mark.flink, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def figures(stdout: str) -> dict[str, str]:
    """The demo's last line: ``name=value`` pairs."""
    last = stdout.strip().splitlines()[-1]
    return dict(pair.split("=", 1) for pair in last.split())


def run_demo(out: Path, *args: str, timeout_s: float = 420) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pulse_local.demo", "--no-live", "--out", str(out), *args],
        cwd=ROOT,
        env=without_pyflink_runtime(),  # the suite's own Flink jobs leave PyFlink's variables here
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_every_injected_anomaly_comes_back_through_the_api(connector_jar: Path, tmp_path: Path) -> None:
    # when the demo runs with a seed of its own
    result = run_demo(tmp_path, "--seed", "11")

    # then it ends well, and its last line reports every injection found, read by the Kinesis source
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    found = figures(result.stdout)
    assert found["injected"] == str(len(KINDS)) and found["found"] == found["injected"], found
    assert found["source"] == "kinesis" and found["sink"] == "dynamodb" and found["api"] == "uvicorn"
    # and each injection has an anomaly of its kind on its subject, as the API returned it
    labels = json.loads((tmp_path / "injections.json").read_text())
    records = [json.loads(line) for line in (tmp_path / "anomalies.jsonl").read_text().splitlines()]
    for label in labels:
        assert any(
            label["kind"] in Anomaly.from_record(r).kind_list  # the incident's kind, or one of its facets
            and r["subject"] == label["subject"]
            and r["phase"] != "end"
            and label["start_ms"] <= r["window_end"]
            for r in records
        ), label
    # and every request the traffic made reached the stream or the fallback log
    assert int(found["events_on_stream"]) + int(found["fallback"]) >= int(found["requests"]) > 1000
    assert Path(found["png"]).stat().st_size > 10_000


def test_an_emulator_outage_loses_nothing_and_every_anomaly_still_appears(connector_jar: Path, tmp_path: Path) -> None:
    # when the emulator is unreachable from the API for 20 s in the middle of the injections (the API
    # reaches it through a relay that goes down), and the demo then replays the fallback log with
    # `python -m lambda_api.fallback_replay`
    result = run_demo(tmp_path, "--seed", "5", "--outage", "20")

    # then the API answered every request, and what it could not deliver went to the fallback log
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    found = figures(result.stdout)
    assert found["no_answer"] == "0"
    assert int(found["fallback"]) > 100
    # and the replay delivered every fallback line, in time for the job's windows (none late)
    assert found["replay_status"] == "0" and found["replayed"] == found["fallback"]
    assert found["late"] == "0"
    # and nothing is lost: every answered request's event is on the stream or in the fallback log
    assert found["lost"] == "0"
    # and the anomalies that depend on the undelivered events still appear: every injection is found
    assert found["injected"] == str(len(KINDS)) and found["found"] == found["injected"], found
    replay_log = (tmp_path / "replay.log").read_text()
    assert f"delivered={found['fallback']} undelivered=0" in replay_log
