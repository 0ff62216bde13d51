"""The anomaly store: one item per anomaly record, with :mod:`pulse_contract.anomaly_table`'s keys and index."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from cdk.settings import DeploySettings
from pulse_contract import anomaly_table as keys


class AnomalyStore(Construct):
    """DynamoDB table: pk/sk strings, TTL, the ``by_day`` index; on-demand, PITR, KMS encryption."""

    def __init__(self, scope: Construct, construct_id: str, settings: DeploySettings) -> None:
        super().__init__(scope, construct_id)
        string = dynamodb.AttributeType.STRING
        self.index_name = keys.TIME_INDEX
        self.table = dynamodb.Table(
            self,
            "Table",
            table_name=f"{settings.prefix}-anomalies",
            partition_key=dynamodb.Attribute(name=keys.PARTITION_KEY, type=string),
            sort_key=dynamodb.Attribute(name=keys.SORT_KEY, type=string),
            time_to_live_attribute=keys.TTL_ATTRIBUTE,
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
            partition_key=dynamodb.Attribute(name=keys.TIME_INDEX_PARTITION_KEY, type=string),
            sort_key=dynamodb.Attribute(name=keys.TIME_INDEX_SORT_KEY, type=string),
            projection_type=dynamodb.ProjectionType.ALL,
        )

    @property
    def index_arn(self) -> str:
        return f"{self.table.table_arn}/index/{self.index_name}"
