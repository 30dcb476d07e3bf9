"""Generating a large customer base straight into PostgreSQL with COPY, a chunk of contacts at a time.

Every table a synced contact has is filled the way Hub itself fills it
(hub/identity.py, hub/sync.py): the contact row with its order statistics
(what refresh_stats keeps), its normalized phone and email in
contact_identities (E.164 / lowercased, the raw text as typed, valid, the
label), its external_refs row in the CRM it came from, its orders (won, lost,
open deals in a pipeline stage) over three years, and the consent ledger
(email and SMS marketing answers, some withdrawn later).

Rows are produced per chunk of contacts and written as COPY text to one
connection per table, so memory stays bounded (one chunk) and the server
parses the five streams while Python generates the next chunk. Foreign-key
triggers are off during the load (session_replication_role = replica, a
superuser setting): the rows are consistent by construction, and a check per
row would cost more than the row. Everything is seeded: the same --contacts
and --seed give the same base.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

import psycopg

UTC = dt.timezone.utc
# The benchmark's fixed "now": the same data gives the same segments on every day it runs.
NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
HISTORY_DAYS = 3 * 365  # contacts and orders over about three years
CHUNK = 10_000

MALE = ["Александр", "Сергей", "Дмитрий", "Андрей", "Алексей", "Иван", "Михаил", "Евгений", "Николай", "Павел",
        "Владимир", "Артём", "Максим", "Илья", "Роман", "Олег", "Пётр", "Кирилл", "Денис", "Юрий"]
FEMALE = ["Елена", "Ольга", "Наталья", "Татьяна", "Анна", "Мария", "Ирина", "Светлана", "Екатерина", "Юлия",
          "Анастасия", "Дарья", "Марина", "Людмила", "Ксения", "Алёна", "Валентина", "Галина", "Полина", "Вера"]
PATRONYMICS = [("Александрович", "Александровна"), ("Сергеевич", "Сергеевна"), ("Иванович", "Ивановна"),
               ("Петрович", "Петровна"), ("Николаевич", "Николаевна"), ("Дмитриевич", "Дмитриевна"),
               ("Андреевич", "Андреевна"), ("Владимирович", "Владимировна"), ("Михайлович", "Михайловна"),
               ("Юрьевич", "Юрьевна")]
# (male form, female form, Latin for the email)
SURNAMES = [("Иванов", "Иванова", "ivanov"), ("Смирнов", "Смирнова", "smirnov"), ("Кузнецов", "Кузнецова", "kuznetsov"),
            ("Попов", "Попова", "popov"), ("Васильев", "Васильева", "vasiliev"), ("Петров", "Петрова", "petrov"),
            ("Соколов", "Соколова", "sokolov"), ("Михайлов", "Михайлова", "mikhailov"),
            ("Новиков", "Новикова", "novikov"), ("Фёдоров", "Фёдорова", "fedorov"), ("Морозов", "Морозова", "morozov"),
            ("Волков", "Волкова", "volkov"), ("Алексеев", "Алексеева", "alekseev"), ("Лебедев", "Лебедева", "lebedev"),
            ("Семёнов", "Семёнова", "semenov"), ("Егоров", "Егорова", "egorov"), ("Павлов", "Павлова", "pavlov"),
            ("Козлов", "Козлова", "kozlov"), ("Степанов", "Степанова", "stepanov"),
            ("Николаев", "Николаева", "nikolaev"), ("Орлов", "Орлова", "orlov"), ("Андреев", "Андреева", "andreev"),
            ("Макаров", "Макарова", "makarov"), ("Никитин", "Никитина", "nikitin"), ("Захаров", "Захарова", "zakharov"),
            ("Зайцев", "Зайцева", "zaitsev"), ("Соловьёв", "Соловьёва", "soloviev"), ("Борисов", "Борисова", "borisov"),
            ("Яковлев", "Яковлева", "yakovlev"), ("Григорьев", "Григорьева", "grigoriev"),
            ("Романов", "Романова", "romanov"), ("Воробьёв", "Воробьёва", "vorobiev"),
            ("Сергеев", "Сергеева", "sergeev"),
            ("Кузьмин", "Кузьмина", "kuzmin"), ("Фролов", "Фролова", "frolov"),
            ("Александров", "Александрова", "aleksandrov"), ("Дмитриев", "Дмитриева", "dmitriev"),
            ("Королёв", "Королёва", "korolev"), ("Гусев", "Гусева", "gusev"), ("Киселёв", "Киселёва", "kiselev")]
DOMAINS = ["mail.ru", "yandex.ru", "gmail.com", "bk.ru", "list.ru", "inbox.ru", "rambler.ru"]
CITIES = [("Москва", 30), ("Санкт-Петербург", 15), ("Казань", 6), ("Новосибирск", 6), ("Екатеринбург", 6),
          ("Самара", 4), ("Краснодар", 4), ("Воронеж", 4), ("Ростов-на-Дону", 4), ("Тула", 3), ("Пермь", 3),
          ("Уфа", 3), (None, 12)]
LEAD_SOURCES = ["site", "instagram", "vk", "bitrix24", "amocrm", "recommendation"]
TAGS = [("vip", 0.02), ("decision-maker", 0.05), ("wholesale", 0.04), ("email-bounced", 0.02)]
STAGES = ["NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE"]
TABLES = ("contacts", "contact_identities", "external_refs", "orders", "consent_events")
COLUMNS = {
    "contacts": ("id", "first_name", "last_name", "middle_name", "birthday", "city", "gender", "name_key", "tags",
                 "attributes", "provenance", "orders_count", "revenue", "first_order_at", "last_order_at",
                 "created_at", "updated_at", "deleted_at"),
    "contact_identities": ("id", "contact_id", "kind", "value", "raw", "valid", "source", "created_at", "label",
                           "shared"),
    "external_refs": ("id", "source", "external_id", "contact_id", "created_at", "responsible_id", "pushed"),
    "orders": ("id", "source", "external_id", "contact_external_id", "contact_id", "amount", "currency", "status",
               "closed_at", "created_at", "updated_at", "pipeline", "stage", "stage_entered_at", "responsible_id",
               "attributes"),
    "consent_events": ("id", "contact_id", "channel", "purpose", "status", "source", "evidence", "at"),
}
N = "\\N"  # NULL in COPY text


class Clock:
    """Timestamps as COPY text without a datetime per value: a day's prefix plus a time of day, both cached."""

    def __init__(self, start: dt.datetime, days: int) -> None:
        self.start = start
        self.origin = int(start.timestamp())
        self.days = [(start + dt.timedelta(days=d)).strftime("%Y-%m-%d ") for d in range(days + 2)]
        self.times = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}+00" for s in range(86400)]

    def at(self, second: int) -> str:
        """COPY text of the instant `second` seconds after the start."""
        return self.days[second // 86400] + self.times[second % 86400]


def phone(contact_id: int) -> tuple[str, str]:
    """A Russian mobile number unique to the contact (E.164) and how a manager typed it."""
    n = (contact_id * 7919 + 104_729) % 1_000_000_000  # a bijection on 9 digits: 7919 is prime to 10
    digits = f"9{n:09d}"
    return "+7" + digits, f"8 ({digits[:3]}) {digits[3:6]}-{digits[6:8]}-{digits[8:]}"


def generate(conninfo: str, contacts: int, seed: int, progress: Callable[[str], None]) -> dict[str, int]:
    """Load `contacts` contacts and everything they have into an empty Hub database at `conninfo`."""
    counts = dict.fromkeys(TABLES, 0)
    conns = {t: psycopg.connect(conninfo) for t in TABLES}
    try:
        for conn in conns.values():
            try:
                conn.execute("SET session_replication_role = replica")
            except psycopg.Error:  # not a superuser: keep the checks, only slower
                conn.rollback()
        with ExitStack() as stack:
            copies = {table: stack.enter_context(conn.cursor().copy(
                f"COPY {table} ({', '.join(COLUMNS[table])}) FROM STDIN")) for table, conn in conns.items()}
            counts.update(_load(copies, contacts, seed, progress))
        for conn in conns.values():
            conn.commit()
        with conns["contacts"] as conn:
            conn.execute("SET session_replication_role = DEFAULT")
            for table in TABLES:
                conn.execute(f"SELECT setval('{table}_id_seq', (SELECT max(id) FROM {table}))")
        return counts
    finally:
        for conn in conns.values():
            conn.close()


def _load(copies: dict[str, Any], contacts: int, seed: int, progress: Callable[[str], None]) -> dict[str, int]:
    """Generate the rows chunk by chunk and write each table's to its COPY."""
    rng = random.Random(seed)
    start = NOW - dt.timedelta(days=HISTORY_DAYS)
    clock = Clock(start, HISTORY_DAYS)
    span = HISTORY_DAYS * 86400
    now_s = span  # NOW is the start plus HISTORY_DAYS days
    cities = [c for c, weight in CITIES for _ in range(weight)]
    birthdays = [(dt.date(1950, 1, 1) + dt.timedelta(days=d)).isoformat() for d in range(60 * 365)]
    provenance = {s: f'{{"first_name": "{s}", "last_name": "{s}", "created_from": "{s}"}}'
                  for s in ("bitrix24", "amocrm")}
    counts = dict.fromkeys(TABLES, 0)
    order_id = event_id = identity_id = 0
    for first in range(1, contacts + 1, CHUNK):
        rows: dict[str, list[str]] = {t: [] for t in TABLES}
        people, idents, refs, orders, events = (rows[t] for t in TABLES)
        for cid in range(first, min(contacts, first + CHUNK - 1) + 1):
            r = rng.random
            female = r() < 0.5
            male_s, female_s, latin = rng.choice(SURNAMES)
            first_name = rng.choice(FEMALE if female else MALE)
            last_name = female_s if female else male_s
            middle = rng.choice(PATRONYMICS)[female] if r() < 0.6 else N
            created = int(r() * (span - 86400))
            source = "bitrix24" if r() < 0.6 else "amocrm"
            # a quarter never bought; buyers average four orders: three per contact overall
            k = 0 if r() < 0.25 else 1 + int(rng.expovariate(1 / 3.5))
            won = revenue = 0
            first_won = last_won = -1
            for _ in range(k):
                order_id += 1
                x = r()
                status = "won" if x < 0.8 else ("lost" if x < 0.9 else "open")
                kopecks = rng.randrange(50_000, 2_000_000)
                opened = created + int(r() * (now_s - created))
                if status == "open":
                    entered = max(opened, now_s - int(r() * 60 * 86400))
                    orders.append(f"{order_id}\t{source}\t{order_id}\t{cid}\t{cid}\t{kopecks // 100}."
                                  f"{kopecks % 100:02d}\tRUB\topen\t{N}\t{clock.at(opened)}\t{clock.at(entered)}"
                                  f"\tmain\t{STAGES[order_id % 5]}\t{clock.at(entered)}\t{1 + order_id % 40}\t{{}}")
                    continue
                closed = opened + int(r() * min(30 * 86400, now_s - opened))
                orders.append(f"{order_id}\t{source}\t{order_id}\t{cid}\t{cid}\t{kopecks // 100}."
                              f"{kopecks % 100:02d}\tRUB\t{status}\t{clock.at(closed)}\t{clock.at(opened)}"
                              f"\t{clock.at(closed)}\t{N}\t{N}\t{N}\t{1 + order_id % 40}\t{{}}")
                if status == "won":
                    won += 1
                    revenue += kopecks
                    first_won = closed if first_won < 0 or closed < first_won else first_won
                    last_won = max(last_won, closed)
            updated = max(created, last_won)
            tags = [t for t, p in TAGS if r() < p]
            tags_json = "[" + ", ".join(f'"{t}"' for t in tags) + "]"
            deleted = clock.at(updated) if r() < 0.002 else N
            people.append(
                f"{cid}\t{first_name}\t{last_name}\t{middle}\t"
                f"{birthdays[rng.randrange(len(birthdays))] if r() < 0.7 else N}\t{rng.choice(cities) or N}\t"
                f"{'f' if female else 'm'}\t{last_name.lower().replace('ё', 'е')} "
                f"{first_name.lower().replace('ё', 'е')}\t{tags_json}\t"
                f'{{"lead_source": "{rng.choice(LEAD_SOURCES)}"}}\t{provenance[source]}\t{won}\t'
                f"{revenue // 100}.{revenue % 100:02d}\t{clock.at(first_won) if won else N}\t"
                f"{clock.at(last_won) if won else N}\t{clock.at(created)}\t{clock.at(updated)}\t{deleted}")
            refs.append(f"{cid}\t{source}\t{cid}\t{cid}\t{clock.at(created)}\t{1 + cid % 40}\t{{}}")
            has_phone, has_email = r() < 0.9, r() < 0.8
            if has_phone:
                identity_id += 1
                if r() < 0.02:  # typed so that it does not parse: kept as text, flagged
                    idents.append(f"{identity_id}\t{cid}\tphone\t{cid}-нет\t{cid}-нет\tf\t{source}\t"
                                  f"{clock.at(created)}\t{N}\t{N}")
                    has_phone = False
                else:
                    value, raw = phone(cid)
                    idents.append(f"{identity_id}\t{cid}\tphone\t{value}\t{raw}\tt\t{source}\t{clock.at(created)}"
                                  f"\tmobile\t{N}")
            if has_email:
                identity_id += 1
                email = f"{latin}.{cid}@{DOMAINS[cid % len(DOMAINS)]}"
                raw_email = email.capitalize() if cid % 5 == 0 else email
                idents.append(f"{identity_id}\t{cid}\temail\t{email}\t{raw_email}\tt\t{source}\t"
                              f"{clock.at(created)}\t{N}\t{N}")
            for channel, share, present in (("email", 0.85, has_email), ("sms", 0.7, has_phone)):
                if not present or r() >= share:
                    continue
                event_id += 1
                at = created + int(r() * (now_s - created) / 2)
                events.append(f"{event_id}\t{cid}\t{channel}\tmarketing\tgranted\t{source}\t"
                              f'{{"form": "checkout"}}\t{clock.at(at)}')
                if r() < 0.1:
                    event_id += 1
                    events.append(f"{event_id}\t{cid}\t{channel}\tmarketing\twithdrawn\tunsubscribe\t{{}}\t"
                                  f"{clock.at(at + int(r() * (now_s - at)))}")
        for table in TABLES:
            if rows[table]:
                copies[table].write("\n".join(rows[table]) + "\n")
                counts[table] += len(rows[table])
        if (first // CHUNK) % 20 == 0:
            progress(f"  {counts['contacts']:,} contacts, {counts['orders']:,} orders, "
                     f"{counts['consent_events']:,} consent events")
    return counts


def samples(conn: Any, contacts: int, n: int = 50) -> dict[str, list[Any]]:
    """Values that exist in the base, for lookups: phones as typed, emails, full names, ids with many orders."""
    step = max(1, contacts // n)
    ids = list(range(1, contacts + 1, step))[:n]
    phones = [r[0] for r in conn.execute("SELECT raw FROM contact_identities WHERE contact_id = ANY(%s) AND "
                                         "kind = 'phone' AND valid", (ids,))]
    emails = [r[0] for r in conn.execute("SELECT value FROM contact_identities WHERE contact_id = ANY(%s) AND "
                                         "kind = 'email'", (ids,))]
    names = [" ".join(p for p in r if p) for r in conn.execute(
        "SELECT last_name, first_name, middle_name FROM contacts WHERE id = ANY(%s)", (ids,))]
    busy = [r[0] for r in conn.execute("SELECT id FROM contacts WHERE id = ANY(%s) ORDER BY orders_count DESC, id",
                                       (list(range(1, min(contacts, 200_000) + 1, 7)),))][:10]
    return {"sample_contact_ids": ids, "sample_phones": phones, "sample_emails": emails, "sample_names": names,
            "sample_busy_contact_ids": busy}
