"""The API Lambda bundle: built without Docker, cached by its inputs, small, holding lambda_api."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path

import pytest

from cdk import PROJECT_ROOT
from cdk.lambda_bundle import LAMBDA_REQUIREMENTS, PIP_PLATFORM_ARGS, BundleError, build_bundle, pinned_requirements

REQUIREMENTS = PROJECT_ROOT / "requirements.txt"


class FakePip:
    """Stands in for pip: records each call and installs one small package into --target."""

    def __init__(self, extra_packages: Sequence[str] = ()) -> None:
        self.calls: list[list[str]] = []
        self.extra_packages = extra_packages

    def __call__(self, command: Sequence[str]) -> None:
        self.calls.append(list(command))
        target = Path(command[command.index("--target") + 1])
        for package in ("fastapi", *self.extra_packages):
            (target / package).mkdir(parents=True)
            (target / package / "__init__.py").write_text(f"# fake {package}\n")
        (target / "bin").mkdir()
        (target / "bin" / "fastapi").write_text("#!/build/host/python\n")


def make_source(root: Path, body: str = "handler = None\n") -> Path:
    package = root / "lambda_api"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    (package / "handler.py").write_text(body)
    (package / "__pycache__").mkdir(exist_ok=True)
    (package / "__pycache__" / "handler.cpython-311.pyc").write_bytes(b"stale")
    return package


def test_requirements_are_the_pinned_versions() -> None:
    pins = pinned_requirements(REQUIREMENTS)
    assert [pin.split("==")[0].lower() for pin in pins] == [name.lower() for name in LAMBDA_REQUIREMENTS]
    assert all("==" in pin and pin.split("==")[1] for pin in pins)


def test_an_unpinned_requirement_is_refused(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("fastapi==1.0\nstarlette>=0.1\n")
    with pytest.raises(BundleError, match=r"no pinned .* version for starlette"):
        pinned_requirements(requirements, ["fastapi", "starlette"])


def test_pip_targets_the_lambda_platform_and_the_package_is_copied(tmp_path: Path) -> None:
    # Given a package and a pip that installs into its --target
    source, pip = make_source(tmp_path / "src"), FakePip()
    # When the bundle is built
    bundle = build_bundle(source=source, requirements_file=REQUIREMENTS, cache=tmp_path / "cache", run_pip=pip)
    # Then pip ran once, for manylinux2014_x86_64 / CPython 3.12 wheels, with the pinned requirements
    (command,) = pip.calls
    flags = command[command.index("--no-compile") + 1 :]
    assert flags[: len(PIP_PLATFORM_ARGS)] == list(PIP_PLATFORM_ARGS)
    assert set(pinned_requirements(REQUIREMENTS)) <= set(command)
    # and the bundle holds the dependencies and lambda_api, without bytecode or console scripts
    assert (bundle.path / "fastapi" / "__init__.py").exists()
    assert (bundle.path / "lambda_api" / "handler.py").read_text() == "handler = None\n"
    assert not (bundle.path / "lambda_api" / "__pycache__").exists()
    assert not (bundle.path / "bin").exists()


def test_unchanged_inputs_reuse_the_bundle_without_pip(tmp_path: Path) -> None:
    source, pip = make_source(tmp_path / "src"), FakePip()
    first = build_bundle(source=source, requirements_file=REQUIREMENTS, cache=tmp_path / "cache", run_pip=pip)

    def no_network(command: Sequence[str]) -> None:
        raise AssertionError("pip must not run for a cached bundle")

    second = build_bundle(source=source, requirements_file=REQUIREMENTS, cache=tmp_path / "cache", run_pip=no_network)
    assert second == first


def test_a_source_change_makes_a_new_bundle_without_reinstalling(tmp_path: Path) -> None:
    source, pip = make_source(tmp_path / "src"), FakePip()
    cache = tmp_path / "cache"
    first = build_bundle(source=source, requirements_file=REQUIREMENTS, cache=cache, run_pip=pip)
    make_source(tmp_path / "src", body="handler = 'changed'\n")
    second = build_bundle(source=source, requirements_file=REQUIREMENTS, cache=cache, run_pip=pip)
    assert len(pip.calls) == 1
    assert second.asset_hash != first.asset_hash
    assert (second.path / "lambda_api" / "handler.py").read_text() == "handler = 'changed'\n"
    assert not first.path.exists()  # superseded bundles are pruned


def test_boto3_pulled_in_by_a_dependency_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="boto3 was pulled into the Lambda bundle"):
        build_bundle(
            source=make_source(tmp_path / "src"),
            requirements_file=REQUIREMENTS,
            cache=tmp_path / "cache",
            run_pip=FakePip(extra_packages=["boto3"]),
        )
    assert not list((tmp_path / "cache").glob("deps-*"))  # nothing half-built is left as a cache entry


def test_a_missing_package_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a Python package"):
        build_bundle(
            source=tmp_path / "lambda_api", requirements_file=REQUIREMENTS, cache=tmp_path / "cache", run_pip=FakePip()
        )


@pytest.mark.slow
def test_the_real_bundle_builds_without_docker_and_holds_lambda_api(tmp_path: Path) -> None:
    # Given the repository's lambda_api and requirements (pip fetches wheels once; then the cache answers)
    bundle = build_bundle()
    # Then the bundle has the package, Linux CPython 3.12 wheels, and nothing the runtime or Flink provides
    assert (bundle.path / "lambda_api" / "__init__.py").is_file()
    for package in ("fastapi", "starlette", "mangum", "pydantic", "pydantic_settings"):
        assert (bundle.path / package / "__init__.py").is_file(), package
    assert list((bundle.path / "pydantic_core").glob("_pydantic_core.cpython-312-x86_64-linux-gnu.so"))
    for absent in ("boto3", "botocore", "pyflink", "aws_cdk", "jsii", "bin"):
        assert not (bundle.path / absent).exists(), absent
    # and it stays small once zipped (Lambda's limit is 50 MB zipped, 250 MB unzipped)
    archive = tmp_path / "bundle.zip"
    shutil.make_archive(str(archive.with_suffix("")), "zip", bundle.path)
    assert archive.stat().st_size < 15 * 1024 * 1024
    with zipfile.ZipFile(archive) as zipped:
        assert "lambda_api/__init__.py" in zipped.namelist()

    # and a second build is a cache hit that never runs pip (offline)
    def offline(command: Sequence[str]) -> None:
        raise AssertionError("the cached bundle must not need pip")

    assert build_bundle(run_pip=offline) == bundle
