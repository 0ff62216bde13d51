"""``python -m flink_app.packaging --jar JAR --out dist``: the Managed Flink application zip.

Layout (what the ``kinesis.analytics.flink.run.options`` group points at)::

    main.py                  run option  python=main.py
    flink_app/               the job (no tests, caches or .pyc)
    lib/pulse-connectors.jar run option  jarfile=lib/pulse-connectors.jar
    deps/                    pure-Python dependencies the job imports (pydantic and its own),
                             built for the service's platform (Linux x86_64, Python 3.12 on
                             FLINK-2_2); main.py and the job put it on the client's and the
                             workers' path. PyFlink itself is provided by the runtime.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ZIP_NAME = "pulse-flink.zip"
# Imported by the job outside PyFlink (config, detector settings); versions from requirements.txt.
DEPENDENCIES = ("pydantic",)
PLATFORM = "manylinux2014_x86_64"
PYTHON_VERSION = "3.12"  # Managed Flink FLINK-2_2 runs Python 3.12
EXCLUDED_PARTS = {"__pycache__", "tests", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
EXCLUDED_SUFFIXES = {".pyc", ".pyo"}


def pinned(names: Sequence[str], requirements: Path = ROOT / "requirements.txt") -> list[str]:
    """``name==version`` for each name, as pinned in requirements.txt."""
    pins = {}
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[name.strip().lower()] = version.strip()
    missing = [name for name in names if name.lower() not in pins]
    if missing:
        raise SystemExit(f"packaging: {', '.join(missing)} not pinned in {requirements}")
    return [f"{name}=={pins[name.lower()]}" for name in names]


def vendor(
    requirements: Sequence[str], target: Path, platform: str = PLATFORM, python_version: str = PYTHON_VERSION
) -> None:
    """pip-install wheels for the service's platform into ``target`` (no build, no local env)."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",
        "--only-binary=:all:",
        "--platform",
        platform,
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--target",
        str(target),
        *requirements,
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"packaging: pip could not fetch {' '.join(requirements)} for {platform}:\n{result.stderr}")


def _files(directory: Path) -> Iterator[Path]:
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if path.is_file() and not EXCLUDED_PARTS.intersection(relative.parts) and path.suffix not in EXCLUDED_SUFFIXES:
            yield path


def build_zip(jar: Path, out_dir: Path, deps: Path | None) -> Path:
    """Write ``out_dir/pulse-flink.zip``; ``deps`` is a directory of vendored packages (or None)."""
    if not jar.is_file():
        raise SystemExit(f"packaging: connector JAR {jar} not found; run `make jars`")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / ZIP_NAME
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(ROOT / "main.py", "main.py")
        package = ROOT / "flink_app"
        for path in _files(package):
            archive.write(path, (Path("flink_app") / path.relative_to(package)).as_posix())
        archive.write(jar, f"lib/{jar.name}")
        if deps is not None:
            for path in _files(deps):
                archive.write(path, (Path("deps") / path.relative_to(deps)).as_posix())
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flink_app.packaging", description=__doc__.splitlines()[0])
    parser.add_argument("--jar", type=Path, required=True, help="the shaded connector JAR (make jars)")
    parser.add_argument("--out", type=Path, default=Path("dist"))
    parser.add_argument("--no-deps", action="store_true", help="leave out deps/ (tests of the layout only)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        deps = None
        if not args.no_deps:
            deps = Path(scratch) / "deps"
            vendor(pinned(DEPENDENCIES), deps)
            shutil.rmtree(deps / "bin", ignore_errors=True)  # console scripts are not needed at run time
        target = build_zip(args.jar, args.out, deps)
    print(f"packaging: wrote {target} ({target.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
