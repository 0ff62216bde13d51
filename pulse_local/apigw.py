"""API Gateway HTTP API (payload format 2.0) events, as Lambda receives them: for invoking the handler locally."""

from __future__ import annotations

import json
import time
import uuid
from types import SimpleNamespace
from typing import Any


def http_api_event(
    method: str,
    path: str,
    *,
    query: str = "",
    body: Any = None,
    source_ip: str = "203.0.113.9",
    user_agent: str = "pytest-lambda/1.0",
    headers: dict[str, str] | None = None,
    route_key: str = "$default",
    raw_path: str | None = None,
    authorizer: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An HTTP API event for ``path`` (decoded, as in ``requestContext.http.path``; ``raw_path`` as the client sent it).

    ``route_key`` is the route API Gateway matched; ``authorizer`` the context its authorizer set
    (``iam_authorizer()`` for an IAM-authorized route), absent for a route without authorization.
    """
    all_headers = {
        "host": "abc123.execute-api.us-east-1.amazonaws.com",
        "user-agent": user_agent,
        "x-forwarded-for": source_ip,
        "x-forwarded-proto": "https",
        "x-forwarded-port": "443",
        **({"content-type": "application/json"} if body is not None else {}),
        **(headers or {}),
    }
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path if raw_path is None else raw_path,
        "rawQueryString": query,
        "headers": all_headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "abc123",
            "domainName": all_headers["host"],
            "domainPrefix": "abc123",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip,
                "userAgent": user_agent,
            },
            "requestId": uuid.uuid4().hex[:16],
            "routeKey": route_key,
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "body": json.dumps(body) if body is not None else None,
        "isBase64Encoded": False,
    }
    if authorizer is not None:
        event["requestContext"]["authorizer"] = authorizer
    return event


def iam_authorizer(account_id: str = "123456789012", user: str = "monitoring-reader") -> dict[str, Any]:
    """The ``requestContext.authorizer`` API Gateway sets on a request its IAM authorizer allowed."""
    return {
        "iam": {
            "accessKey": "ASIAEXAMPLEKEY123456",
            "accountId": account_id,
            "callerId": f"AROAEXAMPLE:{user}",
            "cognitoIdentity": None,
            "principalOrgId": None,
            "userArn": f"arn:aws:sts::{account_id}:assumed-role/{user}/session",
            "userId": f"AROAEXAMPLE:{user}",
        }
    }


def lambda_context() -> SimpleNamespace:
    return SimpleNamespace(
        function_name="pulse-api",
        aws_request_id=uuid.uuid4().hex,
        memory_limit_in_mb=512,
        get_remaining_time_in_millis=lambda: 30_000,
    )
