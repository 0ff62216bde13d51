"""What the synthesized stack declares: each concern's resources, their permissions and settings."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cdk.api import HANDLER
from cdk.detector import RUNTIME
from cdk.flink_artifact import RUN_OPTIONS, RUN_OPTIONS_GROUP
from cdk.observability import (
    FALLBACK_FILTER_PATTERN,
    LOST_FILTER_PATTERN,
    LOST_METRIC,
    UNDELIVERED_METRIC,
)
from flink_app.config import JobConfig
from flink_app.metrics import LATE_RATE
from lambda_api.publishers.delivery import KinesisRecord, Undelivered
from lambda_api.publishers.fallback import LOST_KEY, fallback_line, report_lost
from pulse_local import emulator as local_emulator
from tests.cdk.synthesis import ANNOTATIONS_PLUGIN, STAGE, Synthesis, validation_findings

pytestmark = pytest.mark.slow  # the session's synthesis takes ~15-20 s


def statements(synthesis: Synthesis, role_logical_id: str) -> list[dict[str, Any]]:
    """Every statement of the inline policies attached to one role."""
    found = []
    for policy in synthesis.resources("AWS::IAM::Policy").values():
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]:
            found.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return found


def role_of(synthesis: Synthesis, resource_type: str, role_property: str) -> str:
    return synthesis.only(resource_type)["Properties"][role_property]["Fn::GetAtt"][0]


def actions(statement: dict[str, Any]) -> set[str]:
    value = statement["Action"]
    return {value} if isinstance(value, str) else set(value)


def resources(statement: dict[str, Any]) -> list[Any]:
    value = statement["Resource"]
    return value if isinstance(value, list) else [value]


def by_sid(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {statement.get("Sid", ""): statement for statement in found}


def resolve(value: Any) -> str:
    """A CloudFormation value as a readable string (intrinsics become <Ref:X>, <GetAtt:X.Y>)."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return f"<Ref:{value['Ref']}>"
    if "Fn::GetAtt" in value:
        return f"<GetAtt:{'.'.join(value['Fn::GetAtt'])}>"
    if "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(resolve(part) for part in parts)
    if "Fn::Sub" in value:
        return value["Fn::Sub"]
    raise AssertionError(f"unexpected intrinsic {value}")


def alarm(synthesis: Synthesis, name: str) -> dict[str, Any]:
    for resource in synthesis.resources("AWS::CloudWatch::Alarm").values():
        if resource["Properties"]["AlarmName"] == name:
            return resource["Properties"]
    raise AssertionError(f"no alarm named {name}")


# --- ingest stream -------------------------------------------------------------------------------


