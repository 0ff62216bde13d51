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
from typing import TYPE_CHECKING

from flink_app import jvm_functions
from flink_app.anomaly_columns import ANOMALY_COLUMNS
from flink_app.config import JobConfig, application_properties_path
from flink_app.detection_operator import ANOMALY_TYPE_INFO, DetectionFunction
from pulse_contract import Anomaly
from pulse_contract.anomaly_table import SUBJECT_KEY_SEPARATOR

if TYPE_CHECKING:  # PyFlink is imported when a job is built, not when this module is
    from pyflink.common import JobClient
    from pyflink.datastream import DataStream, KeyedStream, StreamExecutionEnvironment
    from pyflink.table import StatementSet, StreamTableEnvironment, Table

PACKAGE_DIR = Path(__file__).resolve().parent
APP_ROOT = PACKAGE_DIR.parent  # the repository, or the unpacked Managed Flink zip
JAR_ENV = "PULSE_CONNECTOR_JAR"
JOB_NAME = "pulse-detection"
# Backtest has no latency to keep: bundles at least this large (elements, ms) halve the Python
# worker's CPU (each bundle commits every touched key's state once), measured on bench/flink_throughput.py.
BACKTEST_BUNDLE_SIZE = 100_000
BACKTEST_BUNDLE_TIME_MS = 10_000


def on_managed_flink() -> bool:
    return application_properties_path().exists()


