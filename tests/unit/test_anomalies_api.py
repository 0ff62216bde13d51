"""GET /monitoring/anomalies against an emulated anomaly table: filters, ordering, pagination, validation."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lambda_api import anomaly_reader
from lambda_api.app import create_app
from lambda_api.settings import load_settings
from pulse_contract import Anomaly
from pulse_local.emulator import Emulator, create_anomaly_table

DAY = datetime(2025, 3, 10, tzinfo=UTC)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def anomaly(subject_type: str, subject: str, kind: str, window_end: datetime) -> Anomaly:
    end = ms(window_end)
    return Anomaly(
        kind=kind, subject_type=subject_type, subject=subject, window_start=end - 60_000, window_end=end,
        observed=120.0, expected=20.5, score=7.25, severity="high", detected_at=end + 3_000,
        ttl=end // 1000 + 30 * 86_400,
    )  # fmt: skip


ITEMS, CHECKOUT, CLIENT = "/items/{item_id}", "/checkout", "198.51.100.7"
SEEDED = [
    anomaly("route", ITEMS, "spike", DAY + timedelta(hours=10)),
    anomaly("route", ITEMS, "drop", DAY + timedelta(hours=9)),
    anomaly("route", ITEMS, "spike", DAY - timedelta(milliseconds=1)),
    anomaly("route", ITEMS, "latency_surge", DAY - timedelta(days=2) + timedelta(hours=12)),
    anomaly("route", CHECKOUT, "error_surge", DAY + timedelta(hours=10)),
    anomaly("route", CHECKOUT, "spike", DAY - timedelta(hours=16)),
    anomaly("client", CLIENT, "ip_burst", DAY + timedelta(hours=11)),
    replace(anomaly("client", CLIENT, "ip_scan", DAY - timedelta(hours=12)), kinds="ip_scan,ip_burst"),
    anomaly("client", CLIENT, "ip_auth_failures", DAY - timedelta(days=2)),
    anomaly("route", ITEMS, "silence", DAY - timedelta(days=10)),  # outside the default 7-day look-back
]
UNTIL = (DAY + timedelta(days=1)).isoformat()


def to_item(record: dict[str, Any]) -> dict[str, Any]:
    return {k: {"N": str(v)} if isinstance(v, int | float) else {"S": v} for k, v in record.items()}


@pytest.fixture(scope="module")
def table(emulator: Emulator) -> str:
    name = f"pulse-anomalies-{uuid.uuid4().hex[:8]}"
    create_anomaly_table(emulator, name)
    dynamodb = emulator.client("dynamodb")
    for item in SEEDED:
        dynamodb.put_item(TableName=name, Item=to_item(item.to_record()))
    return name


@pytest.fixture
def api(table: str) -> Iterator[TestClient]:
    yield TestClient(create_app(load_settings(publisher="off", anomaly_table=table)))


def keys(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["pk"], r["sk"]) for r in records]


def expected(predicate: Any) -> list[tuple[str, str]]:
    """The seeded anomalies matching ``predicate``, newest first (ties by sk then pk, descending)."""
    chosen = sorted((a for a in SEEDED if predicate(a)), key=lambda a: (a.sk, a.pk), reverse=True)
    return [(a.pk, a.sk) for a in chosen]


def newest_first(records: list[dict[str, Any]]) -> bool:
    ends = [r["window_end"] for r in records]
    return ends == sorted(ends, reverse=True)


def all_pages(api: TestClient, **params: Any) -> tuple[list[dict[str, Any]], int]:
    records: list[dict[str, Any]] = []
    cursor, pages = None, 0
    while pages < 50:
        response = api.get("/monitoring/anomalies", params={**params, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        records += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return records, pages
    raise AssertionError("pagination did not end within 50 pages")


def test_one_subject_newest_first_with_every_design_field(api: TestClient) -> None:
    # when one route's anomalies are asked for
    response = api.get("/monitoring/anomalies", params={"subject_type": "route", "subject": ITEMS, "until": UNTIL})
    # then they come newest first, as the contract's records
    body = response.json()
    assert response.status_code == 200
    assert keys(body["items"]) == expected(lambda a: a.pk == f"route#{ITEMS}" and a.kind != "silence")
    assert body["next_cursor"] is None
    first = body["items"][0]
    assert first == {k: v for k, v in SEEDED[0].to_record().items() if k != "day"}


def test_an_incident_shows_its_kinds(api: TestClient) -> None:
    response = api.get("/monitoring/anomalies", params={"subject_type": "client", "subject": CLIENT, "until": UNTIL})
    kinds = {item["kind"]: item["kinds"] for item in response.json()["items"]}
    assert kinds["ip_scan"] == "ip_scan,ip_burst"  # a scan with its burst as a facet: one incident


def test_across_subjects_newest_first_over_several_days(api: TestClient) -> None:
    response = api.get("/monitoring/anomalies", params={"until": UNTIL})
    records = response.json()["items"]
    assert sorted(keys(records)) == sorted(expected(lambda a: a.kind != "silence"))
    assert newest_first(records)


def test_kind_filter(api: TestClient) -> None:
    records = api.get("/monitoring/anomalies", params={"kind": "spike", "until": UNTIL}).json()["items"]
    assert sorted(keys(records)) == sorted(expected(lambda a: a.kind == "spike"))
    assert newest_first(records)


def test_subject_type_filter_without_subject(api: TestClient) -> None:
    records = api.get("/monitoring/anomalies", params={"subject_type": "client", "until": UNTIL}).json()["items"]
    assert keys(records) == expected(lambda a: a.subject_type == "client")


def test_time_range_includes_since_and_excludes_until(api: TestClient) -> None:
    # given since and until exactly on seeded window ends (10:00 twice, 11:00 once)
    params = {"since": (DAY + timedelta(hours=10)).isoformat(), "until": (DAY + timedelta(hours=11)).isoformat()}
    # then the 10:00 anomalies are in and the 11:00 one is out
    records = api.get("/monitoring/anomalies", params=params).json()["items"]
    assert sorted(keys(records)) == sorted(expected(lambda a: a.window_end == ms(DAY + timedelta(hours=10))))
    assert len(records) == 2


def test_the_default_look_back_is_seven_days_and_since_reaches_further(api: TestClient) -> None:
    default = api.get("/monitoring/anomalies", params={"until": UNTIL}).json()["items"]
    assert "silence" not in {r["kind"] for r in default}
    since = (DAY - timedelta(days=12)).isoformat()
    wider = api.get("/monitoring/anomalies", params={"until": UNTIL, "since": since}).json()["items"]
    assert "silence" in {r["kind"] for r in wider}


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"kind": "spike"},
        {"subject_type": "route"},
        {"subject_type": "route", "subject": ITEMS},
        {"subject_type": "route", "subject": ITEMS, "kind": "spike"},
    ],
)
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_pages_concatenate_to_the_unpaginated_answer(api: TestClient, params: dict[str, Any], limit: int) -> None:
    # given the whole answer in one page
    params = {**params, "until": UNTIL, "since": (DAY - timedelta(days=3)).isoformat()}
    whole = api.get("/monitoring/anomalies", params={**params, "limit": 200}).json()
    assert whole["next_cursor"] is None
    # when the same query is read page by page, then the pages hold the same records in the same order
    paged, pages = all_pages(api, **params, limit=limit)
    assert keys(paged) == keys(whole["items"])
    assert pages >= -(-len(whole["items"]) // limit)


def test_each_page_respects_the_limit(api: TestClient) -> None:
    body = api.get("/monitoring/anomalies", params={"until": UNTIL, "limit": 4}).json()
    assert len(body["items"]) == 4
    assert body["next_cursor"]


def test_a_cursor_only_continues_its_own_query(api: TestClient) -> None:
    cursor = api.get("/monitoring/anomalies", params={"until": UNTIL, "limit": 1}).json()["next_cursor"]
    other = api.get("/monitoring/anomalies", params={"until": UNTIL, "limit": 1, "kind": "drop", "cursor": cursor})
    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["query", "cursor"]


@pytest.mark.parametrize("cursor", ["not-base64!!", "e30", anomaly_reader.Cursor("x", None, None).encode()])
def test_a_malformed_or_forged_cursor_is_rejected(api: TestClient, cursor: str) -> None:
    response = api.get("/monitoring/anomalies", params={"until": UNTIL, "cursor": cursor})
    assert response.status_code == 422


def test_a_cursor_cannot_point_into_another_subjects_partition(api: TestClient) -> None:
    # given a cursor with the right fingerprint but a start key in another subject's partition
    query = anomaly_reader.AnomalyQuery(
        since_ms=ms(DAY - timedelta(days=6)), until_ms=ms(DAY + timedelta(days=1)), subject_type="route", subject=ITEMS
    )
    forged = anomaly_reader.Cursor(query.fingerprint(), None, {"pk": f"client#{CLIENT}", "sk": "z"}).encode()
    params = {"subject_type": "route", "subject": ITEMS, "until": UNTIL, "cursor": forged}
    assert api.get("/monitoring/anomalies", params=params).status_code == 422


@pytest.mark.parametrize(
    "params",
    [
        {"kind": "bogus"},
        {"limit": 0},
        {"limit": 201},
        {"subject_type": "server"},
        {"since": "yesterday"},
        {"since": "1741600800"},  # the document says ISO 8601, not a number of seconds
        {"subject": "x" * 501},
        {"unknown": "1"},
        {"cursor": ""},
        {"cursor": "not-base64!!"},
    ],
)
def test_invalid_parameters_are_422(api: TestClient, params: dict[str, Any]) -> None:
    assert api.get("/monitoring/anomalies", params=params).status_code == 422


def test_a_long_range_is_fine_for_one_subject(api: TestClient) -> None:
    params = {
        "subject_type": "route",
        "subject": ITEMS,
        "since": (DAY - timedelta(days=40)).isoformat(),
        "until": UNTIL,
    }
    response = api.get("/monitoring/anomalies", params=params)
    assert response.status_code == 200
    assert len(response.json()["items"]) == 5


def test_a_long_range_across_subjects_is_paged_by_bounded_work(api: TestClient) -> None:
    # given 40 days across subjects (more than one page's 25 calls of empty days)
    params = {"since": (DAY - timedelta(days=40)).isoformat(), "until": UNTIL, "kind": "silence"}
    # then the pages, followed, end with the one silence 10 days back
    records, pages = all_pages(api, **params, limit=50)
    assert [r["kind"] for r in records] == ["silence"] and pages >= 2


def test_a_subject_alone_is_a_route_when_it_starts_with_a_slash_else_a_client(api: TestClient) -> None:
    route = api.get("/monitoring/anomalies", params={"subject": ITEMS, "until": UNTIL}).json()["items"]
    client = api.get("/monitoring/anomalies", params={"subject": CLIENT, "until": UNTIL}).json()["items"]
    assert keys(route) == expected(lambda a: a.pk == f"route#{ITEMS}" and a.kind != "silence")
    assert keys(client) == expected(lambda a: a.pk == f"client#{CLIENT}")


def test_since_not_before_until_is_an_empty_range(api: TestClient) -> None:
    response = api.get("/monitoring/anomalies", params={"since": UNTIL, "until": UNTIL})
    assert response.status_code == 200 and response.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize(
    "params",
    [
        {"until": "9999-12-31T23:59:59-23:00"},  # year 10000 in UTC (was a 500)
        {"since": "0999-01-01T00:00:00Z", "until": UNTIL},  # 3-digit year: inverted key bounds (was a 503)
        {"since": "0001-01-01T00:00:00+23:00", "subject": ITEMS},
        {"subject_type": "client", "subject": "\U0001f600" * 500},  # 2000 bytes of UTF-8, the longest allowed
    ],
)
def test_extreme_times_and_subjects_are_answered_not_5xx(api: TestClient, params: dict[str, Any]) -> None:
    response = api.get("/monitoring/anomalies", params=params)
    assert response.status_code == 200, response.text


def test_extreme_times_are_clamped_without_changing_the_answer(api: TestClient) -> None:
    wide = {"subject": ITEMS, "since": "0001-01-01T00:00:00Z", "until": "9999-12-31T23:59:59-23:00"}
    records = api.get("/monitoring/anomalies", params=wide).json()["items"]
    assert keys(records) == expected(lambda a: a.pk == f"route#{ITEMS}")


def test_a_forged_cursor_with_an_oversized_key_is_422(api: TestClient) -> None:
    since, until = DAY - timedelta(days=6), DAY + timedelta(days=1)
    query = anomaly_reader.AnomalyQuery(since_ms=ms(since), until_ms=ms(until))
    day = query.day(0)
    forged = anomaly_reader.Cursor(query.fingerprint(), day, {"pk": "x" * 3000, "sk": "z", "day": day}).encode()
    params = {"since": since.isoformat(), "until": until.isoformat(), "cursor": forged}
    response = api.get("/monitoring/anomalies", params=params)
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "cursor"]


class RefusingClient:
    def query(self, **request: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        error = {"Error": {"Code": "ValidationException", "Message": "Key too long"}}
        raise ClientError(error, "Query")  # type: ignore[arg-type]


def test_dynamodb_validation_errors_are_422_not_503() -> None:
    store = anomaly_reader.AnomalyReader("t", RefusingClient())
    api = TestClient(create_app(load_settings(publisher="off"), anomaly_reader=store))
    response = api.get("/monitoring/anomalies", params={"subject": ITEMS})
    assert response.status_code == 422
    assert "Key too long" in response.json()["detail"][0]["msg"]


class CountingClient:
    """Passes queries to DynamoDB and counts the items each one evaluated."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.scanned: list[int] = []

    def query(self, **request: Any) -> dict[str, Any]:
        response: dict[str, Any] = self.client.query(**request)
        self.scanned.append(response["ScannedCount"])
        return response


def test_the_items_read_per_request_are_capped(emulator: Emulator, table: str) -> None:
    # given a store that may evaluate 3 items per request, and a filter that matches few of many
    counting = CountingClient(emulator.client("dynamodb"))
    store = anomaly_reader.AnomalyReader(table, counting, max_items_read=3)
    since, until = ms(DAY - timedelta(days=6)), ms(DAY + timedelta(days=1))
    filtered = anomaly_reader.AnomalyQuery(since_ms=since, until_ms=until, kind="ip_auth_failures")
    # when one page is asked for, then it read at most 3 items and ends with a cursor
    page = store.page(filtered)
    assert sum(counting.scanned) <= 3 and page.next_cursor is not None
    # and following the cursors still finds the match
    assert [r["kind"] for r in anomaly_reader.iter_all(store, filtered)] == ["ip_auth_failures"]


def test_a_missing_table_is_503(emulator: Emulator) -> None:
    api = TestClient(create_app(load_settings(publisher="off", anomaly_table="no-such-table")))
    response = api.get("/monitoring/anomalies")
    assert response.status_code == 503
