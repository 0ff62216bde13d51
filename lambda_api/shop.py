"""The example service Pulse monitors: a small shop (catalog, search, users and their orders, login, checkout).

In-memory and seeded deterministically, so every run serves the same data. Path parameters are
deliberate: route templates (``/users/{user_id}/orders/{order_id}``), not raw paths, are what
the detection job counts. Every seeded user's password is ``pulse-<username>``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import random
import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, status
from pydantic import BaseModel, Field

from lambda_api.openapi import errors

MAX_TOKENS = 10_000  # sessions kept; the oldest are forgotten (load tests log in a lot)
MAX_ORDERS_PER_USER = 1_000
USERNAMES: tuple[str, ...] = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy")
USERNAMES += ("mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "zoe")


class Item(BaseModel):
    id: int
    name: str
    category: str
    price_cents: int
    stock: int


class ItemList(BaseModel):
    items: list[Item]
    total: int
    offset: int
    limit: int


class SearchResult(BaseModel):
    query: str
    results: list[Item]


class User(BaseModel):
    id: int
    username: str
    display_name: str


class OrderLine(BaseModel):
    item_id: int = Field(ge=1)
    quantity: int = Field(ge=1, le=100)


class Order(BaseModel):
    id: int
    user_id: int
    lines: list[OrderLine]
    total_cents: int
    status: str


class OrderList(BaseModel):
    orders: list[Order]


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=128)


class Session(BaseModel):
    token: str
    user_id: int


class CheckoutRequest(BaseModel):
    lines: list[OrderLine] = Field(min_length=1, max_length=50)


class Health(BaseModel):
    status: str


def _password_hash(salt: bytes, password: str) -> bytes:
    return hashlib.sha256(salt + password.encode("utf-8")).digest()


@dataclass
class _Account:
    user: User
    salt: bytes
    password_hash: bytes
    orders: deque[Order] = field(default_factory=lambda: deque(maxlen=MAX_ORDERS_PER_USER))


class Shop:
    """The shop's state. One per app, so tests and apps do not share it."""

    def __init__(self, items: list[Item], accounts: list[_Account]) -> None:
        self.items = {item.id: item for item in items}
        self.accounts = {account.user.id: account for account in accounts}
        self._by_username = {account.user.username: account for account in accounts}
        self._tokens: OrderedDict[str, int] = OrderedDict()
        self._order_ids = itertools.count(1 + sum(len(a.orders) for a in accounts))

    @classmethod
    def seeded(cls, seed: int = 7) -> Shop:
        rng = random.Random(seed)
        adjectives = ["Red", "Blue", "Quiet", "Rapid", "Solid", "Bright", "Compact", "Classic"]
        nouns = [("Kettle", "kitchen"), ("Lamp", "home"), ("Backpack", "outdoor"), ("Headphones", "audio")]
        nouns += [("Notebook", "office"), ("Tent", "outdoor"), ("Speaker", "audio")]
        items = [
            Item(id=n, name=f"{adj} {noun}", category=category, price_cents=rng.randrange(500, 25_000, 5), stock=1_000)
            for n, (adj, (noun, category)) in enumerate(itertools.product(adjectives, nouns), start=1)
        ]
        names = USERNAMES
        accounts = []
        order_id = itertools.count(1)
        for user_id, username in enumerate(names, start=1):
            salt = rng.randbytes(16)
            account = _Account(
                user=User(id=user_id, username=username, display_name=username.capitalize()),
                salt=salt,
                password_hash=_password_hash(salt, f"pulse-{username}"),
            )
            for _ in range(rng.randrange(0, 4)):
                lines = [OrderLine(item_id=rng.choice(items).id, quantity=rng.randrange(1, 4))]
                total = sum(items[line.item_id - 1].price_cents * line.quantity for line in lines)
                account.orders.append(
                    Order(id=next(order_id), user_id=user_id, lines=lines, total_cents=total, status="delivered")
                )
            accounts.append(account)
        return cls(items, accounts)

    def login(self, username: str, password: str) -> Session | None:
        account = self._by_username.get(username)
        if account is None:
            _password_hash(b"0" * 16, password)  # same work either way: no user enumeration by timing
            return None
        if not hmac.compare_digest(account.password_hash, _password_hash(account.salt, password)):
            return None
        token = secrets.token_urlsafe(24)
        self._tokens[token] = account.user.id
        while len(self._tokens) > MAX_TOKENS:
            self._tokens.popitem(last=False)
        return Session(token=token, user_id=account.user.id)

    def user_for(self, token: str) -> int | None:
        return self._tokens.get(token)

    def checkout(self, user_id: int, lines: list[OrderLine]) -> Order:
        """Reserve stock for every line (all or nothing) and record the order; HTTPException 404/409."""
        wanted: dict[int, int] = {}
        for line in lines:
            wanted[line.item_id] = wanted.get(line.item_id, 0) + line.quantity
        for item_id, quantity in wanted.items():
            item = self.items.get(item_id)
            if item is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"item {item_id} not found")
            if item.stock < quantity:
                raise HTTPException(status.HTTP_409_CONFLICT, f"item {item_id}: only {item.stock} in stock")
        for item_id, quantity in wanted.items():
            self.items[item_id].stock -= quantity
        total = sum(self.items[line.item_id].price_cents * line.quantity for line in lines)
        order = Order(id=next(self._order_ids), user_id=user_id, lines=lines, total_cents=total, status="placed")
        self.accounts[user_id].orders.append(order)
        return order


