"""The anomaly store: DESIGN.md's anomaly records, keyed as the local emulator creates them."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from cdk.settings import PulseSettings
from pulse_local.emulator import ANOMALY_TABLE_KEYS, ANOMALY_TIME_INDEX


class AnomalyStore(Construct):
    """DynamoDB table: pk/sk strings, TTL, the ``by_day`` index; on-demand, PITR, KMS encryption."""

    def __init__(self, scope: Construct, construct_id: str, settings: PulseSettings) -> None:
        super().__init__(scope, construct_id)
        string = dynamodb.AttributeType.STRING
        self.index_name = ANOMALY_TIME_INDEX["name"]
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=f"{settings.prefix}-anomalies",
            partition_key=dynamodb.Attribute(name=ANOMALY_TABLE_KEYS["partition"], type=string),
            sort_key=dynamodb.Attribute(name=ANOMALY_TABLE_KEYS["sort"], type=string),
            time_to_live_attribute=ANOMALY_TABLE_KEYS["ttl"],
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            deletion_protection=settings.retains_data,
            removal_policy=RemovalPolicy.RETAIN if settings.retains_data else RemovalPolicy.DESTROY,
        )
        # "Newest anomalies across subjects": one partition per UTC day, sorted by sk (window end first).
        self.table.add_global_secondary_index(
            index_name=self.index_name,
            partition_key=dynamodb.Attribute(name=ANOMALY_TIME_INDEX["partition"], type=string),
            sort_key=dynamodb.Attribute(name=ANOMALY_TIME_INDEX["sort"], type=string),
            projection_type=dynamodb.ProjectionType.ALL,
        )

    @property
    def index_arn(self) -> str:
        return f"{self.table.table_arn}/index/{self.index_name}"
