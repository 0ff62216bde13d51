"""The monitored API: the FastAPI app on Lambda (Mangum) behind an API Gateway HTTP API."""

from __future__ import annotations

import json

import jsii
from aws_cdk import Annotations, AssetHashType, Duration, RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as authorizers
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from cdk.anomaly_store import AnomalyStore
from cdk.ingest import IngestStream
from cdk.lambda_bundle import LambdaBundle
from cdk.nag import acknowledge
from cdk.policies import default_policy
from cdk.settings import DeploySettings
from pulse_build.runtimes import LAMBDA_PYTHON

HANDLER = "lambda_api.handler.handler"
RUNTIME = lambda_.Runtime(f"python{LAMBDA_PYTHON}", lambda_.RuntimeFamily.PYTHON)
MONITORING_PATHS = ("/monitoring", "/monitoring/{proxy+}")
# One JSON object per request in the access log (HTTP API $context variables).
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "ip": "$context.identity.sourceIp",
    "requestTime": "$context.requestTimeEpoch",
    "method": "$context.httpMethod",
    "routeKey": "$context.routeKey",
    "path": "$context.path",
    "status": "$context.status",
    "protocol": "$context.protocol",
    "responseLength": "$context.responseLength",
    "responseLatency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "integrationError": "$context.integrationErrorMessage",
    "userAgent": "$context.identity.userAgent",
}


class MonitoredApi(Construct):
    """Lambda running ``lambda_api.handler.handler`` and the HTTP API in front of it.

    The function may put records on the stream and read the anomaly table, nothing else; its
    logs go to a log group of its own (JSON format, so structured fallback lines stay parseable).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        settings: DeploySettings,
        bundle: LambdaBundle,
        ingest: IngestStream,
        store: AnomalyStore,
    ) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if settings.retains_data else RemovalPolicy.DESTROY
        retention = settings.log_retention
        self.log_group = logs.LogGroup(self, "FunctionLogs", retention=retention, removal_policy=removal)

        self.role = iam.Role(
            self,
            "FunctionRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Pulse {settings.stage} API: put request events, read anomalies, write its logs",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="PutRequestEvents",
                actions=["kinesis:PutRecord", "kinesis:PutRecords"],
                resources=[ingest.stream.stream_arn],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadAnomalies",
                actions=["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query"],
                resources=[store.table.table_arn, store.index_arn],
            )
        )
        self.log_group.grant_write(self.role)

        self.function = lambda_.Function(
            self,
            "Function",
            function_name=f"{settings.prefix}-api",
            description="Pulse monitored API (FastAPI on Mangum)",
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,  # the bundle holds manylinux2014_x86_64 wheels
            handler=HANDLER,
            code=lambda_.Code.from_asset(
                str(bundle.path), asset_hash=bundle.asset_hash, asset_hash_type=AssetHashType.CUSTOM
            ),
            memory_size=settings.lambda_memory_mb,
            timeout=Duration.seconds(settings.lambda_timeout_s),
            reserved_concurrent_executions=settings.lambda_reserved_concurrency,
            role=self.role,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            environment={
                "PULSE_STREAM_NAME": ingest.stream.stream_name,
                "PULSE_ANOMALY_TABLE": store.table.table_name,
                # The app checks API Gateway's authorizer context itself (paths the routes miss reach $default).
                "PULSE_MONITORING_AUTH": settings.monitoring_auth,
            },
        )
        # The function's first invocations need its permissions: create the policy before it.
        self.function.node.add_dependency(default_policy(self.role))
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Python 3.12 is the runtime the design fixes: the bundle carries cp312 wheels "
            "(pydantic-core), so a newer runtime needs a rebuilt bundle and its own tests",
        )

        target: lambda_.IFunction = self.function
        if settings.lambda_provisioned_concurrency:
            target = self.function.add_alias(
                "live", provisioned_concurrent_executions=settings.lambda_provisioned_concurrency
            )
        integration = integrations.HttpLambdaIntegration("App", target)

        self.access_logs = logs.LogGroup(self, "AccessLogs", retention=retention, removal_policy=removal)
        self.http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=f"{settings.prefix}-api",
            description="Pulse monitored API",
            create_default_stage=False,
            default_integration=integration,
        )
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=settings.api_rate_limit, burst_limit=settings.api_burst_limit),
            access_log_settings=_AccessLogSettings(
                apigwv2.LogGroupLogDestination(self.access_logs),
                apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS)),
            ),
        )
        # Only the catch-all route: any other route added without authorization is still reported.
        acknowledge(
            self.http_api.node.find_child("DefaultRoute"),
            "AwsSolutions-APIG4",
            "The catch-all route is the monitored service itself, public by design; access control "
            "for its own endpoints is the app's concern. /monitoring/* uses IAM unless monitoringAuth=none",
        )
        if settings.monitoring_auth == "iam":
            iam_authorizer = authorizers.HttpIamAuthorizer()
            for path in MONITORING_PATHS:
                self.http_api.add_routes(
                    path=path, methods=[apigwv2.HttpMethod.ANY], integration=integration, authorizer=iam_authorizer
                )
        else:
            Annotations.of(self).add_warning_v2(
                "pulse:monitoring-public",
                "monitoringAuth=none: /monitoring/anomalies (client IPs) is readable by anyone on the internet",
            )

    @property
    def url(self) -> str:
        return self.stage.url


@jsii.implements(apigwv2.IAccessLogSettings)
class _AccessLogSettings:
    """Access-log destination and format for an HTTP API stage (jsii needs a class for the interface)."""

    def __init__(self, destination: apigwv2.IAccessLogDestination, log_format: apigw.AccessLogFormat) -> None:
        self._destination = destination
        self._format = log_format

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return self._format
