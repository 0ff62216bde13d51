"""PULSE_TOP_COUNT (in the connector JAR): the busiest value's row count, in one aggregation, the
same whichever way rows and window slices are grouped and merged."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from flink_app import job
from flink_app.jvm_functions import TOP_COUNT

pytestmark = [pytest.mark.flink, pytest.mark.slow]


def test_top_count_is_the_busiest_values_count_per_group_and_sliding_window() -> None:
    from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment

    # given rows of groups with skewed values, some NULL, and a group of NULLs only
    rng = random.Random(7)
    rows = []
    for _ in range(3_000):
        group = f"g{rng.randrange(5)}"
        value = None if rng.random() < 0.1 else f"c{min(rng.randrange(40), rng.randrange(40))}"
        rows.append((group, value, 1_767_225_600_000 + rng.randrange(60_000)))
    rows += [("nulls", None, 1_767_225_600_000 + 5_000)] * 3
    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    t_env.get_config().set("pipeline.jars", job.connector_jar().as_uri())
    t_env.get_config().set("parallelism.default", "2")
    t_env.get_config().set("table.local-time-zone", "UTC")
    t_env.execute_sql(TOP_COUNT.ddl())
    schema = DataTypes.ROW(
        [
            DataTypes.FIELD("g", DataTypes.STRING()),
            DataTypes.FIELD("v", DataTypes.STRING()),
            DataTypes.FIELD("ms", DataTypes.BIGINT()),
        ]
    )
    t_env.create_temporary_view("input_rows", t_env.from_elements(rows, schema))
    t_env.create_temporary_view("events", t_env.sql_query("SELECT g, v, TO_TIMESTAMP_LTZ(ms, 3) AS t FROM input_rows"))

    def collected(sql: str) -> dict[tuple[object, ...], int]:
        with t_env.execute_sql(sql).collect() as results:
            return {tuple(r)[:-1]: tuple(r)[-1] for r in results}

    # when counted per group overall, and per group in 20 s windows sliding by 5 s (merged slices)
    overall = collected(f"SELECT g, {TOP_COUNT.name}(v) FROM events GROUP BY g")
    windowed = collected(
        f"SELECT g, UNIX_TIMESTAMP(DATE_FORMAT(window_start, 'yyyy-MM-dd HH:mm:ss')) * 1000, {TOP_COUNT.name}(v)"
        " FROM TABLE(HOP(TABLE events, DESCRIPTOR(t), INTERVAL '5' SECOND, INTERVAL '20' SECOND))"
        " GROUP BY g, window_start, window_end"
    )

    # then each is the largest count of one value, NULLs not counted (0 for a group of NULLs only)
    def top(selected: list[tuple[str, str | None, int]]) -> int:
        return max(Counter(v for _, v, _ in selected if v is not None).values(), default=0)

    assert overall == {(g,): top([r for r in rows if r[0] == g]) for g, _, _ in rows}
    assert overall[("nulls",)] == 0
    keys = {(g, start) for g, _, ms in rows for start in range(ms - ms % 5_000, ms - 20_000, -5_000)}
    assert windowed == {(g, t): top([r for r in rows if r[0] == g and t <= r[2] < t + 20_000]) for g, t in keys}
    assert len({n for n in windowed.values()}) > 5  # figures that differ, not one repeated value
