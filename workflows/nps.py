"""NPS surveys: signed 0–10 links in a message, and the page that records the click.

A survey message (post_purchase_feedback's nps_survey_email) carries eleven
links, one per score, each signed with HUB_SECRET_KEY and naming the contact
and the run, so a click needs no login and cannot answer for someone else.
The click records the score as an interaction on the contact as they are now
(a link from before a merge answers for the survivor; one to an erased person
records nothing and says so): one answer per survey (a later click replaces
an earlier one), shown on the contact's card and usable in segments as
`contact.nps` (the latest score).

Each answer is also written as a comment to the CRMs holding the person
(«Оценка NPS: 9 из 10. Комментарий: …»), never in the web request: the
answer is marked pending (`meta.crm`) and a queue job writes it, so the page
answers at once and never fails because a CRM is down. A CRM that is down is
asked again at the workflows' next tick (`write_back_pending`); one that
refuses, or a person no CRM holds, is noted and not asked again. A comment
added after the score is written again, with the comment.

    GET  /nps/TOKEN   records the score the link stands for; the page thanks, and offers the other scores
    POST /nps/TOKEN   adds a comment to that answer
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, render_template_string, request
from markupsafe import Markup
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import Connection, Engine, func, select, update

from hub.api import (Contact, NoCrmHolds, Settings, WriteBackError, current_contact_id, current_language, enqueue,
                     get_engine, gettext, insert_for, public_url, use_language, utcnow, write_back)
from workflows.models import Interaction

interactions_t = Interaction.__table__
contacts_t = Contact.__table__

KIND = "nps"
SCORES = range(0, 11)
MAX_AGE = 180 * 24 * 3600  # a survey answered half a year later still counts
_SALT = "workflows.nps"


class NpsLinkError(ValueError):
    """A survey link that is not valid (tampered with, or too old)."""


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(settings.require_secret_key(), salt=_SALT)


def url(settings: Settings, contact_id: int, run_id: int | None, score: int) -> str:
    token = _serializer(settings).dumps([contact_id, run_id or 0, score])
    return f"{public_url(settings)}/nps/{token}"


def links_for(settings: Settings, contact_id: int, run_id: int | None) -> list[dict[str, Any]]:
    return [{"score": s, "url": url(settings, contact_id, run_id, s)} for s in SCORES]


def links(settings: Settings, contact_id: int, run_id: int | None) -> dict[str, Any]:
    """The `nps` template variable: `{% for link in nps.links %}<a href="{{ link.url }}">{{ link.score }}</a>`."""
    return {"links": links_for(settings, contact_id, run_id)}


def sample_links(settings: Settings) -> dict[str, Any]:
    base = public_url(settings)
    return {"links": [{"score": s, "url": f"{base}/nps/SAMPLE-{s}"} for s in SCORES]}


def read(settings: Settings, token: str) -> tuple[int, int | None, int]:
    """(contact id, run id or None, score) from a link's token."""
    try:
        contact_id, run_id, score = _serializer(settings).loads(token, max_age=MAX_AGE)
    except SignatureExpired:
        raise NpsLinkError(gettext("this survey link has expired")) from None
    except (BadSignature, ValueError, TypeError):
        raise NpsLinkError(gettext("this survey link is not valid")) from None
    if int(score) not in SCORES:
        raise NpsLinkError(gettext("this survey link is not valid"))
    return int(contact_id), int(run_id) or None, int(score)


def record(engine: Engine, contact_id: int, run_id: int | None, score: int, *, comment: str | None = None,
           source: str = "survey link", at: dt.datetime | None = None) -> bool:
    """Store the answer (replacing this survey's earlier one) on the contact as they are now.

    A contact merged away answers for its survivor; False when nothing is
    held about the person any more (erased, or never there).
    """
    at = at or utcnow()
    with engine.begin() as conn:
        found = current_contact_id(conn, contact_id)
        if found is None:
            return False
        contact_id = found
        values = {"contact_id": contact_id, "kind": KIND, "value": score, "run_id": run_id, "source": source,
                  "meta": {"crm": PENDING}, "at": at}
        if comment is not None:
            values["comment"] = comment
        ins = insert_for(conn, interactions_t).values(**values)
        if run_id is None:
            conn.execute(ins)
        else:
            changing = {"value": score, "at": at, "meta": {"crm": PENDING},
                        **({"comment": comment} if comment is not None else {})}
            conn.execute(ins.on_conflict_do_update(index_elements=["run_id", "kind"], set_=changing))
    return True


