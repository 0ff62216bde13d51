"""The API Lambda's code bundle, built without Docker and cached by a hash of its inputs.

Dependencies are installed with pip for the Lambda platform (``manylinux2014_x86_64``, CPython 3.12,
wheels only), so the host's Python version does not matter; then the ``lambda_api`` package is
copied in. Two cache levels under ``build/lambda-bundle/``: ``deps-<hash>`` (pinned requirements
and pip flags) and ``bundle-<hash>`` (dependencies plus the package's source). A synth with
unchanged inputs reuses the bundle without running pip or touching the network; a change to
``lambda_api`` only re-copies files.

boto3 is not vendored: the Lambda Python runtime provides it, and vendoring it would triple the
package size. Flink and CDK never enter the bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cdk import PROJECT_ROOT

# What the FastAPI app imports at run time; versions come from requirements.txt (one version each).
LAMBDA_REQUIREMENTS = ("fastapi", "starlette", "mangum", "pydantic", "pydantic-settings")
PIP_PLATFORM_ARGS = (
    "--platform",
    "manylinux2014_x86_64",
    "--implementation",
    "cp",
    "--python-version",
    "3.12",
    "--only-binary=:all:",
)
PACKAGE = "lambda_api"
DEFAULT_CACHE = PROJECT_ROOT / "build" / "lambda-bundle"
_IGNORED_PARTS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
_IGNORED_SUFFIXES = {".pyc", ".pyo"}

PipRunner = Callable[[Sequence[str]], None]


class BundleError(RuntimeError):
    """The Lambda bundle could not be built; the message says what to do."""


@dataclass(frozen=True)
class LambdaBundle:
    """A ready bundle directory and the hash that names it (used as the CDK asset hash)."""

    path: Path
    asset_hash: str


def pinned_requirements(requirements_file: Path, names: Iterable[str] = LAMBDA_REQUIREMENTS) -> list[str]:
    """``name==version`` for each of ``names`` as pinned in ``requirements_file``."""
    pins: dict[str, str] = {}
    for line in requirements_file.read_text().splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)", line)
        if match:
            pins[_canonical(match.group(1))] = f"{match.group(1)}=={match.group(2)}"
    missing = [name for name in names if _canonical(name) not in pins]
    if missing:
        raise BundleError(f"{requirements_file}: no pinned (==) version for {', '.join(missing)}")
    return [pins[_canonical(name)] for name in names]


def build_bundle(
    source: Path = PROJECT_ROOT / PACKAGE,
    requirements_file: Path = PROJECT_ROOT / "requirements.txt",
    cache: Path = DEFAULT_CACHE,
    run_pip: PipRunner | None = None,
) -> LambdaBundle:
    """Return the bundle for ``source`` and the pinned requirements, building what is not cached."""
    if not (source / "__init__.py").is_file():
        raise BundleError(f"{source} is not a Python package (no __init__.py): the Lambda handler lives there")
    requirements = pinned_requirements(requirements_file)
    deps_key = _digest(
        json.dumps(
            {"requirements": requirements, "pip": PIP_PLATFORM_ARGS, "constraints": requirements_file.read_text()},
            sort_keys=True,
        ).encode()
    )
    cache.mkdir(parents=True, exist_ok=True)
    deps = _cached(
        cache / f"deps-{deps_key[:16]}",
        lambda target: _install(requirements, requirements_file, target, run_pip or _run_pip),
    )
    bundle_key = _digest(deps_key.encode() + _tree_digest(source).encode())
    bundle = _cached(cache / f"bundle-{bundle_key[:16]}", lambda target: _assemble(deps, source, target))
    _prune(cache, keep={deps.name, bundle.name})
    return LambdaBundle(path=bundle, asset_hash=bundle_key)


def _install(requirements: Sequence[str], constraints: Path, target: Path, run_pip: PipRunner) -> None:
    run_pip(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-compile",
            *PIP_PLATFORM_ARGS,
            "--target",
            str(target),
            "--constraint",
            str(constraints),
            *requirements,
        ]
    )
    # Console scripts are useless in Lambda and carry the build host's interpreter path.
    shutil.rmtree(target / "bin", ignore_errors=True)
    for unwanted in ("boto3", "botocore"):
        if (target / unwanted).exists():
            raise BundleError(
                f"{unwanted} was pulled into the Lambda bundle by a dependency; pin it on purpose "
                "or drop the dependency that needs it"
            )


def _run_pip(command: Sequence[str]) -> None:
    result = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BundleError(
            "pip could not install the Lambda dependencies for manylinux2014_x86_64/cp312 "
            f"(exit {result.returncode}); it needs PyPI, or PIP_NO_INDEX=1 with PIP_FIND_LINKS "
            f"pointing at a wheelhouse.\n{result.stderr.strip()[-2000:]}"
        )


def _assemble(deps: Path, source: Path, target: Path) -> None:
    shutil.copytree(deps, target, copy_function=_link_or_copy, dirs_exist_ok=True)
    shutil.copytree(source, target / source.name, ignore=_ignore, dirs_exist_ok=True)


def _cached(final: Path, build: Callable[[Path], None]) -> Path:
    """``final`` if it exists, else built in a temporary sibling and renamed into place (atomic)."""
    if final.is_dir():
        return final
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        build(staging)
        try:
            staging.rename(final)
        except OSError:
            if not final.is_dir():  # someone else finished first: theirs is as good as ours
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _prune(cache: Path, keep: set[str]) -> None:
    for entry in cache.iterdir():
        if entry.is_dir() and entry.name not in keep and entry.name.split("-")[0] in {"deps", "bundle"}:
            shutil.rmtree(entry, ignore_errors=True)


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(_source_files(root)):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _source_files(root: Path) -> Iterable[Path]:
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if path.is_file() and not _IGNORED_PARTS.intersection(relative.parts) and path.suffix not in _IGNORED_SUFFIXES:
            yield path


def _ignore(directory: str, names: list[str]) -> set[str]:
    return {name for name in names if name in _IGNORED_PARTS or Path(name).suffix in _IGNORED_SUFFIXES}


def _link_or_copy(source: str, destination: str) -> str:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
    return destination


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()
