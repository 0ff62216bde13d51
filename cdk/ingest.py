"""The ingest stream: every request the API serves becomes one record here."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_kinesis as kinesis
from constructs import Construct

from cdk.settings import DeploySettings


class IngestStream(Construct):
    """Kinesis Data Stream, on-demand by default, encrypted at rest with the AWS-managed key.

    The ``aws/kinesis`` key needs no grants for producers and consumers in the account and costs
    nothing per key; a customer-managed key would add KMS requests that scale with every producer.
    """

    def __init__(self, scope: Construct, construct_id: str, settings: DeploySettings) -> None:
        super().__init__(scope, construct_id)
        provisioned = settings.stream_shards is not None
        self.stream = kinesis.Stream(
            self,
            "Stream",
            stream_name=f"{settings.prefix}-events",
            stream_mode=kinesis.StreamMode.PROVISIONED if provisioned else kinesis.StreamMode.ON_DEMAND,
            shard_count=settings.stream_shards if provisioned else None,
            retention_period=Duration.hours(settings.stream_retention_hours),
            encryption=kinesis.StreamEncryption.MANAGED,
            removal_policy=RemovalPolicy.RETAIN if settings.retains_data else RemovalPolicy.DESTROY,
        )