# --- the answer, back in the CRM ---------------------------------------------------------------

PENDING, WRITTEN, NOWHERE, REFUSED = "pending", "written", "nowhere", "refused"


def comment_text(score: int, comment: str | None) -> str:
    """The CRM comment, in the shop's language: «Оценка NPS: 9 из 10. Комментарий: …»."""
    text = gettext("NPS score: %(score)s out of 10.", score=score)
    if comment:
        text += " " + gettext("Comment: %(comment)s", comment=comment)
    return text


def queue_write_back(settings: Settings, contact_id: int) -> None:
    """Hand the contact's pending answers to the queue (a worker, or a background thread without Redis)."""
    enqueue(settings, write_back_job, contact_id, queue="low", job_id=f"workflows-nps-crm-{contact_id}",
            background=True)


def write_back_job(contact_id: int) -> dict[str, int]:
    """The queue's job: write this contact's pending answers, with settings read afresh in the worker."""
    from hub.api import load_settings

    settings = load_settings()
    return write_back_pending(get_engine(settings.database_url), settings, contact_id=contact_id)


def write_back_pending(engine: Engine, settings: Settings, *, contact_id: int | None = None,
                       limit: int = 200) -> dict[str, int]:
    """Write pending answers to the CRMs as comments; one try per answer and call.

    Like the promo codes' write-back: a refusal (no CRM holds the person, or
    the CRM said no) is noted and not asked again; anything else (a timeout)
    is tried at the next tick.
    """
    t = interactions_t.c
    q = select(t.id, t.contact_id, t.value, t.comment, t.meta).where(t.kind == KIND,
                                                                     t.meta["crm"].as_string() == PENDING)
    if contact_id is not None:
        q = q.where(t.contact_id == contact_id)
    with engine.connect() as conn:
        rows = conn.execute(q.order_by(t.id).limit(limit)).all()
    done = {WRITTEN: 0, NOWHERE: 0, REFUSED: 0, "later": 0}
    for row in rows:
        with use_language(settings.language):
            text = comment_text(int(row.value), row.comment)
        state: dict[str, Any]
        try:
            with engine.connect() as conn:
                write_back(conn, settings, row.contact_id, "add_comment", text=text)
            state = {"crm": WRITTEN, "crm_at": utcnow().isoformat()}
        except WriteBackError as exc:
            state = {"crm": NOWHERE if isinstance(exc, NoCrmHolds) else REFUSED, "crm_error": str(exc)[:300]}
        except Exception:  # noqa: BLE001 - a CRM that is down now: the next tick tries again
            done["later"] += 1
            continue
        with engine.begin() as conn:
            # Only if nothing changed meanwhile: a comment added while the CRM was asked is written next time.
            conn.execute(update(interactions_t).where(t.id == row.id, t.value == row.value,
                                                      t.comment.is_(None) if row.comment is None
                                                      else t.comment == row.comment)
                         .values(meta={**dict(row.meta or {}), **state}))
        done[state["crm"]] += 1
    return done


def interactions_for_contact(conn: Connection, contact_id: int) -> list[dict[str, Any]]:
    """A contact's recorded interactions (survey answers), newest first, for the contact card."""
    t = interactions_t.c
    rows = conn.execute(select(t.kind, t.value, t.comment, t.run_id, t.source, t.at)
                        .where(t.contact_id == contact_id).order_by(t.at.desc(), t.id.desc()))
    return [dict(r._mapping) for r in rows]


def latest_answer(conn: Connection, contact_id: int) -> dict[str, Any] | None:
    """The contact's latest survey answer {score, comment, at}, or None: what the card shows beside the name."""
    t = interactions_t.c
    row = conn.execute(select(t.value, t.comment, t.at).where(t.contact_id == contact_id, t.kind == KIND)
                       .order_by(t.at.desc(), t.id.desc()).limit(1)).first()
    if row is None:
        return None
    return {"score": row.value, "comment": row.comment, "at": row.at.isoformat() if row.at else None}


