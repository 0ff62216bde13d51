"""The anomaly record as Flink columns: the contract's attributes, in order, with their SQL types.

The detection operator emits rows of these columns and both sinks (DynamoDB, JSON lines) declare
them; the names and Python types come from :mod:`pulse_contract.anomaly_record`.
"""

from __future__ import annotations

from pulse_contract.anomaly_record import RECORD_COLUMNS

SQL_TYPES: dict[type, str] = {str: "STRING", int: "BIGINT", float: "DOUBLE"}

ANOMALY_COLUMNS: tuple[tuple[str, str], ...] = tuple((name, SQL_TYPES[kind]) for name, kind in RECORD_COLUMNS)