def connector_jar() -> Path:
    """The shaded connector JAR: $PULSE_CONNECTOR_JAR, the zip's ``lib/``, or the repository's ``jars/``."""
    candidates = [Path(os.environ[JAR_ENV])] if os.environ.get(JAR_ENV) else []
    candidates += [*sorted((APP_ROOT / "lib").glob("*.jar")), APP_ROOT / "jars" / "pulse-connectors.jar"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise FileNotFoundError(f"connector JAR not found (looked at {', '.join(map(str, candidates))}); run `make jars`")


# What the AWS SDK for Java reads from system properties before the environment: credentials
# (SystemPropertyCredentialsProvider comes first in the default chain) and CBOR.
JVM_CREDENTIAL_PROPERTIES = {
    "AWS_ACCESS_KEY_ID": "aws.accessKeyId",
    "AWS_SECRET_ACCESS_KEY": "aws.secretAccessKey",
    "AWS_SESSION_TOKEN": "aws.sessionToken",
}
JVM_CBOR_PROPERTY = "aws.cborEnabled"


def uses_emulator(config: JobConfig) -> bool:
    return bool(config.source.endpoint or config.sink.endpoint)


def prepare_process(config: JobConfig) -> None:
    """Settings for a JVM not started yet, so call before the first PyFlink object.

    With an endpoint override (an emulator) the AWS SDK must not speak CBOR to Kinesis, and an
    emulator takes any credentials: dummy ones when none are set. The Python workers run this
    interpreter and find this package.
    """
    if uses_emulator(config):
        os.environ["CBOR_ENABLED"] = "false"
        os.environ["AWS_CBOR_DISABLE"] = "true"
        flag = f"-D{JVM_CBOR_PROPERTY}=false"
        if flag not in os.environ.get("JVM_ARGS", ""):
            os.environ["JVM_ARGS"] = f"{os.environ.get('JVM_ARGS', '')} {flag}".strip()
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    if not on_managed_flink():
        paths = [str(APP_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


def align_local_jvm(config: JobConfig) -> None:
    """Give a local JVM this process's AWS settings now, however long it has been running.

    The local mini-cluster runs in the JVM that PyFlink started for the first job of this process,
    and a JVM keeps the environment it started with: a second job (tests, tools) would otherwise
    get the first one's credentials and CBOR setting, or none. System properties are read by the
    AWS SDK for Java when each client is built and take precedence over the environment, so the
    current values are set there. Not on Managed Flink, where the application's role applies.
    """
    if on_managed_flink():
        return
    from pyflink.java_gateway import get_gateway

    system = get_gateway().jvm.System
    for variable, prop in JVM_CREDENTIAL_PROPERTIES.items():
        value = os.environ.get(variable)
        if value:
            system.setProperty(prop, value)
        else:
            system.clearProperty(prop)
    if uses_emulator(config):
        system.setProperty(JVM_CBOR_PROPERTY, "false")
    else:
        system.clearProperty(JVM_CBOR_PROPERTY)


@dataclass
class Environment:
    env: StreamExecutionEnvironment
    t_env: StreamTableEnvironment


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
    align_local_jvm(config)
    if not on_managed_flink():
        # Every job needs it: the connectors, and the job's own functions (flink_app/jvm_functions.py),
        # one of which parses each record. On Managed Flink the `jarfile` run option already put it on the classpath.
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
    # A watermark with every event that moves it, instead of every 200 ms of wall time. What a run
    # computes is then a function of the records and their order alone, not of how fast they were
    # read: which events are late (dropped by the windows and counted) is the same in a replay, after
    # a restore from a checkpoint and in backtest; and at the end of a bounded input the last regular
    # watermark is exactly the newest event time less the delay, which decides what backtest judges
    # (flink_app/detection_operator.py).
    env.get_config().set_auto_watermark_interval(0)
    # Chained JVM operators hand each row on instead of copying it (with the raw record in it) at
    # every step; the SQL operators copy what they keep, and rows reach Python serialized. These
    # copies were the largest item of the SQL stages' JFR profile (about a sixth of their CPU).
    env.get_config().enable_object_reuse()
    if not bounded:
        env.enable_checkpointing(config.job.checkpoint_interval_s * 1000)
    t_env = StreamTableEnvironment.create(env, environment_settings=EnvironmentSettings.in_streaming_mode())
    # The job's own functions: the source's columns parse each record with one (event_columns.py).
    jvm_functions.register(t_env)
    table_config = t_env.get_config()
    table_config.set("table.local-time-zone", "UTC")
    table_config.set("table.exec.source.idle-timeout", f"{config.windows.idle_timeout_s} s")
    # Window aggregates in one phase: the default splits each into a local pre-aggregation and a global
    # one, and each phase keeps a 1 MB hash table that it clears whenever a window slice closes. On
    # sparse data (long backtests: nearly every event in a slice of its own) clearing those tables was
    # most of the SQL stages' CPU; on dense data the split saved nothing either (bench/flink_throughput.py).
    table_config.set("table.optimizer.agg-phase-strategy", "ONE_PHASE")
    # The deduplication's state (flink_app/stages.py) is the only SQL state with no timer to clear it.
    if config.job.dedup_ttl_s:
        table_config.set("table.exec.state.ttl", f"{config.job.dedup_ttl_s} s")
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
    anomalies: DataStream | None  # rows of ANOMALY_COLUMNS (none when built without detection)
    statements: StatementSet | None  # the SQL sinks (none in backtest, which collects)


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
    t_env.execute_sql(sources.source_ddl(config))
    staged = stages.register(t_env, config)

    if not detect:
        statements = t_env.create_statement_set()
        columns = ", ".join(f"`{name}` {sql_type}" for name, sql_type in stages.WINDOW_COLUMNS)
        t_env.execute_sql(f"CREATE TEMPORARY TABLE windows_discard ({columns}) WITH ('connector' = 'blackhole')")
        statements.add_insert("windows_discard", staged.detection_input)
        return Pipeline(environment, None, statements)

    anomalies = detection(environment, staged.detection_input, config, bounded)
    statements = None
    if not bounded:
        t_env.execute_sql(sinks.anomaly_sink_ddl(config))
        statements = t_env.create_statement_set()
        statements.add_insert(sinks.ANOMALY_SINK, t_env.from_data_stream(anomalies))
    return Pipeline(environment, anomalies, statements)


def detection(environment: Environment, windows: Table, config: JobConfig, bounded: bool) -> DataStream:
    """The aggregate stream into the Python operator, keyed by subject; anomaly rows out."""
    stall_ms = (config.windows.idle_timeout_s + config.windows.watermark_delay_s) * 1000
    function = DetectionFunction(
        config.detect,
        bounded=bounded,
        stall_ms=stall_ms,
        client_ttl_h=config.job.client_state_ttl_h,
        sample_size=config.job.rejected_sample_size,
    )
    return keyed_by_subject(environment.t_env, windows).process(function, output_type=ANOMALY_TYPE_INFO).name("detect")


def keyed_by_subject(t_env: StreamTableEnvironment, windows: Table) -> KeyedStream:
    """``windows`` as a stream keyed by subject (``subject_type#subject``), the key computed in SQL.

    PyFlink's ``key_by`` computes a key with a Python function: a Python operator of its own that every
    row crosses into and out of before the shuffle, which cost about as much as the detection
    operator itself on long backtests (half the Python CPU). Here the SQL stage emits the rows in the
    shape that operator would have produced, ``Row(key, row)``, and the JVM keys them with PyFlink's
    own key selector for that shape (``KeyByKeySelector``, the first field): the same keyed stream,
    without the detour. It relies on PyFlink internals of the pinned version (the keyed stream's
    constructor, the selector's name), which every Flink test exercises.
    """
    from pyflink.common.typeinfo import Types, _from_java_type
    from pyflink.datastream.data_stream import KeyedStream
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    names = windows.get_schema().get_field_names()
    row_type = _from_java_type(
        gateway.jvm.org.apache.flink.table.runtime.typeutils.ExternalTypeInfo.of(
            windows._j_table.getResolvedSchema().toPhysicalRowDataType()
        )
    )
    key = f"`subject_type` || '{SUBJECT_KEY_SEPARATOR}' || `subject`"  # pulse_contract.subject_key
    row = ", ".join(f"`{name}`" for name in names)
    stream = t_env.to_data_stream(t_env.sql_query(f"SELECT {key} AS `key`, ROW({row}) AS `row` FROM {windows}"))
    # The rows' type as key_by's Python operator declares its output (a key, then the row), so that the
    # Python keyed operator reads them as it reads that operator's; set before anything reads the type.
    stream._j_data_stream.getTransformation().setOutputType(Types.ROW([Types.STRING(), row_type]).get_java_type_info())
    j_keyed = stream._j_data_stream.keyBy(
        gateway.jvm.KeyByKeySelector(), Types.ROW([Types.STRING()]).get_java_type_info()
    )
    return KeyedStream(j_keyed, row_type, stream)


def _attach_sinks(pipeline: Pipeline) -> None:
    if pipeline.statements is not None:
        pipeline.statements.attach_as_datastream()


def execute(pipeline: Pipeline, name: str = JOB_NAME) -> None:
    """Run until cancelled (streaming) or until the input ends."""
    _attach_sinks(pipeline)
    pipeline.environment.env.execute(name)


def execute_async(pipeline: Pipeline, name: str = JOB_NAME) -> JobClient:
    """Submit and return Flink's ``JobClient`` (status, cancel): for tests and tools."""
    _attach_sinks(pipeline)
    return pipeline.environment.env.execute_async(name)


def collect_anomalies(pipeline: Pipeline) -> Iterator[Anomaly]:
    """Run a bounded pipeline and yield its anomalies as they are emitted."""
    _attach_sinks(pipeline)
    if pipeline.anomalies is None:
        raise ValueError("the pipeline was built without detection (detect=False): there are no anomalies to collect")
    names = [name for name, _ in ANOMALY_COLUMNS]
    with pipeline.anomalies.execute_and_collect(JOB_NAME) as results:
        for row in results:
            yield Anomaly.from_record(dict(zip(names, row, strict=True)))
