"""The Pulse stack: every concern's construct, wired together, and the outputs an operator needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from cdk.anomaly_store import AnomalyStore
from cdk.api import MonitoredApi
from cdk.detector import Detector
from cdk.ingest import IngestStream
from cdk.lambda_bundle import LambdaBundle
from cdk.observability import Observability
from cdk.settings import DeploySettings


class PulseStack(Stack):
    """API -> stream -> detector -> table, with its key, alarms and dashboard; named ``pulse-<stage>``."""

    def __init__(
        self,
        scope: Construct,
        settings: DeploySettings,
        lambda_bundle: LambdaBundle,
        flink_zip: Path,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope, settings.prefix, description=f"Pulse ({settings.stage}): real-time API monitoring", **kwargs
        )
        Tags.of(self).add("project", "pulse")
        Tags.of(self).add("stage", settings.stage)

        self.ingest = IngestStream(self, "Ingest", settings)
        self.store = AnomalyStore(self, "AnomalyStore", settings)
        self.api = MonitoredApi(self, "Api", settings, lambda_bundle, self.ingest, self.store)
        self.detector = Detector(self, "Detector", settings, flink_zip, self.ingest, self.store)
        self.observability = Observability(
            self, "Observability", settings, self.api, self.ingest, self.store, self.detector
        )

        outputs = {
            "ApiUrl": (self.api.url, "Base URL of the monitored API"),
            "StreamName": (self.ingest.stream.stream_name, "Kinesis stream of request events"),
            "StreamArn": (self.ingest.stream.stream_arn, "ARN of the request-event stream"),
            "AnomalyTableName": (self.store.table.table_name, "DynamoDB table of anomalies"),
            "FlinkApplicationName": (self.detector.application_name, "Managed Flink application (start it once)"),
            "DashboardName": (self.observability.dashboard.dashboard_name, "CloudWatch dashboard"),
        }
        for name, (value, description) in outputs.items():
            CfnOutput(self, name, value=value, description=description)
