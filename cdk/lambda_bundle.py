"""The API Lambda's code bundle, built without Docker and cached by a hash of its inputs.

Dependencies are installed with pip for the Lambda platform (:mod:`pulse_build.vendoring`: Linux
x86_64 wheels for :data:`pulse_build.runtimes.LAMBDA_PYTHON`), so the host's Python version does
not matter; then the ``lambda_api`` package and the ``pulse_contract`` package it imports are
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
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cdk import PROJECT_ROOT
from pulse_build import vendoring
from pulse_build.package_files import copytree_ignore, package_files
from pulse_build.runtimes import LAMBDA_PYTHON
from pulse_build.vendoring import PipRunner, VendoringError, pinned, platform_args, vendor

# What the FastAPI app imports at run time; versions come from requirements.txt (one version each).
LAMBDA_REQUIREMENTS = ("fastapi", "starlette", "mangum", "pydantic", "pydantic-settings")
PIP_PLATFORM_ARGS = platform_args(LAMBDA_PYTHON)
PACKAGE = "lambda_api"
# Project packages the handler imports besides its own.
SHARED_PACKAGES = (PROJECT_ROOT / "pulse_contract",)
DEFAULT_CACHE = PROJECT_ROOT / "build" / "lambda-bundle"


class BundleError(RuntimeError):
    """The Lambda bundle could not be built; the message says what to do."""


@dataclass(frozen=True)
class LambdaBundle:
    """A ready bundle directory and the hash that names it (used as the CDK asset hash)."""

    path: Path
    asset_hash: str


def pinned_requirements(requirements_file: Path, names: Iterable[str] = LAMBDA_REQUIREMENTS) -> list[str]:
    """``name==version`` for each of ``names`` as pinned in ``requirements_file``."""
    try:
        return pinned(names, requirements_file)
    except VendoringError as error:
        raise BundleError(str(error)) from None


def build_bundle(
    source: Path = PROJECT_ROOT / PACKAGE,
    requirements_file: Path = PROJECT_ROOT / "requirements.txt",
    cache: Path = DEFAULT_CACHE,
    run_pip: PipRunner | None = None,
    shared: Sequence[Path] = SHARED_PACKAGES,
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
        lambda target: _install(requirements, requirements_file, target, run_pip or vendoring.run_pip),
    )
    packages = (source, *shared)
    bundle_key = _digest(deps_key.encode() + "".join(_tree_digest(package) for package in packages).encode())
    bundle = _cached(cache / f"bundle-{bundle_key[:16]}", lambda target: _assemble(deps, packages, target))
    _prune(cache, keep={deps.name, bundle.name})
    return LambdaBundle(path=bundle, asset_hash=bundle_key)


def _install(requirements: Sequence[str], constraints: Path, target: Path, runner: PipRunner) -> None:
    try:
        vendor(requirements, target, LAMBDA_PYTHON, constraints=constraints, runner=runner)
    except VendoringError as error:
        raise BundleError(f"Lambda dependencies: {error}") from None
    for unwanted in ("boto3", "botocore"):
        if (target / unwanted).exists():
            raise BundleError(
                f"{unwanted} was pulled into the Lambda bundle by a dependency; pin it on purpose "
                "or drop the dependency that needs it"
            )


def _assemble(deps: Path, packages: Sequence[Path], target: Path) -> None:
    shutil.copytree(deps, target, copy_function=_link_or_copy, dirs_exist_ok=True)
    for package in packages:
        shutil.copytree(package, target / package.name, ignore=copytree_ignore, dirs_exist_ok=True)


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
    for path in package_files(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _link_or_copy(source: str, destination: str) -> str:
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
    return destination


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
