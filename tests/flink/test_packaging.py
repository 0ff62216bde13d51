"""`make package`'s zip: the Managed Flink layout with the one Maven-built connector JAR."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.slow]

FACTORY_SERVICES = "META-INF/services/org.apache.flink.table.factories.Factory"


def test_the_zip_holds_the_entry_file_the_job_its_dependencies_and_one_connector_jar(
    connector_jar: Path, tmp_path: Path
) -> None:
    # when
    subprocess.run(
        [sys.executable, "-m", "flink_app.packaging", "--jar", str(connector_jar), "--out", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )

    # then: the layout the run options point at
    with zipfile.ZipFile(tmp_path / "pulse-flink.zip") as archive:
        names = archive.namelist()
        jars = [name for name in names if name.endswith(".jar")]
        assert "main.py" in names
        assert {"flink_app/__init__.py", "flink_app/cli.py", "flink_app/detect/engine.py"} <= set(names)
        assert jars == [f"lib/{connector_jar.name}"]
        assert any(name.startswith("deps/pydantic/") for name in names)
        assert any(name.startswith("deps/pydantic_core/") and name.endswith(".so") for name in names)
        assert not [n for n in names if n.endswith((".pyc", ".pyo")) or "__pycache__" in n or n.startswith("tests/")]
        jar = zipfile.ZipFile(io.BytesIO(archive.read(jars[0])))

    # and the JAR registers both table factories
    factories = [
        line.strip()
        for line in jar.read(FACTORY_SERVICES).decode().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert any("kinesis" in f.lower() for f in factories), factories
    assert any("dynamodb" in f.lower() for f in factories), factories
    assert not [n for n in jar.namelist() if n.upper().endswith((".SF", ".DSA", ".RSA"))]
