from pulse_local.emulator import Emulator, create_anomaly_table, create_stream


def test_embedded_emulator_serves_kinesis_and_dynamodb(emulator: Emulator) -> None:
    # given a fresh stream and table on the emulator
    arn = create_stream(emulator, "emulator-smoke", shards=2)
    create_anomaly_table(emulator, "emulator-smoke-table")
    # when a record is put
    kinesis = emulator.client("kinesis")
    kinesis.put_record(StreamARN=arn, Data=b"{}", PartitionKey="k")
    # then the stream and table describe themselves as created
    summary = kinesis.describe_stream_summary(StreamARN=arn)["StreamDescriptionSummary"]
    assert summary["OpenShardCount"] == 2
    table = emulator.client("dynamodb").describe_table(TableName="emulator-smoke-table")["Table"]
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["pk", "sk"]
    assert table["GlobalSecondaryIndexes"][0]["IndexName"] == "by_day"
