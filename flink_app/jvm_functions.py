"""The job's own SQL functions, compiled into the connector JAR by the same Maven build
(``jars/src/main/java/dev/pulse/flink``): the JAR must be on the job's class path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyflink.table import TableEnvironment


@dataclass(frozen=True)
class JvmFunction:
    name: str  # as SQL calls it
    java_class: str

    def ddl(self) -> str:
        return f"CREATE TEMPORARY SYSTEM FUNCTION IF NOT EXISTS {self.name} AS '{self.java_class}' LANGUAGE JAVA"


# One parse of a raw record: whether it is a JSON object and each field's text (flink_app/event_columns.py).
EVENT_FIELDS = JvmFunction("PULSE_EVENT_FIELDS", "dev.pulse.flink.EventFields")
# An aggregate: the number of rows of a group's most frequent value (the busiest client of a route window).
TOP_COUNT = JvmFunction("PULSE_TOP_COUNT", "dev.pulse.flink.TopCount")
FUNCTIONS = (EVENT_FIELDS, TOP_COUNT)


def register(t_env: TableEnvironment) -> None:
    for function in FUNCTIONS:
        t_env.execute_sql(function.ddl())
