"""Pulse's detection job: Flink SQL stages in the JVM, plain-Python detectors on window aggregates.

Modules in the order data flows: :mod:`~flink_app.sources` (Kinesis or a JSON-lines file, read
raw, with :mod:`~flink_app.event_columns`' typed columns and event time), :mod:`~flink_app.stages` (SQL:
validation, windows per route and per client), :mod:`~flink_app.detection_operator` (the one Python keyed
operator that calls :mod:`~flink_app.detect`), :mod:`~flink_app.sinks` (DynamoDB or JSON lines);
:mod:`~flink_app.job` wires them, :mod:`~flink_app.cli` runs them.
"""
