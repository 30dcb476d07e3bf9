"""Personal promo codes: issued by a workflow step, written to the CRM, redeemed by orders.

A code is unique, made of characters nobody misreads on a phone screen or over
the phone (no 0/O, no 1/I/L), with the workflow's prefix: BACK-7K2QXM. It is
issued once per run and step (a retried step finds the code it issued), valid
until the end of its last day in HUB_TIMEZONE, and, when a CRM field is
configured, written to the contact's card in every CRM that holds them.

A code is redeemed when a synced order carries it (each CRM plugin says which
of its deal fields holds the code: `[bitrix24] promo_field`, for example), or
by hand with `hub promo redeem CODE`. Redemption is found by the scheduler's
tick, which reads orders changed since its last look.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import secrets
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Sequence
from zoneinfo import ZoneInfo

from babel.dates import format_date as babel_date
from sqlalchemy import Connection, Engine, select, update

from hub.api import (N_, Order, Settings, WriteBackError, bulk_insert, chunks, end_of_local_day, format_duration,
                     format_length, format_moment, format_percent, gettext, insert_for, local_time,
                     publish_webhook_event, use_language, utcnow, write_back)
from workflows import config
from workflows.models import PromoCode, WorkflowState
from workflows.steps import Checking, FormField, Options, Outcome, RunInfo, Step, StepCall, StepError

log = logging.getLogger(__name__)
codes_t = PromoCode.__table__
orders_t = Order.__table__
state_t = WorkflowState.__table__

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"  # no 0/O, no 1/I/L
DEFAULT_LENGTH = 6
_PREFIX = re.compile(r"^[A-Z0-9]{1,10}$")
REDEMPTION_STATE = "promo.redemption"
# Orders changed this long before the last look are read again: a sync still
# committing then (or a clock a little behind) may have written them since.
REDEMPTION_MARGIN = dt.timedelta(minutes=10)


class PromoError(ValueError):
    """A code that cannot be redeemed; the message says why."""


def new_code(prefix: str | None, length: int = DEFAULT_LENGTH) -> str:
    body = "".join(secrets.choice(ALPHABET) for _ in range(length))
    return f"{prefix}-{body}" if prefix else body


def normalize(code: str) -> str:
    """How a typed code is compared: trimmed, upper case."""
    return code.strip().upper()


def as_variables(settings: Settings, row: Any) -> dict[str, Any]:
    """A code as templates see it: {{ promo.code }}, {{ promo.discount }}%, {{ promo.expires_at|date }}."""
    discount = row.discount
    if isinstance(discount, Decimal) and discount == discount.to_integral_value():
        discount = int(discount)
    return {"id": row.id, "code": row.code, "discount": discount,
            "expires_at": local_time(settings, row.expires_at)}


def for_runs(conn: Connection, settings: Settings, runs: Iterable[RunInfo]) -> dict[int, dict[str, Any]]:
    """The code each run holds: the latest one it issued, else the one its trigger was about."""
    runs = list(runs)
    out: dict[int, dict[str, Any]] = {}
    c = codes_t.c
    columns = (c.id, c.run_id, c.code, c.discount, c.expires_at)
    for part in chunks([r.id for r in runs], 1000):
        for row in conn.execute(select(*columns).where(c.run_id.in_(part)).order_by(c.run_id, c.step)):
            out[row.run_id] = as_variables(settings, row)
    by_code = {r.id: int(r.context["promo_id"]) for r in runs if r.id not in out and r.context.get("promo_id")}
    if by_code:
        rows = {row.id: row for row in conn.execute(select(*columns).where(c.id.in_(set(by_code.values()))))}
        for run_id, code_id in by_code.items():
            if code_id in rows:
                out[run_id] = as_variables(settings, rows[code_id])
    return out


class PromoCodeStep(Step):
    """`promo_code: {discount: 15%, valid_for: 14d, prefix: BACK}`: a personal code for this run."""

    name = "promo_code"
    kind_title = N_("Personal promo code")
    kind_summary = N_("Issues the contact a personal promo code with a discount and an expiry date.")
    batched = True
    form = (FormField("discount", "percent", N_("Discount"), required=True, placeholder="15%"),
            FormField("valid_for", "duration", N_("Valid for"), required=True),
            FormField("prefix", "text", N_("Code prefix"), placeholder="BACK",
                      hint=N_("Up to 10 Latin letters and digits; the code starts with it.")),
            FormField("length", "integer", N_("Code length"), placeholder="8"),
            FormField("crm_field", "crm_field", N_("Write the code to the CRM field"), placeholder="promo_code"))

    def __init__(self, options: Any, checking: Checking) -> None:
        opts = Options(options, ("discount", "valid_for", "prefix", "length", "crm_field"),
                       example="{discount: 15%, valid_for: 14d, prefix: BACK}")
        self.discount = _discount(opts.require("discount"))
        opts.require("valid_for")
        valid_for = opts.duration("valid_for")
        assert valid_for is not None  # required just above
        self.valid_for = valid_for
        prefix = opts.get("prefix")
        if prefix is not None and (not isinstance(prefix, str) or not _PREFIX.match(prefix.upper())):
            raise StepError(gettext("%(value)s is not a prefix: use up to 10 Latin letters and digits, e.g. BACK",
                                    value=repr(prefix)), "prefix")
        self.prefix = prefix.upper() if prefix else None
        length = opts.get("length", DEFAULT_LENGTH)
        if not isinstance(length, int) or isinstance(length, bool) or not 4 <= length <= 16:
            raise StepError(gettext("%(value)s: give a whole number from 4 to 16", value=repr(length)), "length")
        self.length = length
        field = opts.get("crm_field")
        if field is not None and (not isinstance(field, str) or not field.strip()):
            raise StepError(gettext("expected a field name, e.g. promo_code"), "crm_field")
        self.crm_field = field.strip() if field else None  # else [workflows] promo_crm_field, read when issuing
        checking.promo = True

    def label(self) -> str:
        return f"promo_code {self.discount:g}% {format_duration(self.valid_for)}"

    def phrase(self) -> str:
        return gettext("Promo code %(discount)s for %(length)s", discount=format_percent(float(self.discount) / 100),
                       length=format_length(self.valid_for))

    def describe(self) -> dict[str, Any]:
        return {"discount": float(self.discount), "valid_for": format_duration(self.valid_for),
                "prefix": self.prefix}

    def write(self, conn: Connection, calls: list[StepCall], prepared: list[Any]) -> list[Outcome]:
        if not calls:
            return []
        now, settings, index = calls[0].now, calls[0].settings, calls[0].index
        expires = end_of_local_day(now + self.valid_for, settings.tz)
        crm_field = self.crm_field or config.load(settings).promo_crm_field
        issued: dict[int, Any] = {}
        for _attempt in range(5):  # a new random code can collide with an old one: draw again
            missing = [c for c in calls if c.run.id not in issued]
            if not missing:
                break
            bulk_insert(conn, codes_t, [
                {"code": new_code(self.prefix, self.length), "prefix": self.prefix, "discount": self.discount,
                 "contact_id": c.run.contact_id, "workflow_id": c.run.workflow_id, "run_id": c.run.id,
                 "step": index, "created_at": now, "expires_at": expires, "crm_field": crm_field}
                for c in missing], ignore_conflicts=True)
            ids = [c.run.id for c in missing]
            for part in chunks(ids, 1000):
                rows = conn.execute(select(codes_t.c.run_id, codes_t.c.id, codes_t.c.code)
                                    .where(codes_t.c.run_id.in_(part), codes_t.c.step == index))
                issued.update({r.run_id: r for r in rows})
        out = []
        for c in calls:
            row = issued.get(c.run.id)
            out.append(Outcome.done({"code": row.code, "promo_id": row.id}) if row is not None
                       else Outcome.failed("could not draw a unique promo code"))
        return out


def _discount(raw: Any) -> Decimal:
    text = str(raw).strip()
    if not text.endswith("%"):
        raise StepError(gettext("%(value)s: write the discount in per cent, e.g. 15%%", value=repr(raw)), "discount")
    try:
        value = Decimal(text[:-1].strip().replace(",", "."))
    except InvalidOperation:
        raise StepError(gettext("%(value)s is not a discount; write it like 15%%", value=repr(raw)),
                        "discount") from None
    if not Decimal(0) < value <= Decimal(100):
        raise StepError(gettext("%(value)s: a discount is more than 0%% and at most 100%%", value=repr(raw)),
                        "discount")
    return value


# --- redemption ---------------------------------------------------------------------------

def redeem(engine: Engine, code: str, *, by: str = "cli", order_id: int | None = None, force: bool = False,
           now: dt.datetime | None = None, tz: ZoneInfo | str = "UTC") -> dict[str, Any]:
    """Mark a code used; refuses an unknown, already used or (unless `force`) expired code.

    `tz` is the shop's time zone: a refusal names the moment the code expired in it,
    as `hub promo show` does (the UTC date alone can be the day before).
    """
    now = now or utcnow()
    wanted = normalize(code)
    with engine.begin() as conn:
        # A write first: on SQLite the transaction then holds the lock for the read that follows.
        changed = conn.execute(update(codes_t).where(
            codes_t.c.code == wanted, codes_t.c.redeemed_at.is_(None),
            (codes_t.c.expires_at >= now) if not force else codes_t.c.id.is_not(None))
            .values(redeemed_at=now, redeemed_by=by, order_id=order_id)).rowcount
        row = conn.execute(select(codes_t).where(codes_t.c.code == wanted)).first()
        if changed and row is not None:
            _published(conn, row)
    if row is None:
        raise PromoError(gettext("no promo code %(code)s", code=repr(code.strip())))
    if not changed:
        if row.redeemed_at is not None:
            how = gettext("order #%(order)s", order=row.order_id) if row.order_id else row.redeemed_by
            raise PromoError(gettext("promo code %(code)s was already redeemed on %(date)s (%(how)s)", code=row.code,
                                     date=format_moment(row.redeemed_at, tz, zone=True), how=how))
        raise PromoError(gettext("promo code %(code)s expired on %(date)s; redeem it anyway with --force",
                                 code=row.code, date=format_moment(row.expires_at, tz, zone=True)))
    return describe(row)


def describe(row: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    now = now or utcnow()
    status = "redeemed" if row.redeemed_at else ("expired" if row.expires_at < now else "active")
    return {"code": row.code, "status": status, "discount": float(row.discount), "contact_id": row.contact_id,
            "run_id": row.run_id, "expires_at": row.expires_at.isoformat(),
            "redeemed_at": row.redeemed_at.isoformat() if row.redeemed_at else None,
            "order_id": row.order_id, "redeemed_by": row.redeemed_by}


def redeem_from_orders(engine: Engine, *, now: dt.datetime | None = None) -> int:
    """Redeem the codes that orders changed since the last look carry; returns how many."""
    now = now or utcnow()
    with engine.connect() as conn:
        state = conn.execute(select(state_t.c.value).where(state_t.c.name == REDEMPTION_STATE)).scalar()
    since = dt.datetime.fromisoformat(state["since"]) - REDEMPTION_MARGIN if state and state.get("since") else None
    o = orders_t.c
    q = select(o.id, o.source, o.promo_code, o.closed_at, o.created_at).where(
        o.promo_code.is_not(None), o.status != "lost", o.contact_id.is_not(None))
    if since is not None:
        q = q.where(o.updated_at >= since)
    with engine.connect() as conn:
        orders = {normalize(r.promo_code): r for r in conn.execute(q.order_by(o.id)) if r.promo_code.strip()}
    redeemed = 0
    with engine.begin() as conn:
        ins = insert_for(conn, state_t)
        conn.execute(ins.values(name=REDEMPTION_STATE, value={"since": now.isoformat()}, updated_at=now)
                     .on_conflict_do_update(index_elements=["name"], set_={"value": ins.excluded.value,
                                                                          "updated_at": now}))
        for part in chunks(sorted(orders), 500):
            for code_id, code in conn.execute(select(codes_t.c.id, codes_t.c.code).where(
                    codes_t.c.code.in_(part), codes_t.c.redeemed_at.is_(None))).all():
                order = orders[code]
                done = conn.execute(update(codes_t).where(codes_t.c.id == code_id, codes_t.c.redeemed_at.is_(None))
                                    .values(redeemed_at=order.closed_at or order.created_at or now,
                                            order_id=order.id, redeemed_by=f"order:{order.source}")).rowcount
                if done:
                    _published(conn, conn.execute(select(codes_t).where(codes_t.c.id == code_id)).one())
                redeemed += done
    return redeemed


def _published(conn: Connection, row: Any) -> None:
    """promo.redeemed for the webhooks that listen, in the redemption's transaction: ids and facts only."""
    publish_webhook_event(conn, "promo.redeemed", {
        "code": row.code, "contact_id": row.contact_id, "order_id": row.order_id, "workflow_id": row.workflow_id,
        "run_id": row.run_id, "redeemed_at": row.redeemed_at.isoformat() if row.redeemed_at else None},
        contact_id=row.contact_id)


