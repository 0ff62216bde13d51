"""A running Flink job's REST API, read the one way every tool here reads it.

Flink names an operator metric ``<subtask>.<operator>.<group>.<name>``; the job's own metrics are
in the ``kinesisanalytics`` group (:mod:`flink_app.metrics`), as Managed Flink publishes them.
:meth:`FlinkRest.sum_metric` adds one metric up over every vertex and subtask.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from typing import Any

from flink_app.metrics import METRIC_GROUP


class FlinkRest:
    """``http://127.0.0.1:<rest.port>`` of a local cluster (or any Flink REST endpoint)."""

    def __init__(self, base_url: str, timeout_s: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    @classmethod
    def on_port(cls, port: int, timeout_s: float = 5.0) -> FlinkRest:
        return cls(f"http://127.0.0.1:{port}", timeout_s)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base_url + path, timeout=self.timeout_s) as response:
            return json.load(response)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            self.base_url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            return json.load(response)

    def vertices(self, job_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/jobs/{job_id}")["vertices"])

    def metric_ids(self, job_id: str, vertex_id: str) -> list[str]:
        return [m["id"] for m in self.get(f"/jobs/{job_id}/vertices/{vertex_id}/metrics")]

    def metric_values(self, job_id: str, vertex_id: str, ids: list[str]) -> list[float]:
        if not ids:
            return []
        answer = self.get(f"/jobs/{job_id}/vertices/{vertex_id}/metrics?get={','.join(ids)}")
        return [float(m["value"]) for m in answer]

    def sum_metric(
        self, job_id: str, wanted: Callable[[str], bool], vertex: Callable[[dict[str, Any]], bool] | None = None
    ) -> int:
        """The sum of every metric whose id is ``wanted``, over the vertices ``vertex`` accepts (all by default)."""
        total = 0
        for found in self.vertices(job_id):
            if vertex is None or vertex(found):
                ids = [i for i in self.metric_ids(job_id, found["id"]) if wanted(i)]
                total += sum(int(value) for value in self.metric_values(job_id, found["id"], ids))
        return total

    def job_metric(self, job_id: str, name: str) -> int:
        """The job's ``kinesisanalytics.<name>`` summed over vertices and subtasks (0 until reported)."""
        suffix = f"{METRIC_GROUP}.{name}"
        return self.sum_metric(job_id, lambda metric_id: metric_id.split(".", 2)[-1] == suffix)
