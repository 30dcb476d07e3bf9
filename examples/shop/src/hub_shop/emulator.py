"""A small web shop that speaks the protocol in README.md, for `hub demo`, `hub sandbox shop` and tests.

It holds Hub's sample people as customers, written the way a shop's checkout
form collects them: phones as each person typed them ("8 (916) 123-45-67",
"+7 916 123 45 67", "89161234567"…), emails sometimes in capitals, one name
field. Their purchases are orders (paid, cancelled, new), some with promo
codes. It checks the bearer token, limits the request rate (429 with
Retry-After), keeps coupons with idempotency keys, and lets a test break it
on purpose: answer 503, answer an HTML page instead of JSON, do the work
and drop the connection before answering, or forget its idempotency keys.

The shop's clock is the real one; every change gets a distinct `updated_at`,
later than any `server_time` the shop has already given out.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import random
import re
import secrets
import threading
import time
from collections import deque
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler
from itertools import islice
from typing import Any, Callable, Mapping
from urllib.parse import parse_qsl, urlsplit

from hub.api import (BackgroundServer, EmulatorHTTPServer, Person, RunningSandbox, Settings, format_number,
                     get_engine, serve_until_interrupted)
from hub.api import gettext as _
from hub.api import people as sample_people

from hub_shop.client import NAME, save_connection

MSK = dt.timezone(dt.timedelta(hours=3))
STATUS_OF = {"won": "paid", "lost": "cancelled", "open": "new"}
WELCOME_CODE = "WELCOME10"  # the shop's own code, on some first purchases
MAX_LIMIT = 1000
MAX_IDS_LIMIT = 5000
CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{2,63}$")


class ApiError(Exception):
    """An error answer: HTTP status, a short machine code and a sentence."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class CheckoutRefused(ValueError):
    """The checkout does not accept this promo code; the text says why, as the shop would show it."""


def messy_phone(e164: str, rng: random.Random) -> str:
    """One of the ways a customer types their number into a checkout form."""
    if not e164.startswith("+7") or len(e164) != 12:
        # Other countries: international form, spaced the way people group digits.
        return f"{e164[:4]} {e164[4:6]} {e164[6:9]} {e164[9:11]} {e164[11:]}".strip()
    n = e164[2:]
    c, a, b, d = n[:3], n[3:6], n[6:8], n[8:]
    forms = (f"8 ({c}) {a}-{b}-{d}", f"+7 {c} {a} {b} {d}", f"+7({c}){a}{b}{d}", f"8{n}", f"8-{c}-{a}-{b}-{d}",
             f"7{n}", f"{c} {a}-{b}-{d}", f" +7 {c} {a}{b}{d} ", f"8 {c} {a} {b} {d}", f"+7-{c}-{a}-{b}-{d}")
    return rng.choice(forms)


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.astimezone(MSK).isoformat() if moment is not None else None