def write_back_pending(engine: Engine, settings: Settings, *, limit: int = 200) -> dict[str, int]:
    """Write issued codes to the CRM field configured for them; one try per code and tick.

    A CRM that refuses (no such field, the contact is in no CRM) is noted on
    the code and not asked again; anything else (a timeout) is tried at the
    next tick. After the field, each CRM that took it gets a comment saying
    what the code is worth and until when, so the manager reads it on the card
    without opening Hub. The field is what redeems: a comment that fails
    leaves the code written and is only logged.
    """
    c = codes_t.c
    with engine.connect() as conn:
        rows = conn.execute(select(c.id, c.code, c.contact_id, c.crm_field, c.discount, c.expires_at).where(
            c.crm_field.is_not(None), c.written_back_at.is_(None), c.writeback_error.is_(None),
            c.contact_id.is_not(None)).order_by(c.id).limit(limit)).all()
    done = {"written": 0, "refused": 0, "later": 0}
    for row in rows:
        values: dict[str, Any]
        try:
            with engine.connect() as conn:
                written = write_back(conn, settings, row.contact_id, "set_field", name=row.crm_field, value=row.code)
            values, key = {"written_back_at": utcnow()}, "written"
        except WriteBackError as exc:
            values, key = {"writeback_error": str(exc)[:500]}, "refused"
            written = []
        except Exception:  # noqa: BLE001 - a CRM that is down now: the next tick tries again
            done["later"] += 1
            continue
        with engine.begin() as conn:
            conn.execute(update(codes_t).where(c.id == row.id).values(**values))
        done[key] += 1
        if written:
            _comment(engine, settings, row, sorted({w.source for w in written}))
    return done


