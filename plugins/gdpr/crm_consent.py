"""Consent kept in a CRM field (Bitrix24's EXPORT flag, a UF_CRM_* or amoCRM custom field), read on every sync.

The mapping lives in hub.toml, per source, from the attribute the source
plugin stores the field under to one or more topics:

    [bitrix24.contact_fields]          # the Bitrix24 plugin reads EXPORT into the attribute "EXPORT"
    EXPORT = "EXPORT"

    [gdpr.crm_consent]
    bitrix24 = { EXPORT = "email/marketing", UF_CRM_NEWS = ["email/news", "sms/news"] }

A yes (Y, 1, true, да …) is `granted`, a no (N, 0, false, нет …) `withdrawn`,
recorded with source = the CRM's name and the field and value as evidence.
Only a change is recorded: the CRM's answer is compared with the last answer
that CRM gave, so a sync that reads the same flag again adds nothing. And the
first answer read from a CRM never overrides a withdrawal the person made
elsewhere (an unsubscribe link): a flag that says "yes" because nobody
touched it is not the person changing their mind; a manager changing the
flag later is recorded like any other change.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping

from sqlalchemy import Connection, select

from hub.api import Contact, Settings, SettingsError, chunks, record_consent
# not in hub.api on purpose: export and erasure reach every core table that holds personal data
from hub.models import ConsentEvent
from plugins.gdpr import config
from plugins.gdpr.topics import Topic, TopicError, parse

events_t = ConsentEvent.__table__
contacts_t = Contact.__table__

YES = {"y", "yes", "1", "true", "on", "да", "д"}
NO = {"n", "no", "0", "false", "off", "нет", "н"}


def mapping(settings: Settings, source: str) -> dict[str, list[Topic]]:
    """attribute → topics for one source; empty when the source has no mapping."""
    raw = config.table(settings, "crm_consent").get(source)
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SettingsError(
            f"[gdpr.crm_consent] {source}: give a table, e.g. {source} = {{EXPORT = \"email/marketing\"}}")
    out: dict[str, list[Topic]] = {}
    for attribute, topics in raw.items():
        texts = [topics] if isinstance(topics, str) else topics
        if not isinstance(texts, list):
            raise SettingsError(f"[gdpr.crm_consent] {source}.{attribute}: give a topic or a list of topics")
        try:
            out[str(attribute)] = [parse(settings, str(t)) for t in texts]
        except TopicError as exc:
            raise SettingsError(f"[gdpr.crm_consent] {source}.{attribute}: {exc}") from None
    return out


def answer(value: Any) -> str | None:
    """granted, withdrawn, or None for a value that says neither."""
    if isinstance(value, bool):
        return "granted" if value else "withdrawn"
    text = str(value).strip().lower() if value is not None else ""
    if text in YES:
        return "granted"
    if text in NO:
        return "withdrawn"
    return None


def apply(conn: Connection, settings: Settings, source: str, contact_ids: Iterable[int]) -> int:
    """Record what the source's mapped fields say for these contacts; returns the events appended."""
    fields = mapping(settings, source)
    if not fields:
        return 0
    topics = {t for ts in fields.values() for t in ts}
    recorded = 0
    for part in chunks(sorted(set(contact_ids)), 500):
        attributes = dict(conn.execute(select(contacts_t.c.id, contacts_t.c.attributes)
                                       .where(contacts_t.c.id.in_(part))).all())
        latest, latest_from_source = _answers(conn, part, topics, source)
        for contact_id in part:
            values = attributes.get(contact_id) or {}
            for attribute, mapped in fields.items():
                if attribute not in values:
                    continue
                status = answer(values[attribute])
                if status is None:
                    continue
                for topic in mapped:
                    key = (contact_id, topic)
                    said_before = latest_from_source.get(key)
                    if said_before == status:
                        continue  # the CRM says what it said last time
                    current = latest.get(key)
                    if said_before is None and (current == status or current == "withdrawn" or
                                                (current is None and status == "withdrawn")):
                        continue  # a first reading never overrides a withdrawal, and "no" to nothing adds nothing
                    record_consent(conn, contact_id, topic.channel, topic.purpose, status, source=source,
                                   evidence={"ip": None, "user_agent": None, "form_id": None, "text_version": None,
                                             "field": attribute, "value": str(values[attribute])[:100]})
                    recorded += 1
    return recorded


def _answers(conn: Connection, contact_ids: Iterable[int], topics: set[Topic], source: str
             ) -> tuple[dict[tuple[int, Topic], str], dict[tuple[int, Topic], str]]:
    """The latest answer per (contact, topic), from anyone and from this source."""
    latest: dict[tuple[int, Topic], str] = {}
    from_source: dict[tuple[int, Topic], str] = {}
    channels = sorted({t.channel for t in topics})
    purposes = sorted({t.purpose for t in topics})
    rows = conn.execute(select(events_t.c.contact_id, events_t.c.channel, events_t.c.purpose, events_t.c.status,
                               events_t.c.source)
                        .where(events_t.c.contact_id.in_(list(contact_ids)), events_t.c.channel.in_(channels),
                               events_t.c.purpose.in_(purposes))
                        .order_by(events_t.c.at, events_t.c.id))
    by_key: dict[tuple[int, Topic], list[tuple[str, str]]] = defaultdict(list)
    for cid, channel, purpose, status, event_source in rows:
        by_key[(cid, Topic(channel, purpose))].append((status, event_source))
    for key, answers in by_key.items():
        latest[key] = answers[-1][0]
        mine = [status for status, s in answers if s == source]
        if mine:
            from_source[key] = mine[-1]
    return latest, from_source
