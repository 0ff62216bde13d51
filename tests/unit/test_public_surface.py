"""What other code imports: lambda_api's declared surface and the record contract's derived forms."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

import lambda_api
from flink_app.anomaly_columns import ANOMALY_COLUMNS
from lambda_api.anomalies_endpoint import AnomalyRecord
from pulse_contract import RECORD_COLUMNS, Anomaly


def test_every_declared_name_of_lambda_api_resolves_and_nothing_else_does() -> None:
    for name in lambda_api.__all__:
        assert getattr(lambda_api, name) is not None
    with pytest.raises(AttributeError):
        _ = lambda_api.NoSuchThing  # type: ignore[attr-defined]


def test_importing_the_middleware_does_not_import_the_example_app_or_the_flink_job() -> None:
    code = (
        "import sys; from lambda_api import PulseMiddleware; "
        "print(sorted({'lambda_api.shop', 'flink_app'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_flink_columns_the_api_model_and_the_record_have_the_same_attributes() -> None:
    record = Anomaly("spike", "route", "/a", 0, 60_000, 90.0, 10.0, 8.0, "medium", 1, 2).to_record()
    assert [name for name, _ in RECORD_COLUMNS] == list(record)
    assert [name for name, _ in ANOMALY_COLUMNS] == list(record)
    # the API returns every attribute but the index's partition
    assert list(AnomalyRecord.model_fields) == [name for name in record if name != "day"]
    optional = [f.name for f in dataclasses.fields(Anomaly) if f.default is not dataclasses.MISSING]
    assert all(not AnomalyRecord.model_fields[name].is_required() for name in optional)
    assert AnomalyRecord.model_fields["kind"].is_required()


def test_the_api_model_refuses_a_kind_the_contract_does_not_name() -> None:
    record = Anomaly("spike", "route", "/a", 0, 60_000, 90.0, 10.0, 8.0, "medium", 1, 2).to_record()
    AnomalyRecord(**record)
    with pytest.raises(ValueError, match="kind"):
        AnomalyRecord(**{**record, "kind": "meteor"})
