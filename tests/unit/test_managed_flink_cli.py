"""The local Managed Flink emulation refuses what the service would refuse, in one line, before any JVM."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from pulse_local import managed_flink


@pytest.fixture
def application_zip(tmp_path: Path) -> Path:
    path = tmp_path / "app.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("main.py", "print('main')\n")
    return path


@pytest.mark.parametrize(
    ("properties", "said"),
    [
        ("not json", "not valid JSON"),
        (json.dumps({"PropertyGroupId": "pulse.source"}), "expected a list of property groups"),
        (json.dumps([]), "no kinesis.analytics.flink.run.options group"),
        (
            json.dumps(
                [
                    {
                        "PropertyGroupId": managed_flink.RUN_OPTIONS_GROUP,
                        "PropertyMap": {"python": "main.py", "jarfile": "lib/missing.jar"},
                    }
                ]
            ),
            "run option jarfile=lib/missing.jar is not in app.zip",
        ),
    ],
)
def test_bad_properties_are_refused_naming_the_problem(
    application_zip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], properties: str, said: str
) -> None:
    file = tmp_path / "props.json"
    file.write_text(properties)
    code = managed_flink.main([str(application_zip), "--properties", str(file), "--workdir", str(tmp_path / "w")])
    assert code == 1
    assert said in capsys.readouterr().err


def test_a_missing_zip_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = tmp_path / "props.json"
    file.write_text("[]")
    assert managed_flink.main([str(tmp_path / "none.zip"), "--properties", str(file)]) == 1
    assert "is not a file" in capsys.readouterr().err


def test_the_applications_parallelism_reaches_the_job_as_its_own_setting() -> None:
    groups = [{"PropertyGroupId": "pulse.job", "PropertyMap": {"python.bundle.time.ms": "100"}}]
    [job] = managed_flink.with_parallelism(groups, 3)
    assert job["PropertyMap"] == {"python.bundle.time.ms": "100", "parallelism": "3"}
    assert groups[0]["PropertyMap"] == {"python.bundle.time.ms": "100"}  # the caller's groups untouched
    assert managed_flink.with_parallelism([], 1) == [
        {"PropertyGroupId": "pulse.job", "PropertyMap": {"parallelism": "1"}}
    ]
