"""Detector thresholds: the ``pulse.detect`` property group, one typed object."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DetectSettings(BaseModel):
    """Every detector threshold, with a default that works on realistic traffic.

    Property keys are the aliases (dotted, as in Managed Flink property groups).
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    warmup_windows: int = Field(6, ge=1, alias="warmup.windows")
    min_route_count: float = Field(20.0, ge=0, alias="route.min.count")
    spike_z: float = Field(6.0, gt=0, alias="spike.z")
    spike_ratio: float = Field(3.0, gt=1, alias="spike.ratio")
    drop_ratio: float = Field(0.25, gt=0, lt=1, alias="drop.ratio")
    ewma_alpha: float = Field(0.1, gt=0, lt=1, alias="ewma.alpha")
    anomaly_ttl_days: int = Field(30, ge=1, alias="anomaly.ttl.days")
