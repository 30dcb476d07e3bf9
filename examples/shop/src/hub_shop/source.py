"""The shop as a Hub source: customers and orders in, full and incremental, by id on request.

A full read pages by id (`after_id`), so a resumed full read starts after the
last id Hub wrote; its page cursors are those ids. An incremental read pages
by `(updated_at, id)` from the shop's own clock, so nothing is missed when two
records change in the same instant; its cursors are ``UPDATED_AT|ID``. The
cursor a full read hands over (`checkpoint`) is the shop's time when the full
read began, so whatever changed during it comes with the next incremental run.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation
from typing import Any, Iterator, Sequence

from hub.api import ContactRecord, Deletion, OrderRecord, Page, Settings

from hub_shop.client import NAME, ShopClient, ShopError, client_for, option

ENDPOINTS = {"contacts": "/api/customers", "orders": "/api/orders"}
# The shop's order statuses and what they mean to Hub; anything else reaches Hub as it is
# and is reported there as an order with an unknown status.
STATUSES = {"paid": "won", "cancelled": "lost", "refunded": "lost", "new": "open"}
CHAT_ATTRIBUTE = "telegram_chat_id"
FETCH_BATCH = 100  # ids per `?ids=` request
IDS_BATCH = 5000  # ids per /ids page
EPOCH = "1970-01-01T00:00:00+00:00"


class ShopSource:
    """`hub sync shop`: reads the connection stored by `hub connect shop` when it first needs it."""

    name = NAME

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: ShopClient | None = None

    @property
    def client(self) -> ShopClient:
        if self._client is None:
            self._client = client_for(self.settings)
        return self._client

    def entities(self) -> Sequence[str]:
        return ("contacts", "orders")  # customers first, so orders find them

    def checkpoint(self, entity: str) -> str | None:
        """The shop's clock now: the first incremental read after this full read starts there."""
        status = self.client.get("/api/status")
        server_time = status.get("server_time")
        _moment(server_time, "/api/status", "server_time", required=True)
        return f"{server_time}|0"

    def read(self, entity: str, cursor: str | None, full: bool) -> Iterator[Page]:
        path = _endpoint(entity)
        limit = int(option(self.settings, "page_size"))
        if full:
            after = _full_cursor(cursor)
            while True:
                data = self.client.get(path, {"after_id": after, "limit": limit})
                items = _items(data, path)
                if not items:
                    return
                after = items[-1]["id"]
                yield Page([self._record(entity, item, path) for item in items], str(after))
                if data.get("next_after_id") is None:
                    return
        else:
            since, after = _incremental_cursor(cursor)
            while True:
                data = self.client.get(path, {"updated_since": since, "after_id": after, "limit": limit})
                items = _items(data, path)
                if not items:
                    return
                last = items[-1]
                _moment(last.get("updated_at"), path, f"item {last['id']}: updated_at", required=True)
                since, after = str(last["updated_at"]), last["id"]
                yield Page([self._record(entity, item, path) for item in items], f"{since}|{after}")
                if data.get("next_after_id") is None:
                    return

    def fetch(self, entity: str, ids: Sequence[str]) -> list[Any]:
        """The records with these ids that the shop still holds (for an event that names only ids)."""
        path = _endpoint(entity)
        wanted = [str(_id(i, path)) for i in ids]
        records: list[Any] = []
        for start in range(0, len(wanted), FETCH_BATCH):
            data = self.client.get(path, {"ids": ",".join(wanted[start:start + FETCH_BATCH])})
            records += [r for r in (self._record(entity, item, path) for item in _items(data, path))
                        if not isinstance(r, Deletion)]
        return records

    def live_ids(self, entity: str) -> Iterator[list[str]]:
        """Every id the shop still holds, for `hub sync shop --reconcile`."""
        path = _endpoint(entity) + "/ids"
        after = 0
        while True:
            data = self.client.get(path, {"after_id": after, "limit": IDS_BATCH})
            ids = [_id(i, path) for i in data.get("items") or []]
            if ids:
                yield [str(i) for i in ids]
                after = ids[-1]
            if not ids or data.get("next_after_id") is None:
                return

    def stats(self) -> dict[str, Any]:
        """Requests and 429 answers, shown in the sync report like the CRM sources' figures."""
        stats = self._client.stats if self._client else {"requests": 0, "rate_limited": 0}
        return {"requests": stats["requests"], "rate_limited": stats["rate_limited"]}

    def _record(self, entity: str, item: dict[str, Any], path: str) -> Any:
        if entity == "contacts":
            return customer_record(item, path)
        return order_record(item, path)


# --- the shop's JSON → Hub's records --------------------------------------------------------------