class ShopEmulator:
    """The shop's state and its HTTP API; `start()` serves it on a local port.

    Customers get ids 1, 2, … in the order of the sample people
    first_person+1 … first_person+people, as the built-in emulators hold them.
    """

    def __init__(self, *, people: int = 50, first_person: int = 0, seed: int = 1, token: str | None = None,
                 rate: float = 50.0, burst: int = 50, name: str = "Демо-магазин",
                 today: dt.date | None = None) -> None:
        self.token = token or secrets.token_urlsafe(24)
        self.name = name
        self.seed, self.first_person = seed, first_person
        self.rate, self.burst = rate, burst
        self.customers: dict[int, dict[str, Any]] = {}
        self.orders: dict[int, dict[str, Any]] = {}
        self.coupons: dict[str, dict[str, Any]] = {}
        self.person_of: dict[int, int] = {}  # customer id → sample person id (the demo's truth)
        self.requests = 0
        self.rate_limited = 0
        self.replayed = 0  # coupon requests answered from the idempotency store
        self._keys: dict[str, tuple[str, int, dict[str, Any]]] = {}
        self._faults: deque[tuple[str, int]] = deque()
        self._lock = threading.RLock()
        self._last_stamp = dt.datetime.now(dt.timezone.utc)
        self._level, self._drained_at = 0.0, time.monotonic()
        self._server: BackgroundServer | None = None
        population = list(islice(sample_people(first_person + people, seed, today=today), first_person, None))
        for person in population:
            self._add_person(person, seed)

    # --- the data -------------------------------------------------------------------------

    def _add_person(self, person: Person, seed: int) -> None:
        rng = random.Random(seed * 1_000_003 + person.person_id)
        cid = len(self.customers) + 1
        now = self._last_stamp
        times = [o.closed_at for o in person.orders] or [now - dt.timedelta(days=30 + rng.randrange(700))]
        created = min(o.created_at for o in person.orders) if person.orders else times[0]
        updated = min(max(times) + dt.timedelta(hours=rng.randrange(1, 72)), now - dt.timedelta(minutes=1))
        emails = [e.upper() if rng.random() < 0.1 else e for e in person.emails if rng.random() < 0.9]
        self.customers[cid] = {
            "id": cid, "name": f"{person.first_name} {person.last_name}",
            "phones": [messy_phone(p, rng) for p in person.phones], "emails": emails,
            "birthday": person.birthday.isoformat() if person.birthday and rng.random() < 0.7 else None,
            "telegram_chat_id": (700_000_000 + person.person_id) if rng.random() < 0.4 else None,
            "created_at": created, "updated_at": updated, "deleted": False,
        }
        self.person_of[cid] = person.person_id
        welcome = rng.random() < 0.25
        for order in person.orders:
            status = STATUS_OF[order.status]
            promo = order.promo_code
            if welcome and status == "paid" and promo is None:
                promo, welcome = WELCOME_CODE, False
            oid = len(self.orders) + 1
            self.orders[oid] = {
                "id": oid, "customer_id": cid, "total": order.amount, "currency": order.currency, "status": status,
                "promo_code": promo, "created_at": order.created_at,
                "paid_at": order.closed_at if status == "paid" else None,
                "cancelled_at": order.closed_at if status == "cancelled" else None,
                "updated_at": min(order.closed_at, updated), "deleted": False,
            }

    def _stamp(self) -> dt.datetime:
        """Now, but strictly later than any stamp or server time handed out before."""
        with self._lock:
            now = dt.datetime.now(dt.timezone.utc)
            self._last_stamp = max(now, self._last_stamp + dt.timedelta(microseconds=1))
            return self._last_stamp

    def customer(self, customer_id: int) -> dict[str, Any]:
        """A customer as the API shows them."""
        return _customer_json(self.customers[customer_id])

    def update_customer(self, customer_id: int, **changes: Any) -> dict[str, Any]:
        """Change a customer (name, phones, emails, birthday, telegram_chat_id), as the shop's admin would."""
        with self._lock:
            row = self.customers[customer_id]
            unknown = set(changes) - {"name", "phones", "emails", "birthday", "telegram_chat_id"}
            if unknown:
                raise KeyError(f"customers have no field {', '.join(sorted(unknown))}")
            row.update(changes, updated_at=self._stamp())
            return _customer_json(row)

    def add_customer(self, name: str, *, phones: list[str] | None = None, emails: list[str] | None = None,
                     telegram_chat_id: int | None = None) -> dict[str, Any]:
        """A new customer registers at the checkout."""
        with self._lock:
            cid = max(self.customers, default=0) + 1
            now = self._stamp()
            self.customers[cid] = {"id": cid, "name": name, "phones": list(phones or []),
                                   "emails": list(emails or []), "birthday": None,
                                   "telegram_chat_id": telegram_chat_id, "created_at": now, "updated_at": now,
                                   "deleted": False}
            return _customer_json(self.customers[cid])

    def delete_customer(self, customer_id: int) -> None:
        """The customer deletes their account; the incremental list then shows a tombstone."""
        with self._lock:
            self.customers[customer_id].update(deleted=True, updated_at=self._stamp())

    def checkout(self, customer_id: int, total: Decimal | str, *, promo_code: str | None = None) -> dict[str, Any]:
        """A paid order, as the shop's checkout makes one; a promo code must be a coupon it accepts.

        The shop's own WELCOME code and the coupons Hub registered are
        accepted; a coupon must not be expired, used up, below its minimum
        total, or registered for another customer.
        """
        with self._lock:
            if customer_id not in self.customers or self.customers[customer_id]["deleted"]:
                raise CheckoutRefused(f"no customer {customer_id}")
            amount = Decimal(str(total))
            code = promo_code.strip().upper() if promo_code else None
            if code and code != WELCOME_CODE:
                self._redeem(code, customer_id, amount)
            now = self._stamp()
            oid = max(self.orders, default=0) + 1
            self.orders[oid] = {"id": oid, "customer_id": customer_id, "total": amount, "currency": "RUB",
                                "status": "paid", "promo_code": code, "created_at": now, "paid_at": now,
                                "cancelled_at": None, "updated_at": now, "deleted": False}
            return _order_json(self.orders[oid])

    def _redeem(self, code: str, customer_id: int, amount: Decimal) -> None:
        coupon = self.coupons.get(code)
        if coupon is None:
            raise CheckoutRefused(f"промокод {code} не найден")
        if coupon["expires_at"] < dt.datetime.now(dt.timezone.utc):
            raise CheckoutRefused(f"срок действия промокода {code} истёк")
        if coupon["uses"] >= coupon["max_uses"]:
            raise CheckoutRefused(f"промокод {code} уже использован")
        if coupon["customer_id"] is not None and coupon["customer_id"] != customer_id:
            raise CheckoutRefused(f"промокод {code} выдан другому покупателю")
        if coupon["min_total"] is not None and amount < coupon["min_total"]:
            raise CheckoutRefused(f"промокод {code} действует на заказы от {coupon['min_total']} ₽")
        coupon["uses"] += 1

    # --- breaking it on purpose ------------------------------------------------------------------

    def fail_next(self, times: int = 1, *, status: int = 503) -> None:
        """The next `times` requests get `status` without being processed (an outage, a deploy)."""
        self._faults.extend([("status", status)] * times)

    def garble_next(self, times: int = 1) -> None:
        """The next `times` requests get a 200 HTML page instead of JSON (a misconfigured proxy)."""
        self._faults.extend([("garble", 200)] * times)

    def drop_next_answer(self, times: int = 1) -> None:
        """The next `times` requests are processed, then the connection closes without an answer."""
        self._faults.extend([("drop", 0)] * times)

    def forget_idempotency_keys(self) -> None:
        """The shop drops the keys of the writes it answered, as real shops do after a day or so."""
        with self._lock:
            self._keys.clear()

    # --- the HTTP API ---------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any],
                                                                                                dict[str, str]]:
        """One request: (status, JSON answer, extra headers). Raises nothing; errors are answers."""
        try:
            parts = urlsplit(target)
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            given = headers.get("Authorization") or ""
            if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].encode(), self.token.encode()):
                raise ApiError(401, "unauthorized", "missing or wrong bearer token")
            status, answer = self._route(method, parts.path.rstrip("/"), query, headers, body)
            return status, answer, {}
        except ApiError as exc:
            return exc.status, {"error": exc.code, "message": exc.message}, {}

    def _route(self, method: str, path: str, query: dict[str, str], headers: Mapping[str, str],
               body: bytes) -> tuple[int, dict[str, Any]]:
        tables = {"/api/customers": (self.customers, _customer_json), "/api/orders": (self.orders, _order_json)}
        with self._lock:
            if method == "GET" and path == "/api/status":
                return 200, {"shop": self.name, "server_time": _iso(self._stamp()),
                             "customers": sum(1 for c in self.customers.values() if not c["deleted"]),
                             "orders": sum(1 for o in self.orders.values() if not o["deleted"])}
            if method == "GET" and path in tables:
                return 200, _list(*tables[path], query)
            if method == "GET" and path.endswith("/ids") and path[:-4] in tables:
                return 200, _ids(tables[path[:-4]][0], query)
            if method == "POST" and path == "/api/coupons":
                return self._create_coupon(headers, body)
            if method == "GET" and path.startswith("/api/coupons/"):
                coupon = self.coupons.get(path.rsplit("/", 1)[1].upper())
                if coupon is None:
                    raise ApiError(404, "not_found", "no such coupon")
                return 200, _coupon_json(coupon)
        raise ApiError(404, "not_found", f"no endpoint {method} {path}")

    def _create_coupon(self, headers: Mapping[str, str], body: bytes) -> tuple[int, dict[str, Any]]:
        """201 and the coupon; the same request again (same Idempotency-Key) gets the same answer."""
        key = (headers.get("Idempotency-Key") or "").strip()
        if not key:
            raise ApiError(400, "idempotency_key_required", "send an Idempotency-Key header with every write")
        try:
            data = json.loads(body or b"null")
        except ValueError:
            raise ApiError(400, "bad_json", "the body is not JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "bad_request", "expected a JSON object")
        fingerprint = json.dumps(data, sort_keys=True)
        if key in self._keys:
            seen, status, answer = self._keys[key]
            if seen != fingerprint:
                raise ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used with another request")
            self.replayed += 1
            return status, {**answer, "replayed": True}
        coupon = _coupon_from(data, self.customers)
        if coupon["code"] in self.coupons:
            raise ApiError(409, "code_taken", f"coupon {coupon['code']} already exists")
        coupon["id"] = len(self.coupons) + 1
        coupon["created_at"] = self._stamp()
        self.coupons[coupon["code"]] = coupon
        answer = _coupon_json(coupon)
        self._keys[key] = (fingerprint, 201, answer)
        return 201, answer

    def _allowed(self) -> bool:
        """The shop's rate limit: a leaky bucket of `burst` requests draining at `rate` per second."""
        with self._lock:
            now = time.monotonic()
            self._level = max(0.0, self._level - (now - self._drained_at) * self.rate)
            self._drained_at = now
            if self._level + 1 > self.burst:
                return False
            self._level += 1
            return True

    def _take_fault(self) -> tuple[str, int] | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    # --- serving ------------------------------------------------------------------------------

    def start(self, host: str = "127.0.0.1", port: int = 0) -> "ShopEmulator":
        """Serve the API on a background thread (port 0: any free port)."""
        self._server = BackgroundServer(_Handler, host=host, port=port, emulator=self, name="shop-emulator").start()
        return self

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the shop is not started")
        return self._server.base_url

    def close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


class _Handler(BaseHTTPRequestHandler):
    server: EmulatorHTTPServer
    protocol_version = "HTTP/1.1"

    @property
    def shop(self) -> ShopEmulator:
        shop: ShopEmulator = self.server.emulator
        return shop

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:  # quiet: tests and the demo print their own
        pass

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        shop = self.shop
        with shop._lock:
            shop.requests += 1
        if not shop._allowed():
            with shop._lock:
                shop.rate_limited += 1
            self._send(429, {"error": "rate_limited", "message": f"at most {shop.rate:g} requests per second"},
                       {"Retry-After": "1"})
            return
        fault = shop._take_fault()
        if fault and fault[0] == "status":
            self._send(fault[1], {"error": "unavailable", "message": "the shop is being updated, try again"})
            return
        if fault and fault[0] == "garble":
            self._send_raw(200, b"<html><body><h1>Shop</h1></body></html>", "text/html; charset=utf-8")
            return
        status, payload, headers = shop.handle(method, self.path, self.headers, body)
        if fault and fault[0] == "drop":
            self.close_connection = True  # done, but the answer never leaves
            return
        self._send(status, payload, headers)

    def _send(self, status: int, payload: dict[str, Any], headers: Mapping[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload, ensure_ascii=False, default=str).encode(),
                       "application/json; charset=utf-8", headers)

    def _send_raw(self, status: int, data: bytes, kind: str, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


# --- answers ---------------------------------------------------------------------------------------

def _customer_json(row: dict[str, Any]) -> dict[str, Any]:
    if row["deleted"]:
        return {"id": row["id"], "deleted": True, "updated_at": _iso(row["updated_at"])}
    return {"id": row["id"], "name": row["name"], "phones": list(row["phones"]), "emails": list(row["emails"]),
            "birthday": row["birthday"], "telegram_chat_id": row["telegram_chat_id"],
            "created_at": _iso(row["created_at"]), "updated_at": _iso(row["updated_at"])}


def _order_json(row: dict[str, Any]) -> dict[str, Any]:
    if row["deleted"]:
        return {"id": row["id"], "deleted": True, "updated_at": _iso(row["updated_at"])}
    return {"id": row["id"], "customer_id": row["customer_id"], "total": f"{row['total']:.2f}",
            "currency": row["currency"], "status": row["status"], "promo_code": row["promo_code"],
            "created_at": _iso(row["created_at"]), "paid_at": _iso(row["paid_at"]),
            "cancelled_at": _iso(row["cancelled_at"]), "updated_at": _iso(row["updated_at"])}


def _coupon_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "code": row["code"], "discount_percent": str(row["discount_percent"]),
            "expires_at": _iso(row["expires_at"]), "customer_id": row["customer_id"], "max_uses": row["max_uses"],
            "uses": row["uses"], "min_total": None if row["min_total"] is None else f"{row['min_total']:.2f}"}


def _int(query: Mapping[str, str], key: str, default: int, low: int, high: int | None = None) -> int:
    raw = query.get(key)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) < low or (high is not None and int(raw) > high):
        limits = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise ApiError(400, "bad_request", f"{key} must be a whole number {limits}")
    return int(raw)


