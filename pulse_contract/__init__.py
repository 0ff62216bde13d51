"""The contracts between Pulse's parts, with no dependency: import them from here.

- the request event, schema v1 (:mod:`pulse_contract.request_event`): what the middleware puts on
  Kinesis and the detection job reads;
- the anomaly record (:mod:`pulse_contract.anomaly_record`): what the job writes and the API returns,
  with its kinds, severities and phases;
- the anomaly table (:mod:`pulse_contract.anomaly_table`): its key schema and the key builders.

``docs/architecture.md`` shows where each crosses the data path.
"""

from pulse_contract.anomaly_record import (
    CLIENT_KINDS,
    KINDS,
    OPTIONAL_FIELDS,
    PHASES,
    RECORD_COLUMNS,
    ROUTE_KINDS,
    SEVERITIES,
    SUBJECT_TYPES,
    Anomaly,
    AnomalyKind,
    Phase,
    Severity,
    SubjectType,
)
from pulse_contract.anomaly_table import iso_utc, subject_key
from pulse_contract.request_event import (
    FIELD_NAMES,
    MAX_ID_CHARS,
    SCHEMA_VERSION,
    UNKNOWN_CLIENT,
    UNMATCHED_ROUTE,
    RequestEvent,
    encode_json,
)

__all__ = [
    "CLIENT_KINDS",
    "FIELD_NAMES",
    "KINDS",
    "MAX_ID_CHARS",
    "OPTIONAL_FIELDS",
    "PHASES",
    "RECORD_COLUMNS",
    "ROUTE_KINDS",
    "SCHEMA_VERSION",
    "SEVERITIES",
    "SUBJECT_TYPES",
    "UNKNOWN_CLIENT",
    "UNMATCHED_ROUTE",
    "Anomaly",
    "AnomalyKind",
    "Phase",
    "RequestEvent",
    "Severity",
    "SubjectType",
    "encode_json",
    "iso_utc",
    "subject_key",
]
