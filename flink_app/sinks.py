"""Where anomalies go.

* Anomalies: Flink's DynamoDB SQL sink (``'connector'='dynamodb'``) with ``PRIMARY KEY (pk, sk)``,
  so a replay or a restart overwrites items instead of duplicating them; or, for a streaming run
  without AWS, JSON-lines part files in a directory. Backtest collects anomalies in the client and
  writes its output file itself (:mod:`flink_app.cli`).

Rejected and late records are counted by the detection operator (:mod:`flink_app.detection_operator`).
"""

from __future__ import annotations

from flink_app.anomaly_columns import ANOMALY_COLUMNS
from flink_app.config import ConfigError, JobConfig, SinkKind, region_of_arn
from flink_app.sql_text import with_clause
from pulse_contract.anomaly_table import PARTITION_KEY, SORT_KEY

ANOMALY_SINK = "anomaly_sink"
KEY = (PARTITION_KEY, SORT_KEY)
KEY_LIST = ", ".join(f"`{name}`" for name in KEY)


def _columns(primary_key: bool) -> str:
    lines = [
        f"`{name}` {sql_type}" + (" NOT NULL" if primary_key and name in KEY else "")
        for name, sql_type in ANOMALY_COLUMNS
    ]
    if primary_key:
        lines.append(f"PRIMARY KEY ({KEY_LIST}) NOT ENFORCED")
    return ",\n  ".join(lines)


def dynamodb_options(config: JobConfig) -> dict[str, str]:
    """Options of Flink's ``dynamodb`` table sink (connector 6.0.0) from ``pulse.sink``."""
    sink = config.sink
    region = (
        sink.region
        or config.source.region
        or (region_of_arn(config.source.stream_arn) if config.source.stream_arn else None)
    )
    if not region:
        raise ConfigError(
            "invalid job configuration: pulse.sink: aws.region is required (no stream.arn to take it from)"
        )
    options = {
        "connector": "dynamodb",
        "table-name": sink.table_name,
        "aws.region": region,
        "sink.flush-buffer.timeout": str(sink.flush_timeout_ms),
        # A failed batch is retried (not fatal): the keys are deterministic, a retry overwrites.
        "sink.fail-on-error": "false",
    }
    if sink.endpoint:
        options["aws.endpoint"] = sink.endpoint
    return options


def anomaly_sink_ddl(config: JobConfig, table: str = ANOMALY_SINK) -> str:
    """``CREATE TABLE`` for the anomaly sink of a streaming run (``pulse.sink.kind``)."""
    if config.sink.kind is SinkKind.DYNAMODB:
        # PARTITIONED BY, not PRIMARY KEY, is what the connector (6.0.0) reads as the keys to keep one
        # record of per BatchWriteItem call (the newest): DynamoDB refuses a batch that names a key twice.
        return (
            f"CREATE TEMPORARY TABLE `{table}` (\n  {_columns(primary_key=True)}\n)"
            f" PARTITIONED BY ({KEY_LIST}) WITH (\n  {with_clause(dynamodb_options(config))}\n)"
        )
    assert config.sink.path  # required by the config validator for kind=jsonl
    # Row formats commit a part file only once it rolls: roll with every checkpoint's cadence.
    options = {
        "connector": "filesystem",
        "path": config.sink.path,
        "format": "json",
        "sink.rolling-policy.rollover-interval": f"{config.job.checkpoint_interval_s} s",
        "sink.rolling-policy.check-interval": "1 s",
    }
    return f"CREATE TEMPORARY TABLE `{table}` (\n  {_columns(primary_key=False)}\n) WITH (\n  {with_clause(options)}\n)"
