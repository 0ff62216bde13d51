"""What the OpenAPI document says about error responses: one model and one description per status code.

Every route declares each error status it can answer with (``responses=errors(404)``), so the
document lists every status the API returns; ``tests/unit/test_openapi_contract.py`` holds the
app to it with schemathesis.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorOut(BaseModel):
    """FastAPI's error body: a message, or (422) the list of validation errors."""

    detail: str | list[dict[str, Any]] = Field(description="what went wrong")


_DESCRIPTIONS = {
    400: "the request body is not valid JSON",
    401: "not authenticated (bad credentials or no bearer token)",
    403: "the request does not carry the authorization this endpoint requires",
    404: "not found",
    409: "conflict with the current state",
    503: "a backing store is not configured or unavailable",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` entry of a route for these error status codes."""
    return {code: {"model": ErrorOut, "description": _DESCRIPTIONS[code]} for code in codes}
