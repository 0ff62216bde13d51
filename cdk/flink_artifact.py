"""The Managed Flink zip that the detector deploys: found, built when missing, and checked.

``make package`` writes ``dist/pulse-flink.zip``: ``main.py`` at the root and the one shaded
connector JAR under ``lib/``. The application's run options point at exactly those two entries
(:data:`RUN_OPTIONS`), so a zip without them is refused at synth time instead of failing on the
service minutes after a deploy.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from cdk import PROJECT_ROOT

# Managed Flink's run options (the entry script and the JAR in the zip) are the zip's own layout.
from pulse_build.flink_zip import RUN_OPTIONS, RUN_OPTIONS_GROUP, ZIP_NAME

DEFAULT_ZIP = PROJECT_ROOT / "dist" / ZIP_NAME
BUILD_COMMAND = ("make", "package")


class FlinkArtifactError(RuntimeError):
    """The Flink zip is missing, could not be built, or lacks what the run options name."""


def resolve_flink_zip(
    path: str | Path | None = None,
    build_if_missing: bool = True,
    build_command: Sequence[str] = BUILD_COMMAND,
    cwd: Path = PROJECT_ROOT,
    default: Path = DEFAULT_ZIP,
) -> Path:
    """The zip to deploy: ``path`` or ``dist/pulse-flink.zip``, built with ``make package`` if missing."""
    zip_path = Path(path).resolve() if path else default
    if not zip_path.exists():
        if path or not build_if_missing:
            raise FlinkArtifactError(
                f"Flink zip {zip_path} does not exist: run `make package` (builds dist/pulse-flink.zip with Maven "
                "and the connector JAR) or pass -c flinkZip=PATH"
            )
        _build(zip_path, build_command, cwd)
    check_flink_zip(zip_path)
    return zip_path


def check_flink_zip(zip_path: Path) -> None:
    """Fail unless ``zip_path`` is a zip holding every entry named by :data:`RUN_OPTIONS`."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            names = set(archive.namelist())
    except zipfile.BadZipFile:
        raise FlinkArtifactError(f"{zip_path} is not a zip file") from None
    missing = [entry for entry in RUN_OPTIONS.values() if entry not in names]
    if missing:
        raise FlinkArtifactError(
            f"{zip_path} lacks {', '.join(missing)}, which the {RUN_OPTIONS_GROUP} property group names; "
            "rebuild it with `make package`"
        )


def _build(zip_path: Path, command: Sequence[str], cwd: Path) -> None:
    print(f"{zip_path} is missing: running `{' '.join(command)}` to build it", file=sys.stderr)
    # The build's own output goes to stderr: stdout may be read by the CDK CLI.
    result = subprocess.run(list(command), cwd=cwd, stdout=sys.stderr, stderr=sys.stderr, check=False)
    if result.returncode != 0:
        raise FlinkArtifactError(
            f"`{' '.join(command)}` failed (exit {result.returncode}) while building the missing {zip_path}; "
            "fix the build (it needs Maven for the connector JAR) or pass -c flinkZip=PATH"
        )
    if not zip_path.exists():
        raise FlinkArtifactError(f"`{' '.join(command)}` succeeded but did not produce {zip_path}")
