"""The v1 request event: exact fields, one encoding everywhere, strict validation when read back."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pulse_contract.request_event import FIELD_NAMES, RequestEvent, encode_json


def sample(**overrides: object) -> RequestEvent:
    fields = {
        "v": 1,
        "id": "0123456789abcdef0123456789abcdef",
        "ts": 1_700_000_000_123,
        "method": "GET",
        "route": "/users/{user_id}",
        "path": "/users/7",
        "status": 200,
        "latency_ms": 1.25,
        "client_ip": "198.51.100.7",
        "user_agent": "curl/8",
        "bytes_out": 42,
    }
    fields.update(overrides)
    return RequestEvent(**fields)  # type: ignore[arg-type]


def test_fields_are_exactly_schema_v1_which_never_changes() -> None:
    assert FIELD_NAMES == (
        "v", "id", "ts", "method", "route", "path", "status", "latency_ms", "client_ip", "user_agent", "bytes_out",
    )  # fmt: skip


def test_json_is_compact_and_round_trips() -> None:
    event = sample()
    data = event.to_json()
    assert b" " not in data.replace(b"curl/8", b"")
    assert RequestEvent.from_dict(json.loads(data)) == event


def test_any_text_encodes_as_ascii_json_even_lone_surrogates() -> None:
    # given a path with non-ASCII text and a lone surrogate (possible from a decoded Lambda event)
    event = sample(path="/caf\u00e9/\ud800", user_agent="\u2603")
    # when encoded, then the bytes are ASCII and decode back to the same text
    data = event.to_json()
    assert data.isascii()
    assert json.loads(data)["path"] == "/caf\u00e9/\ud800"
    assert encode_json(json.loads(data)) == data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"v": 2}, "schema version"),
        ({"status": "200"}, "status"),
        ({"ts": True}, "ts"),
        ({"latency_ms": "fast"}, "latency_ms"),
    ],
)
def test_from_dict_names_what_is_wrong(change: dict[str, object], message: str) -> None:
    data = {**sample().to_dict(), **change}
    with pytest.raises(ValueError, match=message):
        RequestEvent.from_dict(data)


def test_from_dict_requires_every_field_and_accepts_integral_latency() -> None:
    data = sample().to_dict()
    del data["bytes_out"]
    with pytest.raises(ValueError, match="bytes_out"):
        RequestEvent.from_dict(data)
    assert RequestEvent.from_dict({**sample().to_dict(), "latency_ms": 3}).latency_ms == 3.0


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(max_size=80),
    number=st.integers(min_value=0, max_value=2**53),
    latency=st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False),
)
def test_the_fast_encoding_is_byte_identical_to_the_generic_one(text: str, number: int, latency: float) -> None:
    # replay re-encodes an event read from the fallback log with encode_json: the bytes must match
    event = sample(id=text, method=text[:8], route=text, path=text, client_ip=text, user_agent=text,
                   ts=number, status=number % 600, latency_ms=latency, bytes_out=number)  # fmt: skip
    assert event.to_json() == encode_json(event.to_dict())