def latest_score(ctx: Any) -> Any:
    """The segment field contact.nps: the latest score the contact gave, or NULL."""
    t = interactions_t.c
    return (select(t.value).where(t.contact_id == ctx.contact_id, t.kind == KIND)
            .order_by(t.at.desc(), t.id.desc()).limit(1).scalar_subquery())


def average(conn: Connection, run_ids: list[int] | None = None) -> dict[str, Any]:
    """NPS of the answers (promoters 9–10 minus detractors 0–6, in per cent) and how many answered."""
    t = interactions_t.c
    q = select(t.value).where(t.kind == KIND)
    if run_ids is not None:
        q = q.where(t.run_id.in_(run_ids))
    values = list(conn.execute(q).scalars())
    if not values:
        return {"answers": 0, "nps": None}
    promoters = sum(1 for v in values if v >= 9)
    detractors = sum(1 for v in values if v <= 6)
    return {"answers": len(values), "nps": round(100 * (promoters - detractors) / len(values), 1)}


def count(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(interactions_t)).scalar_one()


# --- the public page ----------------------------------------------------------------------

bp = Blueprint("workflows_nps", __name__)

# The customer reads it in the shop's language (HUB_LANGUAGE); the texts come translated from _texts().
PAGE = """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title></head>
<body>
<main>
<h1>{{ title }}</h1>
{% if score is not none %}
<p>{{ texts.score }}</p>
<form method="post">
<p><label for="comment">{{ texts.more }}</label></p>
<p><textarea id="comment" name="comment" rows="4" cols="40" maxlength="2000">{{ comment or "" }}</textarea></p>
<p><button type="submit">{{ texts.send }}</button></p>
</form>
<p>{{ texts.other }}
{% for link in others %}<a href="{{ link.url }}">{{ link.score }}</a> {% endfor %}</p>
{% else %}
<p>{{ message }}</p>
{% endif %}
</main>
</body></html>
"""


def current_contact_id_of(engine: Engine, contact_id: int) -> int | None:
    with engine.connect() as conn:
        return current_contact_id(conn, contact_id)


def _settings() -> Settings:
    from hub.api import current_settings

    return current_settings()


def _page(title: str, *, score: int | None = None, message: str = "", comment: str | None = None,
          others: list[dict[str, Any]] | None = None) -> str:
    texts = {"more": gettext("Would you like to add anything?"), "send": gettext("Send"),
             "other": gettext("Changed your mind? Choose another score:")}
    if score is not None:
        # Our own text around a number: safe to mark as HTML for the <strong>.
        texts["score"] = Markup(gettext("Your score: %(score)s out of 10. Thank you for taking the time to answer!",
                                        score=f"<strong>{int(score)}</strong>"))
    return render_template_string(PAGE, lang=current_language(), title=title, score=score, message=message,
                                  comment=comment, others=others or [], texts=texts)


@bp.route("/nps/<token>", methods=["GET", "POST"])
def answer(token: str) -> Any:
    settings = _settings()
    try:
        contact_id, run_id, score = read(settings, token)
    except NpsLinkError as exc:
        return _page(gettext("Survey"), message=str(exc)[:1].upper() + str(exc)[1:]), 400
    comment = None
    if request.method == "POST":
        comment = (request.form.get("comment") or "").strip()[:2000] or None
    engine = get_engine(settings.database_url)
    found = current_contact_id_of(engine, contact_id)
    if found is None or not record(engine, found, run_id, score, comment=comment):
        return _page(gettext("Survey"), message=gettext("We keep no data about you, so the answer was not saved. "
                                                        "Thank you for responding.")), 410
    queue_write_back(settings, found)
    if comment is None and run_id is not None:
        with engine.connect() as conn:
            comment = conn.execute(select(interactions_t.c.comment).where(
                interactions_t.c.run_id == run_id, interactions_t.c.kind == KIND)).scalar()
    others = [link for link in links_for(settings, contact_id, run_id) if link["score"] != score]
    return _page(gettext("Thank you for your answer"), score=score, comment=comment, others=others)
