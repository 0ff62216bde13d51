"""Builds the job: environment, source, SQL stages, the Python detection operator, sinks.

One function per step, in the order data flows; :func:`build` wires them. ``bounded=True`` is
backtest: a finite file, no processing-time timers, anomalies collected by the caller.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from flink_app.config import MANAGED_FLINK_PROPERTIES, JobConfig, SinkKind, SourceKind
from flink_app.detect.model import Anomaly
from flink_app.operator import ANOMALY_COLUMNS, ANOMALY_TYPE_INFO, DetectionFunction, subject_key

PACKAGE_DIR = Path(__file__).resolve().parent
APP_ROOT = PACKAGE_DIR.parent  # the repository, or the unpacked Managed Flink zip
JAR_ENV = "PULSE_CONNECTOR_JAR"
JOB_NAME = "pulse-detection"
# Backtest has no latency to keep: bundles at least this large (elements, ms) halve the Python
# worker's CPU (each bundle commits every touched key's state once), measured on bench/flink_throughput.py.
BACKTEST_BUNDLE_SIZE = 100_000
BACKTEST_BUNDLE_TIME_MS = 10_000


def on_managed_flink() -> bool:
    return MANAGED_FLINK_PROPERTIES.exists()


def needs_connectors(config: JobConfig, bounded: bool) -> bool:
    return config.source.kind is SourceKind.KINESIS or (not bounded and config.sink.kind is SinkKind.DYNAMODB)


def connector_jar() -> Path:
    """The shaded connector JAR: $PULSE_CONNECTOR_JAR, the zip's ``lib/``, or the repository's ``jars/``."""
    candidates = [Path(os.environ[JAR_ENV])] if os.environ.get(JAR_ENV) else []
    candidates += [*sorted((APP_ROOT / "lib").glob("*.jar")), APP_ROOT / "jars" / "pulse-connectors.jar"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(f"connector JAR not found (looked at {', '.join(map(str, candidates))}); run `make jars`")


def prepare_process(config: JobConfig) -> None:
    """Settings the JVM must see when it starts, so call before the first PyFlink object.

    With an endpoint override (an emulator) the AWS SDK must not speak CBOR to Kinesis. The
    Python workers run this interpreter and find this package.
    """
    if config.source.endpoint or config.sink.endpoint:
        os.environ["CBOR_ENABLED"] = "false"
        os.environ["AWS_CBOR_DISABLE"] = "true"
        flag = "-Daws.cborEnabled=false"
        if flag not in os.environ.get("JVM_ARGS", ""):
            os.environ["JVM_ARGS"] = f"{os.environ.get('JVM_ARGS', '')} {flag}".strip()
    if not on_managed_flink():
        paths = [str(APP_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


@dataclass
class Environment:
    env: object  # StreamExecutionEnvironment
    t_env: object  # StreamTableEnvironment


def create_environment(
    config: JobConfig, bounded: bool, parallelism: int | None = None, flink_conf: dict[str, str] | None = None
) -> Environment:
    """Stream environment with the connector JAR (locally), Python settings and UTC session time."""
    from pyflink.common import Configuration
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import EnvironmentSettings, StreamTableEnvironment

    prepare_process(config)
    conf = Configuration()
    for key, value in (flink_conf or {}).items():
        conf.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    if needs_connectors(config, bounded) and not on_managed_flink():
        # On Managed Flink the `jarfile` run option already put it on the classpath.
        env.add_jars(connector_jar().as_uri())
    if on_managed_flink():
        deps = APP_ROOT / "deps"
        if deps.is_dir():
            env.add_python_file(str(deps))
        env.add_python_file(str(APP_ROOT))
    else:
        env.set_python_executable(sys.executable)
    parallelism = parallelism or config.job.parallelism
    if parallelism:
        env.set_parallelism(parallelism)
    if bounded:
        # A watermark with every event that moves it (instead of every 200 ms of wall time): the last
        # regular watermark before the end of input is then exactly the newest event time less the
        # delay, which decides what backtest judges (flink_app/operator.py), however fast the run.
        env.get_config().set_auto_watermark_interval(0)
    else:
        env.enable_checkpointing(config.job.checkpoint_interval_s * 1000)
    t_env = StreamTableEnvironment.create(env, environment_settings=EnvironmentSettings.in_streaming_mode())
    table_config = t_env.get_config()
    table_config.set("table.local-time-zone", "UTC")
    table_config.set("table.exec.source.idle-timeout", f"{config.windows.idle_timeout_s} s")
    bundle_size, bundle_time_ms = config.job.bundle_size, config.job.bundle_time_ms
    if bounded:
        bundle_size = max(bundle_size, BACKTEST_BUNDLE_SIZE)
        bundle_time_ms = max(bundle_time_ms, BACKTEST_BUNDLE_TIME_MS)
    table_config.set("python.fn-execution.bundle.size", str(bundle_size))
    table_config.set("python.fn-execution.bundle.time", str(bundle_time_ms))
    table_config.set("pipeline.name", JOB_NAME)
    # Keyed state is read over gRPC unless cached in the worker: cache every subject's state
    # (clients are the many keys), or each window pays round trips to the JVM.
    table_config.set("python.state.cache-size", "200000")
    return Environment(env=env, t_env=t_env)


@dataclass
class Pipeline:
    """A built job. Run it with :func:`execute` (streaming) or :func:`collect_anomalies` (backtest)."""

    environment: Environment
    anomalies: object  # DataStream of ANOMALY_COLUMNS rows
    statements: object  # StreamStatementSet: the sinks


def build(
    config: JobConfig,
    bounded: bool,
    parallelism: int | None = None,
    detect: bool = True,
    flink_conf: dict[str, str] | None = None,
) -> Pipeline:
    """Source → SQL stages → detection → sinks. ``detect=False`` sends the windows to a discarding
    sink instead (the SQL-only baseline of the benchmark)."""
    from flink_app import sinks, sources, stages

    environment = create_environment(config, bounded, parallelism, flink_conf)
    t_env = environment.t_env
    t_env.execute_sql(sources.source_ddl(config))  # type: ignore[attr-defined]
    staged = stages.register(t_env, config)  # type: ignore[arg-type]
    statements = t_env.create_statement_set()  # type: ignore[attr-defined]

    t_env.execute_sql(sinks.rejected_sink_ddl())  # type: ignore[attr-defined]
    t_env.create_temporary_function("count_rejected", sinks.rejected_counter(config))  # type: ignore[attr-defined]
    t_env.create_temporary_view("rejected_view", staged.rejected)  # type: ignore[attr-defined]
    statements.add_insert(
        sinks.REJECTED_SINK,
        t_env.sql_query(  # type: ignore[attr-defined]
            "SELECT count_rejected(reason, sample) FROM rejected_view"
        ),
    )

    if not detect:
        columns = ", ".join(f"`{name}` {sql_type}" for name, sql_type in stages.WINDOW_COLUMNS)
        t_env.execute_sql(  # type: ignore[attr-defined]
            f"CREATE TEMPORARY TABLE windows_discard ({columns}) WITH ('connector' = 'blackhole')"
        )
        statements.add_insert("windows_discard", staged.windows)
        return Pipeline(environment, None, statements)

    anomalies = detection(environment, staged.windows, config, bounded)
    if not bounded:
        t_env.execute_sql(sinks.anomaly_sink_ddl(config))  # type: ignore[attr-defined]
        statements.add_insert(sinks.ANOMALY_SINK, t_env.from_data_stream(anomalies))  # type: ignore[attr-defined]
    return Pipeline(environment, anomalies, statements)


def detection(environment: Environment, windows: object, config: JobConfig, bounded: bool) -> object:
    """The aggregate stream into the Python operator, keyed by subject; anomaly rows out."""
    from pyflink.common.typeinfo import Types

    stream = environment.t_env.to_data_stream(windows)  # type: ignore[attr-defined]
    stall_ms = (config.windows.idle_timeout_s + config.windows.watermark_delay_s) * 1000
    function = DetectionFunction(
        config.detect, bounded=bounded, stall_ms=stall_ms, client_ttl_h=config.job.client_state_ttl_h
    )
    return (
        stream.key_by(subject_key, key_type=Types.STRING())
        .process(function, output_type=ANOMALY_TYPE_INFO)
        .name("detect")
    )


def execute(pipeline: Pipeline, name: str = JOB_NAME) -> None:
    """Run until cancelled (streaming) or until the input ends."""
    pipeline.statements.attach_as_datastream()  # type: ignore[attr-defined]
    pipeline.environment.env.execute(name)  # type: ignore[attr-defined]


def execute_async(pipeline: Pipeline, name: str = JOB_NAME) -> object:
    """Submit and return Flink's ``JobClient`` (status, cancel): for tests and tools."""
    pipeline.statements.attach_as_datastream()  # type: ignore[attr-defined]
    return pipeline.environment.env.execute_async(name)  # type: ignore[attr-defined]


def collect_anomalies(pipeline: Pipeline) -> Iterator[Anomaly]:
    """Run a bounded pipeline and yield its anomalies as they are emitted."""
    pipeline.statements.attach_as_datastream()  # type: ignore[attr-defined]
    names = [name for name, _ in ANOMALY_COLUMNS]
    with pipeline.anomalies.execute_and_collect(JOB_NAME) as results:  # type: ignore[attr-defined]
        for row in results:
            yield Anomaly.from_record(dict(zip(names, row, strict=True)))
