"""POST /api/v1/orders: purchases from a shop, a 1C or a script, kept like CRM deals.

An order is upserted by its (source, external_id) key, as sync.write_orders
upserts deals, and goes through the same refuse_orders hook; the contacts'
stats (orders_count, revenue, last order, so the lifecycle) are recomputed
for every contact the batch touched, and a promo code an order carries is
redeemed by the same scheduled pass that redeems codes on synced deals
(workflows: redeem_from_orders reads every order's promo_code). Unlike a
CRM deal, an API order names its contact directly (id, reference, phone or
email): one whose contact Hub cannot find is refused, never kept ownerless.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Connection, select

from hub import events, identity, normalize, sync
from hub.db import MAX_ROW_ID, among, chunks, utcnow
from hub.hookspecs import hookimpl
from hub.i18n import gettext
from hub.models import Order
from hub.plugins import get_pm
from hub.records import OrderRecord
from hub.webapi.contacts import reserved_detail, reserved_source
from hub.webapi.endpoints import JSON, Call, Endpoint
from hub.webapi.schemas import DATE_TIME, ITEM_PROBLEMS, SOURCE, items_of, line, one_or_batch

orders_t = Order.__table__
DEFAULT_SOURCE = "api"
MAX_BATCH = 1000
MAX_AMOUNT = 99_999_999_999  # what Money (NUMERIC(14, 2)) holds, whole

ORDER_IN: JSON = {
    "type": "object", "additionalProperties": False, "required": ["external_id", "amount", "status"],
    "properties": {
        "source": {**SOURCE, "description": "The system the order comes from (default: api)"},
        "external_id": line(200, "The order's id in source: sending it again updates the same order",
                            min_length=1),
        "contact_id": {"type": "integer", "minimum": 1, "maximum": MAX_ROW_ID,
                       "description": "The contact's id in Hub (one merged away finds the survivor)"},
        "reference": {"type": "object", "additionalProperties": False, "required": ["source", "external_id"],
                    "description": "The contact by its reference, (as sent to POST /contacts)",
                    "properties": {"source": SOURCE, "external_id": line(200, min_length=1)}},
        "phone": line(100, "The contact by a phone of their own"),
        "email": line(320, "The contact by an email of their own"),
        "amount": {"type": ["number", "string"], "minimum": 0, "maximum": MAX_AMOUNT,
                   "pattern": "^\\d{1,11}(\\.\\d{1,20})?$", "maxLength": 32, "examples": ["4200.50"],
                   "description": "A number or a decimal string («4200.50»), in whole kopecks: an amount with "
                                  "a fraction of a kopeck (1.005 or «1.005») is refused, never rounded"},
        "currency": {"type": "string", "pattern": "^[A-Za-z]{3}$", "examples": ["RUB"],
                     "description": "ISO 4217 (default RUB)"},
        "status": {"enum": ["won", "lost", "open"], "description": "Only won orders count in the stats"},
        "closed_at": {**DATE_TIME, "description": "When it was paid or lost (default: created_at, or now)"},
        "created_at": {**DATE_TIME, "description": "When it was placed (default: now)"},
        "promo_code": line(64, "A promo code the customer used; redeemed as codes on CRM deals are"),
        "title": line(300),
    },
}
ITEM_ANSWER: JSON = {
    "type": "object", "required": ["index", "order_id", "status", "problems"],
    "properties": {
        "index": {"type": "integer"},
        "order_id": {"type": ["integer", "null"], "description": "null when refused"},
        "status": {"enum": ["created", "updated", "refused"]},
        "contact_id": {"type": ["integer", "null"]},
        "problems": ITEM_PROBLEMS,
    },
}
DESCRIPTION = """\
Upsert one order, or `{"orders": [...]}` with up to 1,000, by (`source`, `external_id`): sending an order
again updates it. Name its contact by `contact_id`, by `reference` ({source, external_id}, (as sent to POST /contacts)),
by `phone` or by `email` (a value of the person's own; the first of these given is used). An order whose
contact Hub cannot find is `refused` with a problem naming the field: send the contact first. A phone or
email several people share (an office switchboard) names nobody: such an order is refused too; name the
contact by `contact_id` or `reference`. `amount` is in whole kopecks, as a number or a string: one with a
fraction of a kopeck (1.005 or "1.005") is refused, never rounded. Won orders
count in the contact's orders_count, revenue and lifecycle at once; a `promo_code` is redeemed by the
next scheduled pass, as codes on CRM deals are. Two items with the same key in one batch: the last one
is kept, both answer the same order_id.
"""


def _problem(field: str, detail: str) -> JSON:
    return {"field": field or "/", "detail": detail}


def _moment(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    moment = dt.datetime.fromisoformat(value.replace(" ", "T", 1))
    return moment.astimezone(dt.timezone.utc)


class FractionOfKopeck(ValueError):
    """An amount written with more than two decimal places."""


def _amount(value: Any) -> Decimal:
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidOperation
    exact = Decimal(str(value))
    if not exact.is_finite() or exact < 0 or exact > MAX_AMOUNT:
        raise InvalidOperation
    amount = exact.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if amount != exact:  # a number and its string refused alike: money is not rounded behind the sender's back
        raise FractionOfKopeck
    return amount


def post_orders(call: Call) -> JSON:
    """Upsert an order or a batch; each item answered with its order and what happened."""
    body, conn, now = call.body, call.conn, utcnow()
    items, base = (body["orders"], "/orders") if "orders" in body else ([body], "")
    answers: list[JSON] = []
    ready: list[tuple[int, JSON, str]] = []  # (index, row, which field named the contact)
    ids: set[int] = set()
    refs: set[tuple[str, str]] = set()
    values: dict[str, set[str]] = {normalize.PHONE: set(), normalize.EMAIL: set()}
    for index, item in enumerate(items):
        where = f"{base}/{index}" if base else ""
        found: list[JSON] = []
        answers.append({"index": index, "order_id": None, "status": "refused", "contact_id": None,
                        "problems": found})
        try:
            amount = _amount(item["amount"])
        except FractionOfKopeck:
            found.append(_problem(f"{where}/amount", gettext(
                "a fraction of a kopeck: write at most two decimal places, e.g. 4200.50")))
            continue
        except (InvalidOperation, ValueError):
            found.append(_problem(f"{where}/amount", gettext("not an amount of money")))
            continue
        moments: dict[str, dt.datetime | None] = {}
        for name in ("created_at", "closed_at"):
            try:
                moments[name] = _moment(item.get(name))
            except (ValueError, OverflowError):
                found.append(_problem(f"{where}/{name}", gettext("not a real date and time")))
        if found:
            continue
        created_at = moments["created_at"] or now
        closed_at = moments["closed_at"] or (created_at if item["status"] != "open" else None)
        source = item.get("source") or DEFAULT_SOURCE
        if reserved_source(source):
            found.append(_problem(f"{where}/source", reserved_detail(source)))
            continue
        row = {"source": source, "external_id": item["external_id"], "contact_external_id": None,
               "contact_id": None, "amount": amount, "currency": (item.get("currency") or "RUB").upper(),
               "status": item["status"], "title": (item.get("title") or "").strip() or None,
               "promo_code": (item.get("promo_code") or "").strip() or None, "closed_at": closed_at,
               "created_at": created_at, "updated_at": now}
        if "contact_id" in item:
            item["contact_id"] = int(item["contact_id"])  # 290.0 is an integer to JSON Schema too
            ids.add(item["contact_id"])
            ready.append((index, row, "contact_id"))
        elif "reference" in item:
            ref = (item["reference"]["source"], item["reference"]["external_id"])
            refs.add(ref)
            if ref[0] == source:  # the source's own contact id: what the erasure hook and later syncs go by
                row["contact_external_id"] = ref[1]
            ready.append((index, row, "reference"))
        elif "phone" in item or "email" in item:
            kind = normalize.PHONE if "phone" in item else normalize.EMAIL
            read = (normalize.phones(item["phone"], call.settings.default_region) if kind == normalize.PHONE
                    else normalize.emails(item["email"]))
            valid = [i.value for i in read if i.valid]
            if len(valid) != 1:
                found.append(_problem(f"{where}/{kind}", gettext("not a valid phone number") if kind == "phone"
                                      else gettext("not an email address Hub can read")))
                continue
            values[kind].add(valid[0])
            row["_value"] = valid[0]
            ready.append((index, row, kind))
        else:
            found.append(_problem(where, gettext("name the order's contact: contact_id, reference, phone or email")))

    asked: list[identity.ContactKey] = sorted(ids) + sorted(refs) + sorted(v for vs in values.values() for v in vs)
    named = dict(zip(asked, identity.find_contacts(conn, asked), strict=True))
    unnamed = [k for k in asked if isinstance(k, str) and named[k] is None]
    shared = {k for k, is_shared in zip(unnamed, identity.shared_keys(conn, unnamed), strict=True) if is_shared}
    kept: list[tuple[int, JSON]] = []
    for index, row, how in ready:
        item = items[index]
        if how == "contact_id":
            cid = named.get(item["contact_id"])
        elif how == "reference":
            cid = named.get((item["reference"]["source"], item["reference"]["external_id"]))
        else:
            value = row.pop("_value")
            cid = named.get(value)
            if value in shared:
                answers[index]["problems"].append(_problem(f"{base}/{index}/{how}" if base else f"/{how}",
                                                           events.shared_detail(how)))
                continue
        if cid is None:
            where = f"{base}/{index}" if base else ""
            answers[index]["problems"].append(_problem(f"{where}/{how}", gettext(
                "no contact found by this %(field)s; send the contact first (POST /api/v1/contacts)",
                field=how)))
            continue
        row["contact_id"] = cid
        kept.append((index, row))

    if kept:
        records = [OrderRecord(row["source"], row["external_id"], row["contact_external_id"], row["amount"],
                               row["currency"], row["status"], row["closed_at"], row["created_at"],
                               row["promo_code"], row["title"]) for _, row in kept]
        refused: set[int] = set()
        for answer in get_pm().hook.refuse_orders(conn=conn, settings=call.settings, orders=records):
            refused.update(answer or ())
        for n in sorted(refused):
            index = kept[n][0]
            answers[index]["problems"].append(_problem(f"{base}/{index}" if base else "", gettext(
                "refused: Hub keeps this person's orders out (they asked to be erased)")))
        kept = [pair for n, pair in enumerate(kept) if n not in refused]
    if kept:
        _write(conn, kept, answers)
    return {"items": answers}


def _write(conn: Connection, kept: list[tuple[int, JSON]], answers: list[JSON]) -> None:
    """Upsert the rows by (source, external_id) and recompute the stats of every contact they touch."""
    last = {(row["source"], row["external_id"]): row for _, row in kept}  # the last of a key in the batch wins
    by_source: dict[str, list[str]] = defaultdict(list)
    for source, external_id in last:
        by_source[source].append(external_id)
    held: dict[tuple[str, str], tuple[int, int | None]] = {}
    for source, keys in by_source.items():
        for part in chunks(sorted(keys), identity.LOOKUP_CHUNK):
            for oid, ext, cid in conn.execute(select(orders_t.c.id, orders_t.c.external_id, orders_t.c.contact_id)
                                              .where(orders_t.c.source == source,
                                                     among(conn, orders_t.c.external_id, part))):
                held[(source, ext)] = (oid, cid)
    touched = {row["contact_id"] for row in last.values()} | {cid for _, cid in held.values() if cid is not None}
    sync.upsert_orders(conn, list(last.values()))
    ids: dict[tuple[str, str], int] = {}
    for source, keys in by_source.items():
        for part in chunks(sorted(keys), identity.LOOKUP_CHUNK):
            for oid, ext in conn.execute(select(orders_t.c.id, orders_t.c.external_id).where(
                    orders_t.c.source == source, among(conn, orders_t.c.external_id, part))):
                ids[(source, ext)] = oid
    seen: set[tuple[str, str]] = set()
    for index, row in kept:
        key = (row["source"], row["external_id"])
        answers[index].update(order_id=ids[key], contact_id=last[key]["contact_id"],
                              status="updated" if key in held or key in seen else "created")
        seen.add(key)
    identity.refresh_stats(conn, touched)


@hookimpl
def register_api_endpoints(register: Any) -> None:
    register(Endpoint("POST", "/orders", post_orders, "orders:write", "Upsert orders", "orders",
                      description=DESCRIPTION, body=one_or_batch("orders", ORDER_IN, limit=MAX_BATCH),
                      answer=items_of(ITEM_ANSWER)))
