"""Where raw request events come from: Flink's Kinesis SQL source, or a file of JSON lines.

Both render a ``CREATE TABLE`` whose columns are :func:`flink_app.event_columns.columns_ddl`: the raw
record plus the parsed fields and event time with its watermark.
"""

from __future__ import annotations

from flink_app.config import ConfigError, JobConfig, SourceKind, region_of_arn
from flink_app.event_columns import columns_ddl
from flink_app.sql_text import with_clause

RAW_EVENTS = "raw_events"


def kinesis_options(config: JobConfig) -> dict[str, str]:
    """Options of Flink's ``kinesis`` table source (connector 6.0.0) from ``pulse.source``."""
    source = config.source
    if not source.stream_arn:
        raise ConfigError("invalid job configuration: pulse.source: stream.arn is required when kind=kinesis")
    region = source.region or region_of_arn(source.stream_arn)
    options = {
        "connector": "kinesis",
        "stream.arn": source.stream_arn,
        "aws.region": region,
        "source.init.position": source.start_position.value,
        "format": "raw",
    }
    if source.start_timestamp:
        options["source.init.timestamp"] = source.start_timestamp
    if source.endpoint:
        options["aws.endpoint"] = source.endpoint
    return options


def filesystem_options(path: str, monitor_interval_s: float | None) -> dict[str, str]:
    """A directory or file of JSON lines, read raw; monitored for new files when an interval is given."""
    options = {"connector": "filesystem", "path": path, "format": "raw"}
    if monitor_interval_s:
        options["source.monitor-interval"] = f"{int(monitor_interval_s * 1000)} ms"
    return options


def source_ddl(config: JobConfig, table: str = RAW_EVENTS) -> str:
    """``CREATE TABLE`` for the configured source (``pulse.source.kind``)."""
    if config.source.kind is SourceKind.KINESIS:
        options = kinesis_options(config)
    else:
        assert config.source.path  # the config validator requires it for kind=filesystem
        options = filesystem_options(config.source.path, config.source.monitor_interval_s)
    return (
        f"CREATE TEMPORARY TABLE `{table}` (\n  {columns_ddl(config.windows.watermark_delay_s)}\n)"
        f" WITH (\n  {with_clause(options)}\n)"
    )
