"""What a test may do when the machine lacks something it needs: skip for a user, fail in CI."""

from __future__ import annotations

import pytest

from tests.conftest import skip_unless_ci


def test_a_missing_prerequisite_skips_on_a_users_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no JAR"):
        skip_unless_ci("no JAR")


@pytest.mark.parametrize("value", ["true", "1", "TRUE"])
def test_a_missing_prerequisite_fails_in_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    with pytest.raises(pytest.fail.Exception, match=r"no JAR \(CI"):
        skip_unless_ci("no JAR")
