"""``python -m pulse_build.flink_zip --jar JAR --out dist``: the Managed Flink application zip.

Layout (what the ``kinesis.analytics.flink.run.options`` group points at, :data:`RUN_OPTIONS`)::

    main.py                  run option  python=main.py (flink_app/managed_flink_entry.py)
    flink_app/               the job (no tests, caches or .pyc)
    pulse_contract/          the record and key definitions the job writes by
    lib/pulse-connectors.jar run option  jarfile=lib/pulse-connectors.jar
    deps/                    pure-Python dependencies the job imports (pydantic and its own),
                             wheels for the service's platform and Python
                             (:data:`pulse_build.runtimes.MANAGED_FLINK_PYTHON`); main.py and the
                             job put it on the client's and the workers' path. PyFlink itself is
                             provided by the runtime.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from pulse_build.package_files import package_files
from pulse_build.runtimes import MANAGED_FLINK_PYTHON
from pulse_build.vendoring import VendoringError, pinned, vendor

ROOT = Path(__file__).resolve().parent.parent
ZIP_NAME = "pulse-flink.zip"
JAR_NAME = "pulse-connectors.jar"
# The entry script, and where it sits in the zip (Managed Flink's run option ``python``).
ENTRY_SOURCE = ROOT / "flink_app" / "managed_flink_entry.py"
ENTRY = "main.py"
RUN_OPTIONS_GROUP = "kinesis.analytics.flink.run.options"
RUN_OPTIONS = {"python": ENTRY, "jarfile": f"lib/{JAR_NAME}"}
# The project's packages the job imports.
PACKAGES = ("flink_app", "pulse_contract")
# Imported by the job outside PyFlink (config, detector settings); versions from requirements.txt.
DEPENDENCIES = ("pydantic",)


def build_zip(jar: Path, out_dir: Path, deps: Path | None) -> Path:
    """Write ``out_dir/pulse-flink.zip``; ``deps`` is a directory of vendored packages (or None)."""
    if not jar.is_file():
        raise SystemExit(f"packaging: connector JAR {jar} not found; run `make jars`")
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / ZIP_NAME
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.write(ENTRY_SOURCE, ENTRY)
        for name in PACKAGES:
            package = ROOT / name
            for path in package_files(package):
                archive.write(path, (Path(name) / path.relative_to(package)).as_posix())
        archive.write(jar, RUN_OPTIONS["jarfile"])
        if deps is not None:
            for path in package_files(deps):
                archive.write(path, (Path("deps") / path.relative_to(deps)).as_posix())
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pulse_build.flink_zip", description=__doc__.splitlines()[0])
    parser.add_argument("--jar", type=Path, required=True, help="the shaded connector JAR (make jars)")
    parser.add_argument("--out", type=Path, default=Path("dist"))
    parser.add_argument("--no-deps", action="store_true", help="leave out deps/ (tests of the layout only)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        deps = None
        if not args.no_deps:
            deps = Path(scratch) / "deps"
            try:
                vendor(pinned(DEPENDENCIES, ROOT / "requirements.txt"), deps, MANAGED_FLINK_PYTHON)
            except VendoringError as error:
                raise SystemExit(f"packaging: {error}") from None
        target = build_zip(args.jar, args.out, deps)
    print(f"packaging: wrote {target} ({target.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
