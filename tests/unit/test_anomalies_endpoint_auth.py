"""/monitoring/* checks on Lambda itself that API Gateway authorized the request (issue: path confusion).

API Gateway's IAM authorizer guards only the routes ``ANY /monitoring`` and ``ANY /monitoring/{proxy+}``;
a path it does not match as such (percent-encoding, double slashes, case, trailing dots) reaches the
function through ``$default`` without authorization, and may still be served as /monitoring/anomalies.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from lambda_api.adapter import build_handler
from lambda_api.anomaly_reader import AnomalyPage, AnomalyQuery
from lambda_api.app import create_app
from lambda_api.settings import load_settings
from pulse_local.apigw import http_api_event, iam_authorizer, lambda_context

SECRET = {
    "pk": "client#198.51.100.7", "sk": "2025-03-10T10:00:00.000Z#ip_burst", "kind": "ip_burst",
    "subject_type": "client", "subject": "198.51.100.7", "window_start": 1, "window_end": 2, "observed": 1.0,
    "expected": 1.0, "score": 1.0, "severity": "high", "detected_at": 3, "ttl": 4,
}  # fmt: skip


class OneAnomaly:
    def page(self, query: AnomalyQuery, cursor: str | None = None) -> AnomalyPage:
        return AnomalyPage([SECRET], None)


def handler(**settings: Any) -> Any:
    return build_handler(create_app(load_settings(publisher="off", **settings), anomaly_reader=OneAnomaly()))


# Paths a client may send that API Gateway does not match as /monitoring/..., each served by the app
# as /monitoring/anomalies (the event's decoded path).
CONFUSED = ["/%256Donitoring/anomalies", "//monitoring/anomalies", "/Monitoring/anomalies", "/monitoring./anomalies"]


@pytest.mark.parametrize("raw_path", CONFUSED)
def test_a_default_route_request_without_authorizer_context_is_refused(raw_path: str) -> None:
    event = http_api_event("GET", "/monitoring/anomalies", raw_path=raw_path, route_key="$default")
    response = handler(monitoring_auth="iam")(event, lambda_context())
    assert response["statusCode"] == 403
    assert "198.51.100.7" not in response["body"]


def test_the_genuine_iam_authorized_request_is_served() -> None:
    event = http_api_event(
        "GET", "/monitoring/anomalies", route_key="ANY /monitoring/{proxy+}", authorizer=iam_authorizer()
    )
    response = handler(monitoring_auth="iam")(event, lambda_context())
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["items"][0]["subject"] == "198.51.100.7"


def test_iam_mode_refuses_another_authorizers_context_and_authorizer_mode_takes_it() -> None:
    jwt = {"jwt": {"claims": {"sub": "reader"}, "scopes": ["monitoring"]}}
    event = http_api_event("GET", "/monitoring/anomalies", route_key="ANY /monitoring/{proxy+}", authorizer=jwt)
    assert handler(monitoring_auth="iam")(event, lambda_context())["statusCode"] == 403
    assert handler(monitoring_auth="authorizer")(event, lambda_context())["statusCode"] == 200
    empty = http_api_event("GET", "/monitoring/anomalies", authorizer={"lambda": {}})
    assert handler(monitoring_auth="authorizer")(empty, lambda_context())["statusCode"] == 403


def test_auto_means_iam_on_lambda_and_none_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    event = http_api_event("GET", "/monitoring/anomalies")
    monkeypatch.delenv("AWS_LAMBDA_FUNCTION_NAME", raising=False)
    assert handler()(event, lambda_context())["statusCode"] == 200
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "pulse-api")
    assert handler()(event, lambda_context())["statusCode"] == 403


def test_other_routes_need_no_authorizer() -> None:
    response = handler(monitoring_auth="iam")(http_api_event("GET", "/health"), lambda_context())
    assert response["statusCode"] == 200