def _comment(engine: Engine, settings: Settings, row: Any, crms: list[str]) -> None:
    try:
        with engine.connect() as conn:
            write_back(conn, settings, row.contact_id, "add_comment", only=crms,
                       text=note_text(settings, row.code, row.discount, row.expires_at))
    except Exception as exc:  # noqa: BLE001 - the field is written and redeems; the note is a courtesy
        # The code's id and the error's kind only: the CRM's message may quote the person's card.
        log.warning("promo code #%s: written to %s, but its comment was not: %s", row.id, ", ".join(crms),
                    type(exc).__name__)


def note_text(settings: Settings, code: str, discount: Decimal | float | None, expires_at: dt.datetime | None) -> str:
    """«Промокод ABC123, скидка 15 %, действует до 31 декабря 2026» in the shop's language.

    The last day is the one in the shop's time zone: codes end at the end of a local day.
    """
    with use_language(settings.language):
        if discount is None or expires_at is None:
            return gettext("Promo code %(code)s", code=code)
        moment = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=dt.timezone.utc)
        day = moment.astimezone(settings.tz).date()
        written = babel_date(day, "d MMMM y" if settings.language == "ru" else "MMMM d, y", locale=settings.language)
        return gettext("Promo code %(code)s, %(discount)s off, valid until %(date)s", code=code,
                       discount=format_percent(float(discount) / 100), date=written)


def expiring(conn: Connection, *, now: dt.datetime, before: dt.timedelta | None, expired: bool,
             workflow_id: int | None = None, since: dt.datetime | None = None) -> Sequence[Any]:
    """Unredeemed codes that expire within `before` (or, with `expired`, that expired after `since`)."""
    c = codes_t.c
    q = (select(c.id, c.contact_id, c.expires_at, c.workflow_id)
         .where(c.redeemed_at.is_(None), c.contact_id.is_not(None)))
    if expired:
        q = q.where(c.expires_at <= now)
        if since is not None:
            q = q.where(c.expires_at > since)
    else:
        q = q.where(c.expires_at > now, c.expires_at <= now + (before or dt.timedelta(0)))
    if workflow_id is not None:
        q = q.where(c.workflow_id == workflow_id)
    return conn.execute(q.order_by(c.id)).all()
