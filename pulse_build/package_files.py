"""Which files of a source tree go into a deployable: everything but caches, tests and bytecode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

EXCLUDED_PARTS = frozenset({"__pycache__", "tests", ".pytest_cache", ".mypy_cache", ".ruff_cache"})
EXCLUDED_SUFFIXES = frozenset({".pyc", ".pyo"})


def excluded(relative: Path) -> bool:
    """Whether a path (relative to the tree's root) stays out of a deployable."""
    return bool(EXCLUDED_PARTS.intersection(relative.parts)) or relative.suffix in EXCLUDED_SUFFIXES


def package_files(root: Path) -> Iterator[Path]:
    """The files under ``root`` that go into a deployable, in sorted order."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and not excluded(path.relative_to(root)):
            yield path


def copytree_ignore(directory: str, names: list[str]) -> set[str]:
    """:func:`shutil.copytree`'s ``ignore``: the entries of ``directory`` that stay out."""
    return {name for name in names if excluded(Path(name))}
