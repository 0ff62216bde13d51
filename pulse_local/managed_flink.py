"""Run the application zip the way Managed Service for Apache Flink runs it, on this machine.

``python -m pulse_local.managed_flink dist/pulse-flink.zip --properties props.json`` unpacks the zip
into a fresh directory and starts its entry point as the service does for a PyFlink application:

* the runtime's Python (:data:`pulse_build.runtimes.MANAGED_FLINK_PYTHON`) with only PyFlink
  installed: everything else the job imports must come from the zip (``deps/``), as on the service;
* the application properties (the list of property groups of the ``CfnApplication``) at the path
  the job reads them from on the service, named here by ``PULSE_APPLICATION_PROPERTIES``;
* the ``kinesis.analytics.flink.run.options`` group says which file is the entry point (``python``)
  and which JAR goes on the JVM's classpath (``jarfile``); nothing from the working tree is used.

What differs from the service: a local mini-cluster instead of the service's cluster, the
application's parallelism given as ``pulse.job`` ``parallelism`` (the mini-cluster has no other way
to receive it), and an ``aws.endpoint`` in the properties when the job should talk to an emulator.
The runtime environment (a virtual environment with the pinned ``apache-flink``) is created once
under ``build/``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flink_app.config import APPLICATION_PROPERTIES_ENV
from pulse_build.flink_zip import RUN_OPTIONS_GROUP
from pulse_build.runtimes import MANAGED_FLINK_PYTHON
from pulse_build.vendoring import pinned
from pulse_local.processes import without_pyflink_runtime

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_DIR = ROOT / "build" / f"managed-flink-python{MANAGED_FLINK_PYTHON}"
PYTHON_ENV = "PULSE_RUNTIME_PYTHON"  # an interpreter of the runtime's version, if not found by itself
# This process's Python and JVM set-up, which the service's entry point does not inherit (PyFlink's
# own run-time variables go too: pulse_local.processes).
INHERITED_PREFIXES_DROPPED = ("PYTHON",)
INHERITED_DROPPED = frozenset(
    ("VIRTUAL_ENV", "PULSE_CONNECTOR_JAR", "HADOOP_CLASSPATH", "JVM_ARGS", "CBOR_ENABLED", "AWS_CBOR_DISABLE")
)


class ManagedRuntimeError(RuntimeError):
    """The local runtime cannot be prepared (no Python of the runtime's version, pip failed)."""


def find_python(version: str = MANAGED_FLINK_PYTHON, environ: Mapping[str, str] = os.environ) -> Path:
    """An interpreter of ``version``: $PULSE_RUNTIME_PYTHON, ``pythonX.Y`` on PATH, or pyenv's."""
    candidates: list[Path] = []
    if environ.get(PYTHON_ENV):
        candidates.append(Path(environ[PYTHON_ENV]))
    on_path = shutil.which(f"python{version}")
    if on_path:
        candidates.append(Path(on_path))
    pyenv_root = Path(environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(pyenv_root.glob(f"versions/{version}*/bin/python{version}"), reverse=True)
    for candidate in candidates:
        probe = subprocess.run(
            [str(candidate), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    raise ManagedRuntimeError(
        f"no Python {version} found (the Managed Flink runtime's): install it, or set {PYTHON_ENV} to one"
    )


def runtime_python(directory: Path = RUNTIME_DIR) -> Path:
    """The runtime's interpreter with the pinned PyFlink, created on first use."""
    python = directory / "bin" / "python"
    requirement = pinned(["apache-flink"], ROOT / "requirements.txt")[0]
    stamp = directory / ".requirement"
    if python.exists() and stamp.exists() and stamp.read_text() == requirement:
        return python
    shutil.rmtree(directory, ignore_errors=True)
    subprocess.run([str(find_python()), "-m", "venv", str(directory)], check=True)
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", requirement],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ManagedRuntimeError(
            f"pip could not install {requirement} for the local runtime:\n{result.stderr[-2000:]}"
        )
    stamp.write_text(requirement)
    return python


def run_options(groups: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    for group in groups:
        if group.get("PropertyGroupId") == RUN_OPTIONS_GROUP:
            return {str(k): str(v) for k, v in dict(group.get("PropertyMap") or {}).items()}
    raise ManagedRuntimeError(f"the properties have no {RUN_OPTIONS_GROUP} group (python, jarfile)")


def unpack(application_zip: Path, directory: Path) -> Path:
    """The zip's files in ``directory`` (emptied first), as the service unpacks the code."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    with zipfile.ZipFile(application_zip) as archive:
        archive.extractall(directory)
    return directory


def with_parallelism(groups: Sequence[Mapping[str, Any]], parallelism: int) -> list[dict[str, Any]]:
    """``groups`` with the job's parallelism set to ``parallelism``.

    The service runs the job at the application's ``ParallelismConfiguration``; a local mini-cluster
    has no such setting (it takes the machine's cores), so the emulation passes it the way the job
    takes one locally, as ``pulse.job`` ``parallelism``.
    """
    out = [{"PropertyGroupId": g["PropertyGroupId"], "PropertyMap": dict(g.get("PropertyMap") or {})} for g in groups]
    job = next((g for g in out if g["PropertyGroupId"] == "pulse.job"), None)
    if job is None:
        job = {"PropertyGroupId": "pulse.job", "PropertyMap": {}}
        out.append(job)
    job["PropertyMap"]["parallelism"] = str(parallelism)
    return out


def start(
    application_zip: Path,
    groups: Sequence[Mapping[str, Any]],
    workdir: Path,
    environ: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    parallelism: int = 1,
) -> subprocess.Popen[bytes]:
    """Unpack ``application_zip`` into ``workdir/app`` and start its entry point with ``groups``, at the
    application's ``parallelism`` (the service's default is 1)."""
    groups = with_parallelism(groups, parallelism)
    options = run_options(groups)
    app = unpack(application_zip, workdir / "app")
    entry, jar = app / options["python"], app / options["jarfile"]
    for path, option in ((entry, "python"), (jar, "jarfile")):
        if not path.is_file():
            raise ManagedRuntimeError(f"run option {option}={options[option]} is not in {application_zip.name}")
    properties = workdir / "application_properties.json"
    properties.write_text(json.dumps(list(groups), indent=2))
    python = runtime_python()
    environment = {
        key: value
        for key, value in without_pyflink_runtime(environ).items()
        if not key.startswith(INHERITED_PREFIXES_DROPPED) and key not in INHERITED_DROPPED
    }
    environment.update(
        {
            APPLICATION_PROPERTIES_ENV: str(properties),
            # The service puts the `jarfile` on the JVM's classpath; PyFlink's launcher adds this one.
            "HADOOP_CLASSPATH": str(jar),
            # The workers start `python` from PATH: the runtime's.
            "PATH": f"{python.parent}{os.pathsep}{environment.get('PATH', '')}",
            # The JobManager's and TaskManager's log (PyFlink's launcher reads it): beside the run.
            "FLINK_LOG_DIR": str(workdir / "log"),
        }
    )
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
    # A session of its own: stop() ends the entry point and the JVM it started together.
    return subprocess.Popen(
        [str(python), str(entry)],
        cwd=app,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """End the entry point and everything it started (the JVM, the Python workers)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pulse_local.managed_flink", description=__doc__.splitlines()[0])
    parser.add_argument("zip", type=Path, help="the application zip (make package: dist/pulse-flink.zip)")
    parser.add_argument("--properties", type=Path, required=True, help="property groups JSON (the application's)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "managed-flink-run")
    parser.add_argument("--parallelism", type=int, default=1, help="the application's parallelism (default 1)")
    args = parser.parse_args(argv)
    try:
        if not args.zip.is_file():
            raise ManagedRuntimeError(f"{args.zip} is not a file (make package writes dist/pulse-flink.zip)")
        try:
            groups = json.loads(args.properties.read_text())
        except json.JSONDecodeError as error:
            raise ManagedRuntimeError(f"{args.properties}: not valid JSON ({error})") from None
        if not isinstance(groups, list) or not all(isinstance(g, dict) for g in groups):
            raise ManagedRuntimeError(f"{args.properties}: expected a list of property groups")
        process = start(args.zip, groups, args.workdir, parallelism=args.parallelism)
    except (ManagedRuntimeError, OSError) as error:
        print(f"managed_flink: {error}", file=sys.stderr)
        return 1
    try:
        return process.wait()
    except KeyboardInterrupt:
        stop(process)
        return 130


if __name__ == "__main__":
    sys.exit(main())