def _moment(raw: str, key: str) -> dt.datetime:
    try:
        # A "+" written unencoded in a query string arrives as a space.
        moment = dt.datetime.fromisoformat(raw.strip().replace(" ", "+").replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, "bad_request", f"{key} must be an ISO 8601 time with an offset") from None
    if moment.tzinfo is None:
        raise ApiError(400, "bad_request", f"{key} must be an ISO 8601 time with an offset")
    return moment


def _list(table: dict[int, dict[str, Any]], render: Callable[[dict[str, Any]], dict[str, Any]],
          query: Mapping[str, str]) -> dict[str, Any]:
    """Customers or orders: by `ids`, by id after `after_id` (live only), or changed since `updated_since`."""
    limit = _int(query, "limit", 100, 1, MAX_LIMIT)
    if "ids" in query:
        ids = [i for i in query["ids"].split(",") if i.strip()]
        if len(ids) > 100 or not all(i.strip().isdigit() for i in ids):
            raise ApiError(400, "bad_request", "ids must be at most 100 comma-separated ids")
        rows = [table[int(i)] for i in ids if int(i) in table and not table[int(i)]["deleted"]]
        return {"items": [render(r) for r in rows], "next_after_id": None}
    after = _int(query, "after_id", 0, 0)
    if "updated_since" in query:
        since = _moment(query["updated_since"], "updated_since")
        rows = sorted((r for r in table.values() if (r["updated_at"], r["id"]) > (since, after)),
                      key=lambda r: (r["updated_at"], r["id"]))
    else:
        rows = sorted((r for r in table.values() if r["id"] > after and not r["deleted"]), key=lambda r: r["id"])
    page, more = rows[:limit], len(rows) > limit
    answer: dict[str, Any] = {"items": [render(r) for r in page],
                              "next_after_id": page[-1]["id"] if more else None}
    if "updated_since" in query:
        answer["next_updated_since"] = _iso(page[-1]["updated_at"]) if more else None
    return answer


