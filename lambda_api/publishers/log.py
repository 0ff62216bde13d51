"""The log publisher: each event as one JSON line (stdout by default; a file makes an events JSONL)."""

from __future__ import annotations

from lambda_api.publishers.fallback import LineSink
from pulse_contract.request_event import RequestEvent


class LogPublisher:
    """Writes each event's v1 JSON as a line, e.g. for local runs or as input to ``flink_app backtest``."""

    def __init__(self, target: str = "stdout") -> None:
        self._sink = LineSink(target)

    def publish(self, event: RequestEvent) -> None:
        self._sink.write_lines([event.to_json().decode("ascii")])

    def flush(self) -> None:
        """Lines are written (and flushed) as they come."""

    def close(self) -> None:
        self._sink.close()