def customer_record(item: dict[str, Any], path: str = ENDPOINTS["contacts"]) -> ContactRecord | Deletion:
    """One customer as Hub holds them; phones and emails go in exactly as the shop has them.

    The Telegram chat id is always written, empty when the shop has none, so a
    customer who stops the shop's bot stops getting messages there.
    """
    external_id = str(_id(item.get("id"), path))
    where = f"customer {external_id}"
    if item.get("deleted"):
        return Deletion(NAME, "contact", external_id)
    first, last = split_name(item.get("name"))
    chat = item.get("telegram_chat_id")
    if chat is not None and (isinstance(chat, bool) or not isinstance(chat, (int, str)) or not str(chat).strip()):
        raise ShopError(f"{path}: {where}: telegram_chat_id {chat!r} is not a chat id")
    return ContactRecord(
        source=NAME, external_id=external_id, first_name=first, last_name=last,
        phones=_texts(item.get("phones"), path, f"{where}: phones"),
        emails=_texts(item.get("emails"), path, f"{where}: emails"),
        birthday=_date(item.get("birthday"), path, f"{where}: birthday"),
        attributes={CHAT_ATTRIBUTE: str(chat).strip() if chat is not None else None},
        created_at=_moment(item.get("created_at"), path, f"{where}: created_at"),
        updated_at=_moment(item.get("updated_at"), path, f"{where}: updated_at"),
    )


def order_record(item: dict[str, Any], path: str = ENDPOINTS["orders"]) -> OrderRecord | Deletion:
    """One order: paid → won (closed when paid), cancelled/refunded → lost, new → open."""
    external_id = str(_id(item.get("id"), path))
    where = f"order {external_id}"
    if item.get("deleted"):
        return Deletion(NAME, "order", external_id)
    raw_status = str(item.get("status") or "")
    status = STATUSES.get(raw_status, raw_status)
    if status == "won":
        closed = _moment(item.get("paid_at"), path, f"{where}: paid_at")
    elif status == "lost":
        closed = _moment(item.get("cancelled_at") or item.get("updated_at"), path, f"{where}: cancelled_at")
    else:
        closed = None
    customer = item.get("customer_id")
    try:
        amount: Any = Decimal(str(item.get("total")))
    except InvalidOperation:
        amount = str(item.get("total"))  # Hub reports the order as having no valid amount
    return OrderRecord(
        source=NAME, external_id=external_id,
        contact_external_id=str(_id(customer, path)) if customer is not None else None,
        amount=amount, currency=str(item.get("currency") or "RUB"), status=status,  # type: ignore[arg-type]
        closed_at=closed, created_at=_moment(item.get("created_at"), path, f"{where}: created_at"),
        promo_code=(str(item.get("promo_code") or "").strip() or None),
    )


def split_name(name: Any) -> tuple[str | None, str | None]:
    """"Анна Иванова" → ("Анна", "Иванова"): the shop keeps one name field, first name first.

    A wrong split costs nothing but looks: Hub never merges people by name.
    """
    words = str(name or "").split()
    if not words:
        return None, None
    return words[0], " ".join(words[1:]) or None


# --- checking what the shop sent ---------------------------------------------------------------

def _endpoint(entity: str) -> str:
    try:
        return ENDPOINTS[entity]
    except KeyError:
        raise ShopError(f"the shop has no entity {entity!r} (it has {', '.join(ENDPOINTS)})") from None


def _items(data: dict[str, Any], path: str) -> list[dict[str, Any]]:
    items = data.get("items")
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise ShopError(f"{path}: the answer has no list of objects under \"items\"")
    for item in items:
        _id(item.get("id"), path)
    return items


def _id(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise ShopError(f"{path}: {value!r} is not an id (ids are positive whole numbers)")
    return int(value)


def _texts(value: Any, path: str, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ShopError(f"{path}: {what}: expected a list of texts, got {type(value).__name__}")
    return [str(v) for v in value if v is not None and str(v).strip()]


def _moment(value: Any, path: str, what: str, *, required: bool = False) -> dt.datetime | None:
    """An ISO 8601 time; one without an offset is taken as UTC, as the protocol says."""
    if value in (None, ""):
        if required:
            raise ShopError(f"{path}: {what} is missing")
        return None
    try:
        moment = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ShopError(f"{path}: {what}: {value!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


def _date(value: Any, path: str, what: str) -> dt.date | None:
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise ShopError(f"{path}: {what}: {value!r} is not a date (YYYY-MM-DD)") from None


def _full_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    if not cursor.isdigit():
        raise ShopError(f"cannot resume a full read of the shop from {cursor!r}; run `hub sync shop --full`")
    return int(cursor)


def _incremental_cursor(cursor: str | None) -> tuple[str, int]:
    if not cursor:
        return EPOCH, 0
    moment, _, after = cursor.rpartition("|")
    if not moment or not after.isdigit():
        raise ShopError(f"cannot continue reading the shop from {cursor!r}; run `hub sync shop --full`")
    _moment(moment, "the stored cursor", "time", required=True)
    return moment, int(after)