def _ids(table: dict[int, dict[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    limit = _int(query, "limit", 1000, 1, MAX_IDS_LIMIT)
    after = _int(query, "after_id", 0, 0)
    ids = sorted(i for i, r in table.items() if i > after and not r["deleted"])
    return {"items": ids[:limit], "next_after_id": ids[limit - 1] if len(ids) > limit else None}


def _coupon_from(data: dict[str, Any], customers: dict[int, dict[str, Any]]) -> dict[str, Any]:
    unknown = set(data) - {"code", "discount_percent", "expires_at", "customer_id", "max_uses", "min_total"}
    if unknown:
        raise ApiError(422, "invalid", f"unknown field {sorted(unknown)[0]}")
    code = str(data.get("code") or "").strip().upper()
    if not CODE.match(code):
        raise ApiError(422, "invalid", "code: 3 to 64 Latin letters, digits, - or _")
    try:
        discount = Decimal(str(data.get("discount_percent")))
    except InvalidOperation:
        discount = Decimal(-1)
    if not Decimal(0) < discount <= Decimal(100):
        raise ApiError(422, "invalid", "discount_percent: more than 0 and at most 100")
    expires = _moment(str(data.get("expires_at") or ""), "expires_at")
    customer = data.get("customer_id")
    if customer is not None and (not isinstance(customer, int) or customer not in customers):
        raise ApiError(422, "invalid", f"customer_id: no customer {customer}")
    max_uses = data.get("max_uses", 1)
    if not isinstance(max_uses, int) or isinstance(max_uses, bool) or max_uses < 1:
        raise ApiError(422, "invalid", "max_uses: a whole number from 1")
    min_total = data.get("min_total")
    try:
        min_total = None if min_total is None else Decimal(str(min_total))
    except InvalidOperation:
        raise ApiError(422, "invalid", "min_total: an amount, e.g. \"1000.00\"") from None
    return {"code": code, "discount_percent": discount, "expires_at": expires, "customer_id": customer,
            "max_uses": max_uses, "uses": 0, "min_total": min_total}


# --- for Hub ------------------------------------------------------------------------------------

def start_connected(settings: Settings, *, people: int, first_person: int = 0, seed: int = 1) -> RunningSandbox:
    """`register_sandboxes`: a running shop with these sample people, and Hub connected to it."""
    shop = ShopEmulator(people=people, first_person=first_person, seed=seed).start()
    try:
        save_connection(settings, get_engine(settings.database_url), shop.url, shop.token)
    except BaseException:
        shop.close()
        raise
    return RunningSandbox(NAME, truth=lambda: {str(c): p for c, p in shop.person_of.items()}, close=shop.close)


def serve(*, host: str, port: int, people: int, seed: int, print_fn: Callable[[str], None] = print) -> None:
    """`hub sandbox shop`: serve until Ctrl+C, saying how to connect."""
    shop = ShopEmulator(people=people, seed=seed).start(host, port)
    print_fn(_("Shop emulator: %(customers)s customers, %(orders)s orders (seed %(seed)s)",
               customers=format_number(len(shop.customers)), orders=format_number(len(shop.orders)), seed=seed))
    print_fn(_("Connect Hub:   %(command)s", command=f"hub connect shop --url {shop.url} --token {shop.token}"))
    serve_until_interrupted(shop.close)
