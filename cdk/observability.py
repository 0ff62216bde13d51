"""Observability: the alarms an operator wants, one dashboard, and an optional alarm topic."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from cdk.anomaly_store import AnomalyStore
from cdk.api import MonitoredApi
from cdk.detector import Detector
from cdk.ingest import IngestStream
from cdk.settings import DeploySettings
from flink_app import metrics as job_metrics
from lambda_api.publishers.fallback import FALLBACK_VERSION, LOST_KEY

# The API's structured fallback line for an event it could not deliver to Kinesis
# (lambda_api.publishers.fallback): one JSON object with "pulse_fallback": <format version>, written
# as is to stdout (top level in CloudWatch Logs). The "message" alternative also counts it if it is
# ever logged as an object through `logging` under Lambda's JSON log format.
FALLBACK_FILTER_PATTERN = (
    f"{{ ($.pulse_fallback = {FALLBACK_VERSION}) || ($.message.pulse_fallback = {FALLBACK_VERSION}) }}"
)
UNDELIVERED_METRIC = "UndeliveredEvents"
# The API's line for events it could not even write to the fallback log (lambda_api.publishers.fallback):
# {"pulse_lost": <events>, ...}; the metric adds up the events.
LOST_FILTER_PATTERN = f"{{ ($.{LOST_KEY} > 0) || ($.message.{LOST_KEY} > 0) }}"
LOST_METRIC = "LostEvents"
FLINK_NAMESPACE = "AWS/KinesisAnalytics"

ITERATOR_AGE_MS = 60_000
RECORDS_LAG_MS = 60_000
API_5XX_PER_5_MIN = 5
DURATION_SHARE_OF_TIMEOUT = 0.8


@dataclass(frozen=True)
class AlarmSpec:
    name: str
    description: str
    metric: cloudwatch.IMetric
    threshold: float
    evaluation_periods: int = 1
    datapoints_to_alarm: int | None = None
    comparison: cloudwatch.ComparisonOperator = cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
    missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING


class Observability(Construct):
    """Alarms on every stage of the pipeline and a dashboard that shows them in data-flow order."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        settings: DeploySettings,
        api: MonitoredApi,
        ingest: IngestStream,
        store: AnomalyStore,
        detector: Detector,
    ) -> None:
        super().__init__(scope, construct_id)
        self.undelivered = logs.MetricFilter(
            self,
            "UndeliveredEventsFilter",
            log_group=api.log_group,
            filter_pattern=logs.FilterPattern.literal(FALLBACK_FILTER_PATTERN),
            metric_namespace=f"Pulse/{settings.stage}",
            metric_name=UNDELIVERED_METRIC,
            metric_value="1",
            default_value=0,
        ).metric(statistic="Sum", period=Duration.minutes(5))

        self.lost = logs.MetricFilter(
            self,
            "LostEventsFilter",
            log_group=api.log_group,
            filter_pattern=logs.FilterPattern.literal(LOST_FILTER_PATTERN),
            metric_namespace=f"Pulse/{settings.stage}",
            metric_name=LOST_METRIC,
            metric_value=f"$.{LOST_KEY}",
            default_value=0,
        ).metric(statistic="Sum", period=Duration.minutes(5))

        one_minute, five_minutes = Duration.minutes(1), Duration.minutes(5)
        stream, function, table = ingest.stream, api.function, store.table
        app = detector.application_name

        def flink_metric(name: str, statistic: str, period: Duration = one_minute) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=FLINK_NAMESPACE,
                metric_name=name,
                dimensions_map={"Application": app},
                statistic=statistic,
                period=period,
            )

        def job_metric(name: str, label: str, period: Duration) -> cloudwatch.MathExpression:
            # The job's own metrics (flink_app.metrics) carry the operator's dimensions besides the
            # application's; a Metrics Insights query takes the worst subtask, whatever they are.
            return cloudwatch.MathExpression(
                expression=f"SELECT MAX({name}) FROM \"{FLINK_NAMESPACE}\" WHERE Application = '{app}'",
                using_metrics={},
                label=label,
                period=period,
            )

        late_rate = job_metric(job_metrics.LATE_RATE, "Late records per second (dropped by the windows)", one_minute)
        rejected_rate = job_metric(job_metrics.REJECTED_RATE, "Rejected records per second", one_minute)
        self.records_lag = cloudwatch.MathExpression(
            # Metrics Insights: the source reports millisBehindLatest with per-stream/shard dimensions
            # that differ between connector versions; the query takes the worst one, whatever they are.
            expression=f"SELECT MAX(millisBehindLatest) FROM \"{FLINK_NAMESPACE}\" WHERE Application = '{app}'",
            using_metrics={},
            label="Flink records lag (max ms behind latest)",
            period=one_minute,
        )
        table_throttles = cloudwatch.MathExpression(
            expression="reads + writes",
            using_metrics={
                "reads": table.metric("ReadThrottleEvents", statistic="Sum", period=five_minutes),
                "writes": table.metric("WriteThrottleEvents", statistic="Sum", period=five_minutes),
            },
            label="DynamoDB throttle events",
            period=five_minutes,
        )
        specs = [
            AlarmSpec(
                "stream-iterator-age",
                "The detector reads the stream more than a minute behind: it is down, slow or under-scaled.",
                stream.metric_get_records_iterator_age_milliseconds(statistic="Maximum", period=one_minute),
                ITERATOR_AGE_MS,
                evaluation_periods=5,
            ),
            AlarmSpec(
                "stream-write-throttles",
                "Kinesis rejected writes from the API (throughput exceeded); events fall back to the log.",
                stream.metric_write_provisioned_throughput_exceeded(statistic="Sum", period=one_minute),
                0,
                evaluation_periods=5,
                datapoints_to_alarm=3,
            ),
            AlarmSpec(
                "api-lambda-errors",
                "The API function crashed or timed out (unhandled invocation errors).",
                function.metric_errors(statistic="Sum", period=five_minutes),
                0,
            ),
            AlarmSpec(
                "api-lambda-throttles",
                "The API function hit its concurrency limit; requests were refused.",
                function.metric_throttles(statistic="Sum", period=five_minutes),
                0,
            ),
            AlarmSpec(
                "api-lambda-duration",
                "p99 duration of the API function is above 80% of its timeout.",
                function.metric_duration(statistic="p99", period=five_minutes),
                settings.lambda_timeout_s * 1000 * DURATION_SHARE_OF_TIMEOUT,
                evaluation_periods=3,
            ),
            AlarmSpec(
                "api-5xx",
                f"The HTTP API answered 5xx more than {API_5XX_PER_5_MIN} times in 5 minutes.",
                api.http_api.metric_server_error(statistic="Sum", period=five_minutes),
                API_5XX_PER_5_MIN,
            ),
            AlarmSpec(
                "undelivered-events",
                "The API logged request events it could not deliver to Kinesis (structured fallback lines).",
                self.undelivered,
                0,
            ),
            AlarmSpec(
                "lost-events",
                "The API could not write undelivered events even to its fallback log: they are gone.",
                self.lost,
                0,
            ),
            AlarmSpec(
                "flink-late-records",
                "The detector dropped records that arrived after their windows closed (late beyond the "
                "watermark's tolerance: a delayed producer, a replay of old events, a clock skew).",
                late_rate,
                0,
            ),
            AlarmSpec(
                "flink-downtime",
                "The detector is not running (restarting, failed, or never started after a deploy).",
                flink_metric("downtime", "Maximum"),
                0,
                evaluation_periods=3,
                missing=cloudwatch.TreatMissingData.BREACHING,
            ),
            AlarmSpec(
                "flink-checkpoint-failures",
                "The detector failed a checkpoint since its last start; its state may not be recoverable.",
                flink_metric("numberOfFailedCheckpoints", "Maximum", five_minutes),
                0,
            ),
            AlarmSpec(
                "flink-records-lag",
                "The detector is more than a minute behind the head of the stream.",
                self.records_lag,
                RECORDS_LAG_MS,
                evaluation_periods=5,
            ),
            AlarmSpec(
                "table-throttles", "DynamoDB throttled reads or writes of the anomaly table.", table_throttles, 0
            ),
        ]
        self.alarms = {spec.name: self._alarm(settings, spec) for spec in specs}

        self.topic: sns.Topic | None = None
        if settings.alarm_email:
            self.topic = self._alarm_topic(settings)
            self.topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))
            for alarm in self.alarms.values():
                alarm.add_alarm_action(actions.SnsAction(self.topic))
                alarm.add_ok_action(actions.SnsAction(self.topic))

        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=f"{settings.prefix}-overview")
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms.values()), width=24, height=3)
        )
        self.dashboard.add_widgets(
            _graph(
                "API requests and errors",
                [
                    api.http_api.metric_count(statistic="Sum", period=one_minute),
                    api.http_api.metric_client_error(statistic="Sum", period=one_minute),
                    api.http_api.metric_server_error(statistic="Sum", period=one_minute),
                ],
            ),
            _graph(
                "API latency (ms)",
                [
                    api.http_api.metric_latency(statistic="p50", period=one_minute),
                    api.http_api.metric_latency(statistic="p99", period=one_minute),
                ],
            ),
            _graph(
                "Lambda",
                [
                    function.metric_invocations(statistic="Sum", period=one_minute),
                    function.metric_errors(statistic="Sum", period=one_minute),
                    function.metric_throttles(statistic="Sum", period=one_minute),
                ],
            ),
            _graph("Undelivered and lost events", [self.undelivered, self.lost]),
        )
        self.dashboard.add_widgets(
            _graph("Stream: records in", [stream.metric_incoming_records(statistic="Sum", period=one_minute)]),
            _graph(
                "Stream: iterator age (ms)",
                [stream.metric_get_records_iterator_age_milliseconds(statistic="Maximum", period=one_minute)],
            ),
            _graph(
                "Stream: write throttles",
                [stream.metric_write_provisioned_throughput_exceeded(statistic="Sum", period=one_minute)],
            ),
            _graph("Flink: records lag (ms)", [self.records_lag]),
        )
        self.dashboard.add_widgets(
            _graph(
                "Flink: downtime and restarts",
                [flink_metric("downtime", "Maximum"), flink_metric("numRestarts", "Maximum")],
            ),
            _graph(
                "Flink: checkpoints, late and rejected records",
                [
                    flink_metric("numberOfFailedCheckpoints", "Maximum"),
                    flink_metric("lastCheckpointDuration", "Maximum"),
                    late_rate,
                    rejected_rate,
                ],
            ),
            _graph(
                "Flink: KPUs and CPU",
                [flink_metric("KPUs", "Maximum"), flink_metric("containerCPUUtilization", "Maximum")],
            ),
            _graph(
                "Anomaly table",
                [table.metric_consumed_write_capacity_units(statistic="Sum", period=one_minute), table_throttles],
            ),
        )

    def _alarm_topic(self, settings: DeploySettings) -> sns.Topic:
        """An SNS topic for alarm actions, encrypted with its own key that CloudWatch may use.

        CloudWatch cannot publish to a topic under the AWS-managed ``aws/sns`` key (its policy is
        fixed), hence the customer-managed key.
        """
        key = kms.Key(
            self,
            "AlarmTopicKey",
            alias=f"alias/{settings.prefix}-alarms",
            description=f"Pulse {settings.stage}: alarm notifications",
            enable_key_rotation=True,
            pending_window=Duration.days(7),
            removal_policy=RemovalPolicy.DESTROY,
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublishToEncryptedTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy, "*" means this key
            )
        )
        return sns.Topic(
            self,
            "AlarmTopic",
            topic_name=f"{settings.prefix}-alarms",
            display_name=f"Pulse {settings.stage} alarms",
            master_key=key,
            enforce_ssl=True,
        )

    def _alarm(self, settings: DeploySettings, spec: AlarmSpec) -> cloudwatch.Alarm:
        return cloudwatch.Alarm(
            self,
            _construct_id(spec.name),
            alarm_name=f"{settings.prefix}-{spec.name}",
            alarm_description=spec.description,
            metric=spec.metric,
            threshold=spec.threshold,
            comparison_operator=spec.comparison,
            evaluation_periods=spec.evaluation_periods,
            datapoints_to_alarm=spec.datapoints_to_alarm,
            treat_missing_data=spec.missing,
        )


def _graph(title: str, metrics: list[cloudwatch.IMetric]) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(title=title, left=metrics, width=6, height=6)


def _construct_id(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("-")) + "Alarm"