def test_stream_is_on_demand_and_encrypted_by_default(default_synth: Synthesis) -> None:
    stream = default_synth.only("AWS::Kinesis::Stream")["Properties"]
    assert stream["Name"] == f"pulse-{STAGE}-events"
    assert stream["StreamModeDetails"] == {"StreamMode": "ON_DEMAND"}
    assert "ShardCount" not in stream
    assert stream["StreamEncryption"] == {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"}
    assert stream["RetentionPeriodHours"] == 24


def test_stream_shards_and_retention_follow_the_context(variant_synth: Synthesis) -> None:
    stream = variant_synth.only("AWS::Kinesis::Stream")["Properties"]
    assert stream["StreamModeDetails"] == {"StreamMode": "PROVISIONED"}
    assert stream["ShardCount"] == 2
    assert stream["RetentionPeriodHours"] == 48


# --- anomaly store -------------------------------------------------------------------------------


def test_table_has_the_emulator_s_key_schema_index_and_ttl(default_synth: Synthesis) -> None:
    # Given the arguments the local emulator creates its anomaly table with
    captured: dict[str, Any] = {}

    class RecordingDynamoDB:
        def create_table(self, **kwargs: Any) -> None:
            captured.update(kwargs)

        def update_time_to_live(self, TableName: str, TimeToLiveSpecification: dict[str, Any]) -> None:
            captured["TimeToLiveSpecification"] = TimeToLiveSpecification

        def describe_table(self, TableName: str) -> dict[str, Any]:
            return {"Table": {"TableStatus": "ACTIVE"}}

    class RecordingEmulator:
        def client(self, service: str) -> RecordingDynamoDB:
            assert service == "dynamodb"
            return RecordingDynamoDB()

    local_emulator.create_anomaly_table(RecordingEmulator(), "any")  # type: ignore[arg-type]
    # When the template's table is compared with them
    table = default_synth.only("AWS::DynamoDB::Table")["Properties"]
    # Then keys, attribute types and the by_day index are the same
    assert sorted(table["AttributeDefinitions"], key=str) == sorted(captured["AttributeDefinitions"], key=str)
    assert table["KeySchema"] == captured["KeySchema"]
    assert table["GlobalSecondaryIndexes"] == captured["GlobalSecondaryIndexes"]
    assert table["BillingMode"] == captured["BillingMode"] == "PAY_PER_REQUEST"
    assert table["TimeToLiveSpecification"] == captured["TimeToLiveSpecification"]


def test_table_has_ttl_pitr_and_encryption(default_synth: Synthesis) -> None:
    table = default_synth.only("AWS::DynamoDB::Table")["Properties"]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert table["SSESpecification"] == {"SSEEnabled": True}
    assert table["TableName"] == f"pulse-{STAGE}-anomalies"


def test_data_is_retained_by_default_and_deleted_only_when_told(
    default_synth: Synthesis, variant_synth: Synthesis
) -> None:
    # the default (a non-prod stage) retains; the variant (stage prod) says retainData=false and deletes:
    # the stage name decides nothing
    for resource_type in ("AWS::DynamoDB::Table", "AWS::Kinesis::Stream"):
        assert default_synth.only(resource_type)["DeletionPolicy"] == "Retain"
        assert variant_synth.only(resource_type).get("DeletionPolicy", "Delete") == "Delete"
    assert default_synth.only("AWS::DynamoDB::Table")["Properties"]["DeletionProtectionEnabled"] is True
    assert variant_synth.only("AWS::DynamoDB::Table")["Properties"]["DeletionProtectionEnabled"] is False


# --- monitored API -------------------------------------------------------------------------------


def test_lambda_runs_the_handler_on_python_3_12_with_pulse_environment(default_synth: Synthesis) -> None:
    function = default_synth.only("AWS::Lambda::Function")["Properties"]
    assert function["Handler"] == HANDLER == "lambda_api.handler.handler"
    assert function["Runtime"] == "python3.12"
    assert function["Architectures"] == ["x86_64"]
    assert function["MemorySize"] == 512
    variables = function["Environment"]["Variables"]
    assert variables["PULSE_STREAM_NAME"] == {"Ref": default_synth.logical_id("AWS::Kinesis::Stream")}
    assert variables["PULSE_ANOMALY_TABLE"] == {"Ref": default_synth.logical_id("AWS::DynamoDB::Table")}
    assert "AWS_ENDPOINT_URL" not in variables
    assert function["LoggingConfig"]["LogFormat"] == "JSON"
    assert "ReservedConcurrentExecutions" not in function


def test_lambda_may_only_put_events_read_anomalies_and_write_its_logs(default_synth: Synthesis) -> None:
    role = role_of(default_synth, "AWS::Lambda::Function", "Role")
    found = statements(default_synth, role)
    stream = {"Fn::GetAtt": [default_synth.logical_id("AWS::Kinesis::Stream"), "Arn"]}
    table_id = default_synth.logical_id("AWS::DynamoDB::Table")
    function_logs = default_synth.only("AWS::Lambda::Function")["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]

    granted = {action for statement in found for action in actions(statement)}
    assert granted == {
        "kinesis:PutRecord",
        "kinesis:PutRecords",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:Query",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }
    sids = by_sid(found)
    assert resources(sids["PutRequestEvents"]) == [stream]
    assert [resolve(item) for item in resources(sids["ReadAnomalies"])] == [
        f"<GetAtt:{table_id}.Arn>",
        f"<GetAtt:{table_id}.Arn>/index/by_day",
    ]
    log_statement = next(statement for statement in found if "logs:PutLogEvents" in actions(statement))
    assert resources(log_statement) == [{"Fn::GetAtt": [function_logs, "Arn"]}]
    assert all(statement["Effect"] == "Allow" for statement in found)
    # and no managed policy (AWSLambdaBasicExecutionRole would allow every log group)
    assert "ManagedPolicyArns" not in default_synth.template["Resources"][role]["Properties"]


def test_http_api_throttles_the_default_route_and_logs_access(default_synth: Synthesis) -> None:
    stage = default_synth.only("AWS::ApiGatewayV2::Stage")["Properties"]
    assert stage["StageName"] == "$default"
    assert stage["AutoDeploy"] is True
    assert stage["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 200, "ThrottlingRateLimit": 100}
    destination = stage["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    assert default_synth.template["Resources"][destination]["Type"] == "AWS::Logs::LogGroup"
    assert "$context.status" in stage["AccessLogSettings"]["Format"]


def test_monitoring_routes_need_iam_by_default(default_synth: Synthesis) -> None:
    routes = {
        route["Properties"]["RouteKey"]: route["Properties"]["AuthorizationType"]
        for route in default_synth.resources("AWS::ApiGatewayV2::Route").values()
    }
    assert routes == {"$default": "NONE", "ANY /monitoring": "AWS_IAM", "ANY /monitoring/{proxy+}": "AWS_IAM"}


def test_variant_concurrency_alias_and_public_monitoring(variant_synth: Synthesis) -> None:
    function = variant_synth.only("AWS::Lambda::Function")["Properties"]
    assert function["ReservedConcurrentExecutions"] == 5
    alias_id = variant_synth.logical_id("AWS::Lambda::Alias")
    alias = variant_synth.template["Resources"][alias_id]["Properties"]
    assert alias["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": 2}
    # The API invokes the alias (warm instances), not the unqualified function
    integration = variant_synth.only("AWS::ApiGatewayV2::Integration")["Properties"]
    assert integration["IntegrationUri"] == {"Ref": alias_id}
    routes = [route["Properties"]["RouteKey"] for route in variant_synth.resources("AWS::ApiGatewayV2::Route").values()]
    assert routes == ["$default"]
    # and synthesis says so
    assert validation_findings(variant_synth.outdir, ANNOTATIONS_PLUGIN) == [
        "Annotation::pulse:monitoring-public at pulse-prod/Api"
    ]


# --- detector ------------------------------------------------------------------------------------


def test_flink_application_runs_the_zip_on_flink_2_2(default_synth: Synthesis) -> None:
    application = default_synth.only("AWS::KinesisAnalyticsV2::Application")["Properties"]
    assert application["RuntimeEnvironment"] == RUNTIME == "FLINK-2_2"
    assert application["ApplicationName"] == f"pulse-{STAGE}-detector"
    code = application["ApplicationConfiguration"]["ApplicationCodeConfiguration"]
    assert code["CodeContentType"] == "ZIPFILE"
    assert code["CodeContent"]["S3ContentLocation"]["FileKey"].endswith(".zip")
    flink = application["ApplicationConfiguration"]["FlinkApplicationConfiguration"]
    assert flink["CheckpointConfiguration"] == {
        "ConfigurationType": "CUSTOM",
        "CheckpointingEnabled": True,
        "CheckpointInterval": 60000,
        "MinPauseBetweenCheckpoints": 5000,
    }
    assert flink["ParallelismConfiguration"] == {
        "ConfigurationType": "CUSTOM",
        "Parallelism": 1,
        "ParallelismPerKPU": 1,
        "AutoScalingEnabled": True,
    }
    assert application["ApplicationConfiguration"]["ApplicationSnapshotConfiguration"] == {"SnapshotsEnabled": True}


def test_flink_property_groups_are_what_the_job_reads(default_synth: Synthesis) -> None:
    application = default_synth.only("AWS::KinesisAnalyticsV2::Application")["Properties"]
    groups = application["ApplicationConfiguration"]["EnvironmentProperties"]["PropertyGroups"]
    by_id = {group["PropertyGroupId"]: group["PropertyMap"] for group in groups}
    assert by_id[RUN_OPTIONS_GROUP] == RUN_OPTIONS == {"python": "main.py", "jarfile": "lib/pulse-connectors.jar"}
    stream_id = default_synth.logical_id("AWS::Kinesis::Stream")
    table_id = default_synth.logical_id("AWS::DynamoDB::Table")
    assert by_id["pulse.source"]["stream.arn"] == {"Fn::GetAtt": [stream_id, "Arn"]}
    assert by_id["pulse.source"]["aws.region"] == {"Ref": "AWS::Region"}
    assert by_id["pulse.sink"]["table.name"] == {"Ref": table_id}
    # The job's own parser accepts every group and key once the tokens have values
    resolved = [
        {
            "PropertyGroupId": group["PropertyGroupId"],
            "PropertyMap": {key: resolve(value) for key, value in group["PropertyMap"].items()},
        }
        for group in groups
    ]
    config = JobConfig.from_property_groups(resolved)
    config.check_runnable()
    assert config.source.stream_arn == f"<GetAtt:{stream_id}.Arn>"
    assert config.sink.table_name == f"<Ref:{table_id}>"
    assert config.source.endpoint is None and config.sink.endpoint is None


def test_variant_job_properties_and_parallelism_reach_the_application(variant_synth: Synthesis) -> None:
    application = variant_synth.only("AWS::KinesisAnalyticsV2::Application")["Properties"]
    by_id = {
        group["PropertyGroupId"]: group["PropertyMap"]
        for group in application["ApplicationConfiguration"]["EnvironmentProperties"]["PropertyGroups"]
    }
    assert by_id["pulse.detect"] == {"spike.ratio": "5.0"}
    parallelism = application["ApplicationConfiguration"]["FlinkApplicationConfiguration"]["ParallelismConfiguration"]
    assert parallelism["Parallelism"] == 2
    assert parallelism["AutoScalingEnabled"] is False


def test_flink_role_reads_stream_and_code_writes_table_and_its_logs_only(default_synth: Synthesis) -> None:
    role = role_of(default_synth, "AWS::KinesisAnalyticsV2::Application", "ServiceExecutionRole")
    sids = by_sid(statements(default_synth, role))
    stream_id = default_synth.logical_id("AWS::Kinesis::Stream")
    table_id = default_synth.logical_id("AWS::DynamoDB::Table")
    code_key = default_synth.only("AWS::KinesisAnalyticsV2::Application")["Properties"]["ApplicationConfiguration"][
        "ApplicationCodeConfiguration"
    ]["CodeContent"]["S3ContentLocation"]["FileKey"]
    expected = {
        "ReadApplicationCode": {"s3:GetObject", "s3:GetObjectVersion"},
        "ReadRequestEvents": {
            "kinesis:DescribeStreamSummary",
            "kinesis:ListShards",
            "kinesis:GetShardIterator",
            "kinesis:GetRecords",
        },
        "WriteAnomalies": {"dynamodb:BatchWriteItem"},
        "ListLogGroups": {"logs:DescribeLogGroups"},
        "ListLogStreams": {"logs:DescribeLogStreams"},
        "WriteLogs": {"logs:PutLogEvents"},
    }
    assert {sid: actions(statement) for sid, statement in sids.items()} == expected
    assert resolve(resources(sids["ReadApplicationCode"])[0]).endswith("/" + code_key)
    assert resources(sids["ReadRequestEvents"]) == [{"Fn::GetAtt": [stream_id, "Arn"]}]
    assert resources(sids["WriteAnomalies"]) == [{"Fn::GetAtt": [table_id, "Arn"]}]
    assert resolve(resources(sids["WriteLogs"])[0]).endswith(":log-stream:application")


def test_flink_role_trusts_only_this_application(default_synth: Synthesis) -> None:
    role = role_of(default_synth, "AWS::KinesisAnalyticsV2::Application", "ServiceExecutionRole")
    (trust,) = default_synth.template["Resources"][role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "kinesisanalytics.amazonaws.com"}
    assert resolve(trust["Condition"]["ArnEquals"]["aws:SourceArn"]).endswith(f":application/pulse-{STAGE}-detector")
    assert trust["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}


def test_flink_logs_to_its_own_log_stream(default_synth: Synthesis) -> None:
    option = default_synth.only("AWS::KinesisAnalyticsV2::ApplicationCloudWatchLoggingOption")["Properties"]
    assert option["ApplicationName"] == {"Ref": default_synth.logical_id("AWS::KinesisAnalyticsV2::Application")}
    log_stream = default_synth.only("AWS::Logs::LogStream")["Properties"]
    assert resolve(option["CloudWatchLoggingOption"]["LogStreamARN"]).endswith(
        f":log-group:<Ref:{log_stream['LogGroupName']['Ref']}>:log-stream:{log_stream['LogStreamName']}"
    )


# --- observability -------------------------------------------------------------------------------

EXPECTED_ALARM_METRICS = {
    "stream-iterator-age": ("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", "StreamName"),
    "stream-write-throttles": ("AWS/Kinesis", "WriteProvisionedThroughputExceeded", "StreamName"),
    "api-lambda-errors": ("AWS/Lambda", "Errors", "FunctionName"),
    "api-lambda-throttles": ("AWS/Lambda", "Throttles", "FunctionName"),
    "api-lambda-duration": ("AWS/Lambda", "Duration", "FunctionName"),
    "api-5xx": ("AWS/ApiGateway", "5xx", "ApiId"),
    "flink-downtime": ("AWS/KinesisAnalytics", "downtime", "Application"),
    "flink-checkpoint-failures": ("AWS/KinesisAnalytics", "numberOfFailedCheckpoints", "Application"),
    "undelivered-events": (f"Pulse/{STAGE}", UNDELIVERED_METRIC, None),
    "lost-events": (f"Pulse/{STAGE}", LOST_METRIC, None),
}


@pytest.mark.parametrize("name", sorted(EXPECTED_ALARM_METRICS))
def test_alarm_watches_its_metric(default_synth: Synthesis, name: str) -> None:
    namespace, metric_name, dimension = EXPECTED_ALARM_METRICS[name]
    properties = alarm(default_synth, f"pulse-{STAGE}-{name}")
    assert (properties["Namespace"], properties["MetricName"]) == (namespace, metric_name)
    dimensions = {item["Name"]: item["Value"] for item in properties.get("Dimensions", [])}
    assert list(dimensions) == ([dimension] if dimension else [])
    if dimension == "Application":
        assert dimensions["Application"] == f"pulse-{STAGE}-detector"


def test_late_records_alarm_watches_the_jobs_rate_not_its_total(default_synth: Synthesis) -> None:
    # a total since the job started stays above zero after one late record; the rate falls back to zero
    (query,) = alarm(default_synth, f"pulse-{STAGE}-flink-late-records")["Metrics"]
    assert f"MAX({LATE_RATE})" in query["Expression"]
    assert f"Application = 'pulse-{STAGE}-detector'" in query["Expression"]


def test_records_lag_alarm_queries_millis_behind_latest_of_this_application(default_synth: Synthesis) -> None:
    (query,) = alarm(default_synth, f"pulse-{STAGE}-flink-records-lag")["Metrics"]
    assert "MAX(millisBehindLatest)" in query["Expression"]
    assert f"Application = 'pulse-{STAGE}-detector'" in query["Expression"]


def test_table_throttle_alarm_adds_read_and_write_throttles(default_synth: Synthesis) -> None:
    queries = alarm(default_synth, f"pulse-{STAGE}-table-throttles")["Metrics"]
    watched = {query["MetricStat"]["Metric"]["MetricName"] for query in queries if "MetricStat" in query}
    assert watched == {"ReadThrottleEvents", "WriteThrottleEvents"}
    assert any(query.get("Expression") == "reads + writes" and query["ReturnData"] for query in queries)


def test_downtime_alarm_fires_when_the_detector_reports_nothing(default_synth: Synthesis) -> None:
    assert alarm(default_synth, f"pulse-{STAGE}-flink-downtime")["TreatMissingData"] == "breaching"


def metric_filter_of(synthesis: Synthesis, metric: str) -> dict[str, Any]:
    (found,) = [
        resource["Properties"]
        for resource in synthesis.resources("AWS::Logs::MetricFilter").values()
        if resource["Properties"]["MetricTransformations"][0]["MetricName"] == metric
    ]
    return found


def test_lost_events_metric_filter_adds_up_the_line_the_api_writes(
    default_synth: Synthesis, capfd: pytest.CaptureFixture[str]
) -> None:
    metric_filter = metric_filter_of(default_synth, LOST_METRIC)
    assert metric_filter["FilterPattern"] == LOST_FILTER_PATTERN
    (transformation,) = metric_filter["MetricTransformations"]
    assert transformation["MetricValue"] == f"$.{LOST_KEY}"
    # the API's line when even the fallback log fails carries that key with the number of events
    report_lost("pulse-events", 3, "fallback log unwritable")
    line = json.loads(capfd.readouterr().err.strip().splitlines()[-1])
    assert line[LOST_KEY] == 3 and f"($.{LOST_KEY} > 0)" in LOST_FILTER_PATTERN
    assert metric_filter["LogGroupName"] == metric_filter_of(default_synth, UNDELIVERED_METRIC)["LogGroupName"]


def test_the_function_checks_monitoring_authorization_as_the_routes_do(
    default_synth: Synthesis, variant_synth: Synthesis
) -> None:
    for synthesis, expected in ((default_synth, "iam"), (variant_synth, "none")):
        environment = synthesis.only("AWS::Lambda::Function")["Properties"]["Environment"]["Variables"]
        assert environment["PULSE_MONITORING_AUTH"] == expected


def test_fallback_metric_filter_reads_the_api_log_group(default_synth: Synthesis) -> None:
    metric_filter = metric_filter_of(default_synth, UNDELIVERED_METRIC)
    assert metric_filter["FilterPattern"] == FALLBACK_FILTER_PATTERN
    # the pattern matches the field and value of the line the API actually writes
    line = json.loads(fallback_line("pulse-events", Undelivered(KinesisRecord(b'{"v":1}', "k"), "Timeout", 3)))
    assert f"($.pulse_fallback = {line['pulse_fallback']})" in FALLBACK_FILTER_PATTERN
    function_logs = default_synth.only("AWS::Lambda::Function")["Properties"]["LoggingConfig"]["LogGroup"]
    assert metric_filter["LogGroupName"] == function_logs
    (transformation,) = metric_filter["MetricTransformations"]
    assert (transformation["MetricNamespace"], transformation["MetricName"]) == (f"Pulse/{STAGE}", UNDELIVERED_METRIC)


def test_no_alarm_topic_without_an_email(default_synth: Synthesis) -> None:
    assert default_synth.resources("AWS::SNS::Topic") == {}
    assert all(
        "AlarmActions" not in resource["Properties"]
        for resource in default_synth.resources("AWS::CloudWatch::Alarm").values()
    )


def test_alarm_email_gets_an_encrypted_topic_on_every_alarm(variant_synth: Synthesis) -> None:
    topic_id = variant_synth.logical_id("AWS::SNS::Topic")
    topic = variant_synth.template["Resources"][topic_id]["Properties"]
    key_id = variant_synth.logical_id("AWS::KMS::Key")
    assert topic["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert variant_synth.template["Resources"][key_id]["Properties"]["EnableKeyRotation"] is True
    subscription = variant_synth.only("AWS::SNS::Subscription")["Properties"]
    assert (subscription["Protocol"], subscription["Endpoint"]) == ("email", "ops@example.com")
    alarms = variant_synth.resources("AWS::CloudWatch::Alarm").values()
    assert len(alarms) == 13
    assert all(resource["Properties"]["AlarmActions"] == [{"Ref": topic_id}] for resource in alarms)


def test_dashboard_exists(default_synth: Synthesis) -> None:
    dashboard = default_synth.only("AWS::CloudWatch::Dashboard")["Properties"]
    assert dashboard["DashboardName"] == f"pulse-{STAGE}-overview"
    body = resolve(dashboard["DashboardBody"])
    for metric_name in (
        "GetRecords.IteratorAgeMilliseconds",
        "downtime",
        "numberOfFailedCheckpoints",
        "5xx",
        UNDELIVERED_METRIC,
    ):
        assert metric_name in body


# --- outputs -------------------------------------------------------------------------------------


def test_outputs_name_what_an_operator_needs(default_synth: Synthesis) -> None:
    outputs = {name: output["Value"] for name, output in default_synth.template["Outputs"].items()}
    assert outputs["StreamName"] == {"Ref": default_synth.logical_id("AWS::Kinesis::Stream")}
    assert outputs["StreamArn"] == {"Fn::GetAtt": [default_synth.logical_id("AWS::Kinesis::Stream"), "Arn"]}
    assert outputs["AnomalyTableName"] == {"Ref": default_synth.logical_id("AWS::DynamoDB::Table")}
    assert outputs["FlinkApplicationName"] == f"pulse-{STAGE}-detector"
    assert resolve(outputs["ApiUrl"]).startswith("https://<Ref:")
