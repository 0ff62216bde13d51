"""Pinned wheels for a runtime's platform, installed into a directory without building anything.

Both deployables vendor their pure-Python dependencies this way: ``pip install --target`` with
``--platform``/``--python-version`` of the runtime and ``--only-binary=:all:``, so the host's
Python version and OS do not matter. Versions come from ``requirements.txt`` (one pin each).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from pulse_build.runtimes import WHEEL_PLATFORM

PipRunner = Callable[[Sequence[str]], None]


class VendoringError(RuntimeError):
    """A requirement is not pinned, or pip could not install the wheels; the message says which."""


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned(names: Iterable[str], requirements_file: Path) -> list[str]:
    """``name==version`` for each of ``names``, as pinned in ``requirements_file``."""
    pins: dict[str, str] = {}
    for line in requirements_file.read_text().splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)", line)
        if match:
            pins[canonical(match.group(1))] = f"{match.group(1)}=={match.group(2)}"
    names = list(names)
    missing = [name for name in names if canonical(name) not in pins]
    if missing:
        raise VendoringError(f"{requirements_file}: no pinned (==) version for {', '.join(missing)}")
    return [pins[canonical(name)] for name in names]


def platform_args(python_version: str) -> tuple[str, ...]:
    """pip's flags for CPython ``python_version`` wheels on the runtimes' platform."""
    return (
        "--platform",
        WHEEL_PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--only-binary=:all:",
    )


def install_command(
    requirements: Sequence[str], target: Path, python_version: str, constraints: Path | None = None
) -> list[str]:
    """The pip command that installs ``requirements`` into ``target`` for the runtime's Python."""
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        *platform_args(python_version),
        "--target",
        str(target),
        *(("--constraint", str(constraints)) if constraints else ()),
        *requirements,
    ]


def run_pip(command: Sequence[str]) -> None:
    """Run a pip command; VendoringError with pip's own words when it fails."""
    result = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise VendoringError(
            f"pip could not install wheels for {WHEEL_PLATFORM} (exit {result.returncode}); it needs PyPI, "
            f"or PIP_NO_INDEX=1 with PIP_FIND_LINKS pointing at a wheelhouse.\n{result.stderr.strip()[-2000:]}"
        )


def vendor(
    requirements: Sequence[str],
    target: Path,
    python_version: str,
    constraints: Path | None = None,
    runner: PipRunner = run_pip,
) -> None:
    """Install ``requirements`` into ``target``; console scripts (``bin/``) are dropped: they carry
    the build host's interpreter path and are never run on the service."""
    runner(install_command(requirements, target, python_version, constraints))
    shutil.rmtree(target / "bin", ignore_errors=True)
