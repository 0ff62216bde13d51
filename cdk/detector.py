"""The detector: the PyFlink job on Managed Service for Apache Flink (runtime FLINK-2_2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisanalyticsv2 as flink
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from cdk.anomaly_store import AnomalyStore
from cdk.flink_artifact import RUN_OPTIONS, RUN_OPTIONS_GROUP
from cdk.ingest import IngestStream
from cdk.nag import acknowledge
from cdk.policies import default_policy
from cdk.settings import DeploySettings
from flink_app.config import JobConfig, JobRuntimeConfig, SinkConfig, SinkKind, SourceConfig, SourceKind
from pulse_build.runtimes import MANAGED_FLINK_RUNTIME

RUNTIME = MANAGED_FLINK_RUNTIME
LOG_STREAM = "application"
MIN_PAUSE_BETWEEN_CHECKPOINTS_MS = 5_000


def job_property_groups(
    settings: DeploySettings, stream_arn: str, table_name: str, region: str
) -> list[dict[str, Any]]:
    """The job's own property groups, rendered by flink_app's JobConfig (the only place names live).

    ``settings.job_properties`` may tune any group; where the job reads and writes (kind, stream,
    table, region, no emulator endpoint) always comes from this stack. Values may be CloudFormation
    tokens: they are plain strings to pydantic.
    """
    tuned = JobConfig.from_property_groups(
        {"PropertyGroupId": group, "PropertyMap": keys} for group, keys in settings.job_properties.items()
    )
    source = SourceConfig.model_validate(
        {
            **tuned.source.model_dump(),
            "kind": SourceKind.KINESIS,
            "stream_arn": stream_arn,
            "region": region,
            "endpoint": None,
            "path": None,
            "monitor_interval_s": None,
        }
    )
    sink = SinkConfig.model_validate(
        {
            **tuned.sink.model_dump(),
            "kind": SinkKind.DYNAMODB,
            "table_name": table_name,
            "region": region,
            "endpoint": None,
            "path": None,
        }
    )
    # Managed Flink owns parallelism (autoscaling); the job must not pin its own.
    job = JobRuntimeConfig.model_validate(
        {
            **tuned.job.model_dump(),
            "checkpoint_interval_s": settings.flink_checkpoint_interval_s,
            "parallelism": None,
        }
    )
    config = JobConfig(source=source, sink=sink, windows=tuned.windows, job=job, detect=tuned.detect)
    return config.to_property_groups()


class Detector(Construct):
    """The Flink application, its code asset, log stream and least-privilege service role."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        settings: DeploySettings,
        flink_zip: Path,
        ingest: IngestStream,
        store: AnomalyStore,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.application_name = f"{settings.prefix}-detector"
        application_arn = stack.format_arn(
            service="kinesisanalytics", resource="application", resource_name=self.application_name
        )
        self.code = s3_assets.Asset(self, "Code", path=str(flink_zip))

        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=settings.log_retention,
            removal_policy=RemovalPolicy.RETAIN if settings.retains_data else RemovalPolicy.DESTROY,
        )
        log_stream = logs.LogStream(
            self,
            "LogStream",
            log_group=self.log_group,
            log_stream_name=LOG_STREAM,
            removal_policy=RemovalPolicy.DESTROY,
        )
        log_stream_arn = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=f"{self.log_group.log_group_name}:log-stream:{LOG_STREAM}",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

        self.role = iam.Role(
            self,
            "ServiceRole",
            description=f"Pulse {settings.stage} detector: read the stream and code, write anomalies and logs",
            assumed_by=iam.ServicePrincipal(
                "kinesisanalytics.amazonaws.com",
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnEquals": {"aws:SourceArn": application_arn},
                },
            ),
        )
        statements = [
            iam.PolicyStatement(
                sid="ReadApplicationCode",
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[self.code.bucket.arn_for_objects(self.code.s3_object_key)],
            ),
            iam.PolicyStatement(
                sid="ReadRequestEvents",
                actions=[
                    "kinesis:DescribeStreamSummary",
                    "kinesis:ListShards",
                    "kinesis:GetShardIterator",
                    "kinesis:GetRecords",
                ],
                resources=[ingest.stream.stream_arn],
            ),
            iam.PolicyStatement(
                sid="WriteAnomalies", actions=["dynamodb:BatchWriteItem"], resources=[store.table.table_arn]
            ),
            iam.PolicyStatement(
                sid="ListLogGroups",
                actions=["logs:DescribeLogGroups"],
                resources=[
                    stack.format_arn(
                        service="logs",
                        resource="log-group",
                        resource_name="*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            ),
            iam.PolicyStatement(
                sid="ListLogStreams", actions=["logs:DescribeLogStreams"], resources=[self.log_group.log_group_arn]
            ),
            iam.PolicyStatement(sid="WriteLogs", actions=["logs:PutLogEvents"], resources=[log_stream_arn]),
        ]
        for statement in statements:
            self.role.add_to_policy(statement)
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:*]",
            "Managed Flink lists log groups when it attaches CloudWatch logging; DescribeLogGroups "
            "has no resource-level scoping beyond the account's log-group:* ARN",
        )

        self.property_groups = [
            {"PropertyGroupId": RUN_OPTIONS_GROUP, "PropertyMap": dict(RUN_OPTIONS)},
            *job_property_groups(settings, ingest.stream.stream_arn, store.table.table_name, stack.region),
        ]
        self.application = flink.CfnApplication(
            self,
            "Application",
            application_name=self.application_name,
            application_description="Pulse anomaly detector (PyFlink)",
            runtime_environment=RUNTIME,
            application_mode="STREAMING",
            service_execution_role=self.role.role_arn,
            application_configuration=flink.CfnApplication.ApplicationConfigurationProperty(
                application_code_configuration=flink.CfnApplication.ApplicationCodeConfigurationProperty(
                    code_content_type="ZIPFILE",
                    code_content=flink.CfnApplication.CodeContentProperty(
                        s3_content_location=flink.CfnApplication.S3ContentLocationProperty(
                            bucket_arn=self.code.bucket.bucket_arn, file_key=self.code.s3_object_key
                        )
                    ),
                ),
                environment_properties=flink.CfnApplication.EnvironmentPropertiesProperty(
                    property_groups=[
                        flink.CfnApplication.PropertyGroupProperty(
                            property_group_id=group["PropertyGroupId"], property_map=group["PropertyMap"]
                        )
                        for group in self.property_groups
                    ]
                ),
                flink_application_configuration=flink.CfnApplication.FlinkApplicationConfigurationProperty(
                    checkpoint_configuration=flink.CfnApplication.CheckpointConfigurationProperty(
                        configuration_type="CUSTOM",
                        checkpointing_enabled=True,
                        checkpoint_interval=settings.flink_checkpoint_interval_s * 1000,
                        min_pause_between_checkpoints=MIN_PAUSE_BETWEEN_CHECKPOINTS_MS,
                    ),
                    monitoring_configuration=flink.CfnApplication.MonitoringConfigurationProperty(
                        configuration_type="CUSTOM",
                        log_level=settings.flink_log_level,
                        metrics_level="APPLICATION",
                    ),
                    parallelism_configuration=flink.CfnApplication.ParallelismConfigurationProperty(
                        configuration_type="CUSTOM",
                        parallelism=settings.flink_parallelism,
                        parallelism_per_kpu=settings.flink_parallelism_per_kpu,
                        auto_scaling_enabled=settings.flink_autoscaling,
                    ),
                ),
                application_snapshot_configuration=flink.CfnApplication.ApplicationSnapshotConfigurationProperty(
                    snapshots_enabled=True
                ),
                application_system_rollback_configuration=(
                    flink.CfnApplication.ApplicationSystemRollbackConfigurationProperty(rollback_enabled=True)
                ),
            ),
            # Used when CloudFormation updates a running application: keep the keyed state.
            run_configuration=flink.CfnApplication.RunConfigurationProperty(
                application_restore_configuration=flink.CfnApplication.ApplicationRestoreConfigurationProperty(
                    application_restore_type="RESTORE_FROM_LATEST_SNAPSHOT"
                ),
                flink_run_configuration=flink.CfnApplication.FlinkRunConfigurationProperty(
                    allow_non_restored_state=False
                ),
            ),
        )
        # The service checks its role when the application is created: the policy must exist first.
        self.application.node.add_dependency(default_policy(self.role))
        self.logging = flink.CfnApplicationCloudWatchLoggingOption(
            self,
            "Logging",
            application_name=self.application.ref,
            cloud_watch_logging_option=flink.CfnApplicationCloudWatchLoggingOption.CloudWatchLoggingOptionProperty(
                log_stream_arn=log_stream_arn
            ),
        )
        self.logging.node.add_dependency(log_stream)
