"""CDK synthesis figures: Lambda bundle cold/warm and a whole `python app.py` synth.

Run: .venv/bin/python bench/cdk_synth.py
Prints name=value lines. The cold bundle uses a fresh cache folder (pip's own download cache may
still be warm); the warm one is the cache hit every later synth gets.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from cdk.flink_artifact import RUN_OPTIONS
from cdk.lambda_bundle import build_bundle

ROOT = Path(__file__).resolve().parent.parent


def bundle_size(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        cache = Path(scratch) / "cache"
        started = time.perf_counter()
        bundle = build_bundle(cache=cache)
        print(f"lambda_bundle_cold_s={time.perf_counter() - started:.2f}")
        started = time.perf_counter()
        build_bundle(cache=cache)
        print(f"lambda_bundle_warm_s={time.perf_counter() - started:.3f}")
        print(f"lambda_bundle_mb={bundle_size(bundle.path) / 1e6:.1f}")

        flink_zip = Path(scratch) / "pulse-flink.zip"
        with zipfile.ZipFile(flink_zip, "w") as archive:
            for entry in RUN_OPTIONS.values():
                archive.writestr(entry, "stand-in")
        environment = {**os.environ, "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20"}
        for run in ("first", "second"):
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, str(ROOT / "app.py"), "-c", f"flinkZip={flink_zip}"],
                cwd=scratch,
                env=environment,
                check=True,
                capture_output=True,
            )
            print(f"app_py_synth_{run}_s={time.perf_counter() - started:.2f}")


if __name__ == "__main__":
    main()
