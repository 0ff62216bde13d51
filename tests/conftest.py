"""Fixtures shared by every kind of test: the AWS emulator and fresh resources on it."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulse_local.emulator import Emulator, connect, create_anomaly_table, create_stream, start_moto

ROOT = Path(__file__).resolve().parent.parent
CONNECTOR_JAR = ROOT / "jars" / "pulse-connectors.jar"
# Written by jars/build.sh when the Maven repository cannot provide the connectors.
CONNECTOR_JAR_UNAVAILABLE = ROOT / "jars" / ".unavailable"


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """AWS_ENDPOINT_URL's emulator if set (LocalStack), else an embedded moto server for the session."""
    external = connect()
    if external is not None:
        external.apply_env()
        yield external
        external.restore_env()
        return
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    embedded = start_moto(log_path=log)
    embedded.apply_env()
    try:
        yield embedded
    finally:
        embedded.restore_env()
        embedded.stop()


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def stream(emulator: Emulator) -> tuple[str, str]:
    """A fresh Kinesis stream (moto's put cost grows with a shard's size): (name, ARN)."""
    name = unique_name("pulse-test")
    return name, create_stream(emulator, name, shards=1)


@pytest.fixture
def anomaly_table(emulator: Emulator) -> str:
    """A fresh anomaly table with the contract's keys and index."""
    name = unique_name("pulse-anomalies")
    create_anomaly_table(emulator, name)
    return name


@pytest.fixture(scope="session")
def connector_jar() -> Path:
    """The Maven-built connector JAR; `make setup` builds it, tests never substitute it.

    Skipped, with the repository's answer as the reason, only when Maven could not get the
    connectors (jars/.unavailable) and not in CI; a JAR missing for any other reason fails the test.
    """
    if CONNECTOR_JAR.exists():
        return CONNECTOR_JAR
    if CONNECTOR_JAR_UNAVAILABLE.exists():
        skip_unless_ci(f"connector JAR unavailable: {CONNECTOR_JAR_UNAVAILABLE.read_text().strip()}")
    pytest.fail(f"{CONNECTOR_JAR} is missing: run `make jars` (Maven) first", pytrace=False)


def skip_unless_ci(reason: str) -> None:
    """Skip for a user whose machine lacks something a test needs; in CI (CI=true) that is a failure."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI: a test that needs it may not skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _no_real_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach real AWS: without an emulator endpoint, boto3 gets dummy credentials."""
    if not os.environ.get("AWS_ENDPOINT_URL"):
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        monkeypatch.setenv("AWS_DEFAULT_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
