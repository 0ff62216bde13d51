"""The one parse of a record (PULSE_EVENT_FIELDS, in the connector JAR) against what the job did
before: ``JSON_VALUE`` per field, ``TRY_CAST`` and ``IS JSON OBJECT``, on records of every kind; and
the plan: one parse, one watermark, one deduplication for every branch."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from flink_app import job
from flink_app.cli import backtest_config
from flink_app.config import JobConfig
from flink_app.event_columns import FIELDS_FUNCTION
from flink_app.jvm_functions import EVENT_FIELDS

pytestmark = [pytest.mark.flink, pytest.mark.slow]

FIELDS = ("id", "route", "status", "latency_ms", "client_ip", "ts")
TYPES = {"status": "INT", "latency_ms": "DOUBLE", "ts": "BIGINT"}
EVENT = {
    "v": 1,
    "id": "e1",
    "ts": 1_767_225_600_000,
    "route": "/a",
    "status": 200,
    "latency_ms": 12.5,
    "client_ip": "10.0.0.1",
}


def tricky_records() -> list[bytes]:
    """Records one per line (no newline inside): odd JSON, odd values, odd bytes, and random damage."""
    records = [
        b"not json",
        b'"a string"',
        b"",
        b"   ",
        b"null",
        b"[1,2]",
        b"{}",
        b'{"id":1} trailing',
        b'{"id":1}}',
        b'{"id":"x"',
        b'{"id": NaN}',
        b"{'id': 'x'}",
        b'{"id": "x" /* c */}',
        b'{"id": 1e999999999999}',
        b'{"x": 1e999999999999, "id":"a"}',
        b'{"x": [1,{"y":2.5e3}], "id":"a"}',
        b'{"id":"a","id":"b"}',
        b'{"id":"a","id":null}',
        b'{"id":{"a":1}}',
        b'{"id":[1]}',
        b'{"id":true,"route":false}',
        b'{"status": "200"}',
        b'{"status": 200.0}',
        b'{"status": 200.7}',
        b'{"status": -0}',
        b'{"status": 1e2}',
        b'{"status": " 200 "}',
        b'{"status": 3000000000}',
        b'{"latency_ms": 1.50}',
        b'{"latency_ms": -0.0}',
        b'{"latency_ms": 123456789012345678901234567890}',
        b'{"latency_ms": 0.1e-400}',
        b'{"ts": 1767225600000.0}',
        b'{"ts": 1.7672256E12}',
        b'{"ts": "1767225600000"}',
        b'{"ts": 99999999999999999999}',
        '{"route": "/caf\u00e9", "id": "\u00fc"}'.encode(),
        b'{"route": "/caf\xe9"}',  # not UTF-8
        b'{"route": "/a\xed\xa0\x80b"}',  # a UTF-16 surrogate encoded as UTF-8
        b'{"route": "\\u00e9\\ud800"}',
        b'{"route": "a\x01b"}',
        b'\xef\xbb\xbf{"id":"bom"}',
        b"[" * 1001 + b"]" * 1001,
        b'{"a":' * 1001 + b"1" + b"}" * 1001,
        b'{"n":' + b"9" * 1001 + b', "id":"a"}',
        b'{"id": "a\\"b"}',
        b'{"id": "a\\qb"}',
        b' \t{"id":"ws"} ',
        json.dumps(EVENT).encode(),
    ]
    rng = random.Random(7)
    odd_values: list[Any] = [None, "", "x", 0, -1, 1.5, 10**20, [1], {"a": 1}, True, "200", "1e3", 3.0e-5, " 7 "]
    for _ in range(400):
        record: dict[str, Any] = dict(EVENT)
        for key in list(record):
            draw = rng.random()
            if draw < 0.1:
                del record[key]
            elif draw < 0.25:
                record[key] = rng.choice(odd_values)
            elif draw < 0.3 and key in TYPES:
                record[key] = rng.uniform(-1e6, 1e13)
        text = json.dumps(record, ensure_ascii=rng.random() < 0.5)
        if rng.random() < 0.2:
            cut = rng.randrange(len(text))
            text = text[:cut] + text[cut + 1 :]
        records.append(text.encode())
    return [r for r in records if b"\n" not in r and b"\r" not in r]


def test_the_one_parse_gives_what_json_value_try_cast_and_is_json_object_gave(tmp_path: Path) -> None:
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import EnvironmentSettings, StreamTableEnvironment

    # given records of every kind in a file read raw, as the job reads its input
    records = tricky_records()
    (tmp_path / "records.jsonl").write_bytes(b"".join(r + b"\n" for r in records))
    env = StreamExecutionEnvironment.get_execution_environment()
    env.add_jars(job.connector_jar().as_uri())
    env.set_parallelism(1)
    t_env = StreamTableEnvironment.create(env, environment_settings=EnvironmentSettings.in_streaming_mode())
    t_env.execute_sql(EVENT_FIELDS.ddl())
    t_env.execute_sql(
        f"CREATE TEMPORARY TABLE records (line STRING) WITH "
        f"('connector' = 'filesystem', 'path' = '{tmp_path}', 'format' = 'raw')"
    )

    # when each is read the old way and the new way
    def typed(value: str, name: str) -> str:
        return f"TRY_CAST({value} AS {TYPES[name]})" if name in TYPES else value

    old = [f"JSON_VALUE(line, '$.{name}')" for name in FIELDS]
    new = [f"{FIELDS_FUNCTION}(line).`{name}`" for name in FIELDS]
    columns = [
        *old,
        *(typed(v, n) for v, n in zip(old, FIELDS, strict=True)),
        "line IS JSON OBJECT",
        "CHAR_LENGTH(line)",
        *new,
        *(typed(v, n) for v, n in zip(new, FIELDS, strict=True)),
        f"{FIELDS_FUNCTION}(line).is_object",
        f"{FIELDS_FUNCTION}(line).chars",
    ]
    half = len(columns) // 2
    rows = []
    with t_env.execute_sql(f"SELECT line, {', '.join(columns)} FROM records").collect() as results:
        for row in results:
            rows.append((row[0], list(row[1 : half + 1]), list(row[half + 1 :])))

    # then every field, text and typed, the object test and the record's length in characters agree
    assert len(rows) == len(records)
    differing = [(line[:80], before, after) for line, before, after in rows if before != after]
    assert differing == []


def test_every_branch_reads_one_parse_one_watermark_and_one_deduplication(tmp_path: Path) -> None:
    # given the backtest job over a file (the plan is the same for any source)
    source = tmp_path / "events.jsonl"
    source.write_text(json.dumps(EVENT) + "\n")
    config = backtest_config(JobConfig(), source, tmp_path / "out.jsonl")

    # when its SQL stages are planned
    plan = job.build(config, bounded=True, detect=False).statements.explain()  # type: ignore[union-attr]
    executed = plan.split("== Optimized Execution Plan ==")[1]

    # then the windows, the rejected and the late rows share one projection calling the parse
    # function, one watermark assigner and one deduplication
    assert executed.count(f"{FIELDS_FUNCTION}(line).id AS id") == 1
    assert "CHAR_LENGTH(line)" not in executed  # the record's length comes from the parse too
    assert executed.count("WatermarkAssigner(") == 1
    assert executed.count("Deduplicate(") == 1
    assert "JSON_VALUE" not in executed and "IS JSON OBJECT" not in executed
