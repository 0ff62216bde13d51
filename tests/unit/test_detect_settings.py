"""The detector settings: one typed group, every key documented with its real default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flink_app.config import ConfigError, JobConfig
from flink_app.detect.settings import DetectSettings

DOC = Path(__file__).resolve().parents[2] / "docs" / "detection.md"


def documented_defaults() -> dict[str, str]:
    section = DOC.read_text().split("## Settings (`pulse.detect`)", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z0-9.]+)` \| ([^|]+) \|", section, flags=re.MULTILINE)
    return {key: value.strip() for key, value in rows}


def test_every_setting_is_documented_with_its_default() -> None:
    documented = documented_defaults()
    for name, field in DetectSettings.model_fields.items():
        assert field.alias in documented, f"{field.alias} ({name}) is not in docs/detection.md"
        default = field.default
        shown = documented[field.alias]
        assert (shown == str(default).lower()) if isinstance(default, bool) else float(shown) == float(default), (
            f"{field.alias}: docs say {shown}, code says {default}"
        )
    assert set(documented) == {f.alias for f in DetectSettings.model_fields.values()}


def test_settings_come_from_the_pulse_detect_property_group() -> None:
    config = JobConfig.from_property_groups(
        [
            {
                "PropertyGroupId": "pulse.detect",
                "PropertyMap": {"spike.ratio": "4", "route.detect.unmatched": "true", "alert.cooldown.s": "300"},
            }
        ]
    )
    assert (config.detect.spike_ratio, config.detect.route_detect_unmatched, config.detect.alert_cooldown_s) == (
        4.0,
        True,
        300.0,
    )
    assert JobConfig.from_property_groups(config.to_property_groups()) == config


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("spike.ratoi", "3", "unknown key 'spike.ratoi'"),
        ("drop.ratio", "1.5", "drop.ratio"),
        ("severity.high.score", "1.5", "severity.high.score must be above"),
    ],
)
def test_a_bad_setting_fails_at_start_up_naming_it(key: str, value: str, named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        JobConfig.from_property_groups([{"PropertyGroupId": "pulse.detect", "PropertyMap": {key: value}}])
