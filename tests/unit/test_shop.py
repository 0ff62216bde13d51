"""The example shop API: the behaviour the monitored traffic is made of (404s, 401s, 409s, 422s included)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from lambda_api.app import create_app
from lambda_api.settings import load_settings


@pytest.fixture
def api() -> TestClient:
    return TestClient(create_app(load_settings(publisher="off")))


def login(api: TestClient, username: str = "alice") -> dict[str, str]:
    response = api.post("/login", json={"username": username, "password": f"pulse-{username}"})
    assert response.status_code == 200
    return {"Authorization": f"Bearer {response.json()['token']}"}


def test_health(api: TestClient) -> None:
    assert api.get("/health").json() == {"status": "ok"}


def test_catalog_pages_filters_and_finds_items(api: TestClient) -> None:
    everything = api.get("/items", params={"limit": 100}).json()
    assert everything["total"] == len(everything["items"]) == 56
    page = api.get("/items", params={"offset": 50, "limit": 20}).json()
    assert [item["id"] for item in page["items"]] == list(range(51, 57))
    audio = api.get("/items", params={"category": "audio", "limit": 100}).json()["items"]
    assert audio and {item["category"] for item in audio} == {"audio"}
    item = api.get("/items/3").json()
    assert item == everything["items"][2]
    found = api.get("/search", params={"q": "LAMP"}).json()["results"]
    assert found and all("lamp" in result["name"].lower() for result in found)


@pytest.mark.parametrize("path", ["/items/999", "/users/999", "/users/999/orders", "/users/1/orders/999999"])
def test_unknown_resources_are_404(api: TestClient, path: str) -> None:
    assert api.get(path).status_code == 404


@pytest.mark.parametrize("path", ["/items/abc", "/items?limit=0", "/search", "/search?q=" + "x" * 101])
def test_invalid_parameters_are_422(api: TestClient, path: str) -> None:
    assert api.get(path).status_code == 422


@pytest.mark.parametrize(
    "credentials",
    [{"username": "alice", "password": "wrong"}, {"username": "nobody", "password": "pulse-nobody"}],
)
def test_bad_credentials_are_401(api: TestClient, credentials: dict[str, str]) -> None:
    response = api.post("/login", json=credentials)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_checkout_needs_a_session(api: TestClient) -> None:
    order = {"lines": [{"item_id": 1, "quantity": 1}]}
    assert api.post("/checkout", json=order).status_code == 401
    assert api.post("/checkout", json=order, headers={"Authorization": "Bearer forged"}).status_code == 401


def test_checkout_places_an_order_reserves_stock_and_lists_it(api: TestClient) -> None:
    # given a logged-in user and an item's stock
    headers = login(api, "bob")
    stock = api.get("/items/5").json()["stock"]
    bob = api.get("/users/2").json()
    # when bob checks out two lines of the same item
    response = api.post("/checkout", json={"lines": [{"item_id": 5, "quantity": 2}, {"item_id": 5, "quantity": 1}]},
                        headers=headers)  # fmt: skip
    # then the order is placed, the stock reserved, and the order listed under bob
    assert response.status_code == 201
    order = response.json()
    assert order["user_id"] == bob["id"] and order["status"] == "placed"
    assert order["total_cents"] == 3 * api.get("/items/5").json()["price_cents"]
    assert api.get("/items/5").json()["stock"] == stock - 3
    assert order in api.get(f"/users/{bob['id']}/orders").json()["orders"]
    assert api.get(f"/users/{bob['id']}/orders/{order['id']}").json() == order


def test_checkout_is_all_or_nothing(api: TestClient) -> None:
    headers = login(api)
    stock = api.get("/items/1").json()["stock"]
    unknown = api.post("/checkout", json={"lines": [{"item_id": 1, "quantity": 1}, {"item_id": 999, "quantity": 1}]},
                       headers=headers)  # fmt: skip
    too_many = [{"item_id": 1, "quantity": 100}] * ((stock // 100) + 1)
    short = api.post("/checkout", json={"lines": too_many}, headers=headers)
    assert (unknown.status_code, short.status_code) == (404, 409)
    assert api.get("/items/1").json()["stock"] == stock


def test_each_app_has_its_own_data() -> None:
    first, second = (TestClient(create_app(load_settings(publisher="off"))) for _ in range(2))
    headers = login(first)
    first.post("/checkout", json={"lines": [{"item_id": 2, "quantity": 5}]}, headers=headers)
    assert first.get("/items/2").json()["stock"] == second.get("/items/2").json()["stock"] - 5