async def get_shop(request: Request) -> Shop:
    shop: Shop = request.app.state.shop
    return shop


# async: a plain def dependency would cost every request a hop through the thread pool
ShopDep = Annotated[Shop, Depends(get_shop)]
router = APIRouter()


@router.get("/health", tags=["ops"])
async def health() -> Health:
    return Health(status="ok")


@router.get("/items", tags=["catalog"])
async def list_items(
    shop: ShopDep,
    category: Annotated[str | None, Query(max_length=32)] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ItemList:
    matching = [item for item in shop.items.values() if category is None or item.category == category]
    return ItemList(items=matching[offset : offset + limit], total=len(matching), offset=offset, limit=limit)


@router.get("/items/{item_id}", tags=["catalog"], responses=errors(404))
async def get_item(shop: ShopDep, item_id: int) -> Item:
    item = shop.items.get(item_id)
    if item is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"item {item_id} not found")
    return item


@router.get("/search", tags=["catalog"])
async def search(
    shop: ShopDep,
    q: Annotated[str, Query(min_length=1, max_length=100)],
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> SearchResult:
    needle = q.casefold()
    results = [item for item in shop.items.values() if needle in item.name.casefold()][:limit]
    return SearchResult(query=q, results=results)


@router.get("/users/{user_id}", tags=["users"], responses=errors(404))
async def get_user(shop: ShopDep, user_id: int) -> User:
    account = shop.accounts.get(user_id)
    if account is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"user {user_id} not found")
    return account.user


@router.get("/users/{user_id}/orders", tags=["users"], responses=errors(404))
async def list_orders(shop: ShopDep, user_id: int) -> OrderList:
    account = shop.accounts.get(user_id)
    if account is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"user {user_id} not found")
    return OrderList(orders=list(account.orders))


@router.get("/users/{user_id}/orders/{order_id}", tags=["users"], responses=errors(404))
async def get_order(shop: ShopDep, user_id: int, order_id: int) -> Order:
    account = shop.accounts.get(user_id)
    order = next((o for o in account.orders if o.id == order_id), None) if account else None
    if order is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"order {order_id} of user {user_id} not found")
    return order


@router.post("/login", tags=["auth"], responses=errors(400, 401))
async def login(shop: ShopDep, credentials: Credentials) -> Session:
    session = shop.login(credentials.username, credentials.password)
    if session is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid username or password", headers={"WWW-Authenticate": "Bearer"}
        )
    return session


@router.post("/checkout", status_code=status.HTTP_201_CREATED, tags=["orders"], responses=errors(400, 401, 404, 409))
async def checkout(
    shop: ShopDep,
    body: CheckoutRequest,
    authorization: Annotated[str | None, Header(max_length=512)] = None,
) -> Order:
    scheme, _, token = (authorization or "").partition(" ")
    user_id = shop.user_for(token) if scheme.lower() == "bearer" and token else None
    if user_id is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "log in first", headers={"WWW-Authenticate": "Bearer"})
    return shop.checkout(user_id, body.lines)
