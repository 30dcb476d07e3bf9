"""Undoing a merge (`hub contacts unmerge`): the merged person comes back as they were, and stays apart.

The wrong merge is made the way real bases make it: a sync re-reads a
person with a phone another person already holds (a son using his father's
mobile), and the two contacts become one. Undone, each has their own phones,
emails, references, orders and consent again, the joining phone is on both
and shared, and reading the same records again does not join them; only a
new personal value both hold does.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from hub import consent, dedupe, identity, sync, unmerge
from hub.hookspecs import hookimpl
from hub.models import AuditEntry, Contact, ContactIdentity, ContactMerge, ContactsApart, ExternalRef, Message
from hub.records import ContactRecord, OrderRecord
from plugins.gdpr import erasure
from tests.conftest import HubDB
from tests.support.cli import cli

pytestmark = pytest.mark.both_databases  # merges, ids brought back, consent ledger

FAMILY_PHONE = "+79161234567"
SON_PHONE = "+79035556677"
WHEN = dt.datetime(2026, 11, 2, 12, 0, tzinfo=dt.UTC)


def father(phones: list[str] | None = None, **extra: Any) -> ContactRecord:
    return ContactRecord(source="crm", external_id="1", first_name="Иван", last_name="Петров",
                         phones=phones if phones is not None else ["8 916 123-45-67"], emails=["ivan@example.ru"],
                         **extra)


def son(phones: list[str] | None = None, **extra: Any) -> ContactRecord:
    return ContactRecord(source="crm", external_id="2", first_name="Иван", last_name="Петров",
                         phones=phones if phones is not None else ["+7 903 555-66-77"], emails=["vanya@example.ru"],
                         **extra)


def write(db: HubDB, *records: ContactRecord) -> identity.Resolution:
    with db.engine.begin() as conn:
        return sync.write_contacts(conn, list(records), db.settings, sync.Counts())


def wrongly_merged(db: HubDB) -> tuple[int, int, int]:
    """Father and son, each with orders and an answer about offers; then the son's record brings the family phone."""
    a = write(db, father()).created[0]
    b = write(db, son()).created[0]
    with db.engine.begin() as conn:
        sync.write_orders(conn, [
            OrderRecord(source="crm", external_id="o1", contact_external_id="1", amount=Decimal(1000),
                        status="won", closed_at=WHEN),
            OrderRecord(source="crm", external_id="o2", contact_external_id="2", amount=Decimal(500),
                        status="won", closed_at=WHEN),
            OrderRecord(source="crm", external_id="o3", contact_external_id="2", amount=Decimal(700),
                        status="won", closed_at=WHEN + dt.timedelta(days=1)),
        ], sync.Counts(), db.settings)
        consent.record(conn, a, "email", "marketing", "granted", source="form", at=WHEN)
        consent.record(conn, b, "email", "marketing", "withdrawn", source="form", at=WHEN - dt.timedelta(days=1))
    result = write(db, son(phones=["+7 903 555-66-77", "+7 916 123-45-67"]))
    assert result.merged == [(a, b)]
    with db.engine.connect() as conn:
        merge_id = conn.execute(select(ContactMerge.id).where(ContactMerge.merged_id == b)).scalar_one()
        # the merge wrote the stricter answer onto the father
        assert consent.current(conn, a)[("email", "marketing")] == "withdrawn"
    return a, b, merge_id


def held(db: HubDB, contact_id: int) -> dict[tuple[str, str], str | None]:
    with db.engine.connect() as conn:
        c = ContactIdentity.__table__.c
        rows = conn.execute(select(c.kind, c.value, c.shared).where(c.contact_id == contact_id))
        return {(k, v): s for k, v, s in rows}


def stats(db: HubDB, contact_id: int) -> tuple[int, Decimal]:
    with db.engine.connect() as conn:
        row = conn.execute(select(Contact.orders_count, Contact.revenue).where(Contact.id == contact_id)).one()
        return row.orders_count, Decimal(row.revenue)


def contact_count(db: HubDB) -> int:
    with db.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Contact)).scalar_one()


def test_an_unmerge_gives_each_person_their_own_values_orders_and_consent_back(hub_db: HubDB) -> None:
    a, b, merge_id = wrongly_merged(hub_db)
    result = unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="cli")
    assert result == {"merge_id": merge_id, "survivor": a, "restored": b, "shared": [["phone", FAMILY_PHONE]],
                      "orders": 2, "identities": 3, "refs": 1}
    assert held(hub_db, a) == {("phone", FAMILY_PHONE): "unmerged", ("email", "ivan@example.ru"): None}
    assert held(hub_db, b) == {("phone", FAMILY_PHONE): "unmerged", ("phone", SON_PHONE): None,
                               ("email", "vanya@example.ru"): None}
    assert stats(hub_db, a) == (1, Decimal(1000))
    assert stats(hub_db, b) == (2, Decimal(1200))
    with hub_db.engine.connect() as conn:
        son_row = conn.execute(select(Contact).where(Contact.id == b)).one()
        assert (son_row.first_name, son_row.last_name, son_row.name_key) == ("Иван", "Петров", "петров иван")
        refs = conn.execute(select(ExternalRef.contact_id, ExternalRef.external_id).order_by(ExternalRef.external_id))
        assert [tuple(r) for r in refs] == [(a, "1"), (b, "2")]
        # each has their own answer again; the ledger only grew
        assert consent.current(conn, a)[("email", "marketing")] == "granted"
        assert consent.current(conn, b)[("email", "marketing")] == "withdrawn"
        (restoring,) = [e for e in consent.history(conn, a) if e["source"] == "unmerge"]
        assert restoring["evidence"]["merge_id"] == merge_id
        assert [e["source"] for e in consent.history(conn, a)] == ["form", "merge", "unmerge"]
        merge = conn.execute(select(ContactMerge).where(ContactMerge.id == merge_id)).one()
        assert merge.undone_by == "cli" and merge.undone_at is not None
        apart = conn.execute(select(ContactsApart.low_id, ContactsApart.high_id, ContactsApart.merge_id)).all()
        assert [tuple(r) for r in apart] == [(a, b, merge_id)]
        entry = conn.execute(select(AuditEntry).where(AuditEntry.action == "contact_unmerged")).one()
        assert (entry.actor, entry.contact_id, entry.details["merge"]) == ("cli", b, merge_id)
        # both are marked changed, so the next incremental segment refresh looks at them
        changed = conn.execute(select(Contact.id).where(Contact.updated_at >= merge.undone_at)).scalars()
        assert set(changed) == {a, b}
        # and the segments were refreshed at once: the son is in the lifecycle segment his orders put him in
        segments = _members(conn)
        assert b in set().union(*segments.values())
        assert b not in segments.get("never_bought", set()) and b not in segments.get("potential", set())


def _members(conn: Any) -> dict[str, set[int]]:
    from hub.models import Segment, SegmentMember

    out: dict[str, set[int]] = {}
    rows = conn.execute(select(Segment.name, SegmentMember.contact_id)
                        .join(Segment, Segment.id == SegmentMember.segment_id))
    for name, contact_id in rows:
        out.setdefault(name, set()).add(contact_id)
    return out


def test_reading_the_same_records_again_does_not_join_them_but_a_new_personal_phone_does(hub_db: HubDB) -> None:
    a, b, merge_id = wrongly_merged(hub_db)
    unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="cli")
    # the same sync again, in one chunk and one by one
    write(hub_db, father(), son(phones=["+7 903 555-66-77", "+7 916 123-45-67"]))
    write(hub_db, son(phones=["+7 903 555-66-77", "+7 916 123-45-67"]))
    assert contact_count(hub_db) == 2
    # the family phone from a spreadsheet without references, under the name both have: it could be
    # either of them, so it joins neither (a person decides, from hub dedupe's namesakes)
    row = write(hub_db, ContactRecord(source="import:family.csv", first_name="Иван", last_name="Петров",
                                      phones=["89161234567"]))
    assert not row.merged and row.contact_ids[0] not in (a, b)
    assert contact_count(hub_db) == 3
    assert held(hub_db, a)[("phone", FAMILY_PHONE)] == "unmerged"
    # new evidence: a personal mobile both turn out to hold
    write(hub_db, father(phones=["+7 926 000-11-22"]))
    result = write(hub_db, son(phones=["+7 926 000-11-22"]))
    assert result.merged == [(a, b)]
    assert contact_count(hub_db) == 2


def test_a_merge_is_undone_once_and_the_refusals_say_why(hub_db: HubDB) -> None:
    a, b, merge_id = wrongly_merged(hub_db)
    unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="cli")
    with pytest.raises(unmerge.UnmergeRefused, match=f"№{merge_id}"):
        unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="cli")
    with pytest.raises(unmerge.UnmergeRefused, match="9999"):
        unmerge.unmerge(hub_db.engine, hub_db.settings, 9999, actor="cli")
    assert contact_count(hub_db) == 2


def test_a_merge_into_a_person_since_erased_is_not_undone(hub_db: HubDB) -> None:
    a, b, merge_id = wrongly_merged(hub_db)
    erasure.erase(hub_db.engine, hub_db.settings, a)
    with pytest.raises(unmerge.UnmergeRefused, match="erased|удал"):
        unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="cli")
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(Contact.id).where(Contact.id == b)).first() is None


def test_a_confirmed_signup_is_not_undone(hub_db: HubDB) -> None:
    a = write(hub_db, father()).created[0]
    b = write(hub_db, ContactRecord(source="form")).created[0]
    with hub_db.engine.begin() as conn:
        merge_id = identity.merge_contacts(conn, a, b, reason={"rule": "signup confirmed", "request": 1},
                                           settings=hub_db.settings)
    with pytest.raises(unmerge.UnmergeRefused, match=f"№{merge_id}"):
        unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="cli")


def test_a_merge_is_undone_from_whoever_the_survivor_became(hub_db: HubDB) -> None:
    a, b, merge_id = wrongly_merged(hub_db)
    c = write(hub_db, ContactRecord(source="crm", external_id="3", first_name="Пётр",
                                    emails=["p@example.ru"])).created[0]
    dedupe.merge_by_hand(hub_db.engine, c, a, actor="cli", settings=hub_db.settings)  # a second wrong merge
    with hub_db.engine.connect() as conn:
        assert identity.current_contact_id(conn, b) == c  # a signed link of the son acts on c
    result = unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="cli")
    assert (result["survivor"], result["restored"]) == (c, b)
    assert ("email", "vanya@example.ru") in held(hub_db, b)
    assert held(hub_db, b)[("phone", FAMILY_PHONE)] == "unmerged"
    assert held(hub_db, c)[("phone", FAMILY_PHONE)] == "unmerged"
    assert stats(hub_db, b) == (2, Decimal(1200))
    assert stats(hub_db, c) == (1, Decimal(1000))
    with hub_db.engine.connect() as conn:
        # links kept from before act on the son again, and the father's still on c
        assert identity.current_contact_id(conn, b) == b
        assert identity.current_contact_id(conn, a) == c


def test_plugins_hear_of_the_unmerge_once_and_messages_to_the_restored_address_go_back(hub_db: HubDB,
                                                                                       plugin_manager: Any) -> None:
    # hook:contact_unmerged
    calls: list[dict[str, Any]] = []

    class Listener:
        @hookimpl
        def contact_unmerged(self, conn, settings, survivor_id: int, restored_id: int, merge_id: int,
                             snapshot: dict) -> None:
            # the core's own rows are back before plugins are told
            owner = conn.execute(select(ExternalRef.contact_id).where(ExternalRef.external_id == "2")).scalar()
            calls.append({"ids": (survivor_id, restored_id, merge_id), "owner": owner,
                          "values": sorted(i["value"] for i in snapshot["identities"])})

    plugin_manager.register(Listener())
    a = write(hub_db, father()).created[0]
    b = write(hub_db, son()).created[0]
    with hub_db.engine.begin() as conn:
        for n, (contact_id, address) in enumerate([(a, "ivan@example.ru"), (b, "vanya@example.ru")]):
            conn.execute(Message.__table__.insert().values(
                idempotency_key=f"k{n}", contact_id=contact_id, channel="email", purpose="marketing",
                address=address, body_text="…", status="sent"))
    write(hub_db, son(phones=["+7 903 555-66-77", "+7 916 123-45-67"]))
    with hub_db.engine.connect() as conn:
        merge_id = conn.execute(select(ContactMerge.id)).scalar_one()
        assert set(conn.execute(select(Message.contact_id)).scalars()) == {a}
    unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="cli")
    assert calls == [{"ids": (a, b, merge_id), "owner": b,
                      "values": [SON_PHONE, "vanya@example.ru"]}]
    with hub_db.engine.connect() as conn:
        owners = dict(conn.execute(select(Message.address, Message.contact_id)).all())
    assert owners == {"ivan@example.ru": a, "vanya@example.ru": b}


def test_the_command_says_what_came_back_in_russian(hub_db: HubDB) -> None:
    a, b, merge_id = wrongly_merged(hub_db)
    runner = CliRunner()
    out = runner.invoke(cli, ["contacts", "unmerge", str(merge_id)])
    assert out.exit_code == 0, out.output
    assert out.output.strip() == (f"Слияние №{merge_id} отменено: контакт #{b} восстановлен "
                                  "(2 телефона, 1 e-mail, 2 заказа и сделки (в любой стадии)); "
                                  "общими остались: +7 916 123-45-67.")
    again = runner.invoke(cli, ["contacts", "unmerge", str(merge_id)])
    assert again.exit_code == 1
    assert f"Слияние №{merge_id} уже отменено." in again.output
    help_text = runner.invoke(cli, ["contacts", "unmerge", "--help"]).output
    assert "Отменить ошибочное слияние" in help_text


def test_the_command_in_english_and_as_json(hub_db: HubDB, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b, merge_id = wrongly_merged(hub_db)
    monkeypatch.setenv("HUB_LANGUAGE", "en")
    runner = CliRunner()
    out = runner.invoke(cli, ["contacts", "unmerge", str(merge_id), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output) == {"merge_id": merge_id, "survivor": a, "restored": b,
                                      "shared": [["phone", FAMILY_PHONE]], "orders": 2, "identities": 3, "refs": 1}
    again = runner.invoke(cli, ["contacts", "unmerge", str(merge_id)])
    assert again.exit_code == 1
    assert f"Merge №{merge_id} was already undone." in again.output


def test_fields_the_merge_filled_from_the_restored_contact_leave_the_survivor(hub_db: HubDB) -> None:
    a = write(hub_db, father()).created[0]
    b = write(hub_db, ContactRecord(source="shop", external_id="7", first_name="Иван", last_name="Петров",
                                    city="Тула", emails=["vanya@example.ru"])).created[0]
    write(hub_db, ContactRecord(source="shop", external_id="7", phones=["+7 916 123-45-67"]))
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(Contact.city).where(Contact.id == a)).scalar() == "Тула"
        merge_id = conn.execute(select(ContactMerge.id)).scalar_one()
    unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="cli")
    with hub_db.engine.connect() as conn:
        cities = dict(conn.execute(select(Contact.id, Contact.city)).all())
        provenance = conn.execute(select(Contact.provenance).where(Contact.id == a)).scalar()
    assert cities == {a: None, b: "Тула"}
    assert "city" not in provenance


def test_a_merge_logged_before_snapshots_kept_the_survivors_values_is_undone_from_its_reason(hub_db: HubDB) -> None:
    a, b, merge_id = wrongly_merged(hub_db)
    with hub_db.engine.begin() as conn:
        snapshot = conn.execute(select(ContactMerge.snapshot).where(ContactMerge.id == merge_id)).scalar_one()
        old = {k: v for k, v in snapshot.items() if k not in ("survivor_identities", "order_ids", "consent_event_ids")}
        conn.execute(ContactMerge.__table__.update().where(ContactMerge.__table__.c.id == merge_id)
                     .values(snapshot=old))
    result = unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="cli")
    assert result["shared"] == [["phone", FAMILY_PHONE]]
    assert result["orders"] == 2  # found by the restored reference
    assert stats(hub_db, b) == (2, Decimal(1200))
    with hub_db.engine.connect() as conn:
        # the ledger could not say which answers were the son's: they stay, and he has none
        assert consent.current(conn, b) == {}


def test_signups_made_with_the_restored_address_go_back_to_it(hub_db: HubDB, plugin_manager: Any) -> None:
    import plugins.gdpr
    from plugins.gdpr.models import ConsentRequest

    plugin_manager.register(plugins.gdpr)
    a = write(hub_db, father()).created[0]
    b = write(hub_db, son()).created[0]
    requests = ConsentRequest.__table__
    with hub_db.engine.begin() as conn:
        for contact_id, address in ((a, "ivan@example.ru"), (b, "vanya@example.ru"), (b, None)):
            conn.execute(requests.insert().values(contact_id=contact_id, channel="email", topics=["email/news"],
                                                  source="form", evidence={"address": address} if address else {}))
    write(hub_db, son(phones=["+7 903 555-66-77", "+7 916 123-45-67"]))
    with hub_db.engine.connect() as conn:
        merge_id = conn.execute(select(ContactMerge.id)).scalar_one()
        assert set(conn.execute(select(requests.c.contact_id)).scalars()) == {a}
    unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="cli")
    with hub_db.engine.connect() as conn:
        owners = sorted((r.evidence.get("address") or "", r.contact_id)
                        for r in conn.execute(select(requests.c.evidence, requests.c.contact_id)))
    # one made without an address cannot say whose it was: it stays with the survivor
    assert owners == [("", a), ("ivan@example.ru", a), ("vanya@example.ru", b)]


def test_merging_by_hand_a_pair_kept_apart_says_so_and_the_later_decision_wins(hub_db: HubDB) -> None:
    a, b, merge_id = wrongly_merged(hub_db)
    unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="cli")
    shown = CliRunner().invoke(cli, ["dedupe", "--merge", str(a), str(b)])
    assert shown.exit_code == 0, shown.output
    assert "Эти двое были разделены отменой слияния" in shown.output
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ContactsApart)).scalar_one() == 0
    assert contact_count(hub_db) == 1


def test_what_the_restored_persons_own_record_brought_goes_back_to_them(hub_db: HubDB) -> None:
    """The son's CRM card brought his father's mobile (which joined them) and his own new one."""
    a = write(hub_db, ContactRecord(source="crm", external_id="1", first_name="Иван", last_name="Петров",
                                    phones=["+7 916 123-45-67"])).created[0]
    b = write(hub_db, ContactRecord(source="crm", external_id="2", first_name="Иван", last_name="Петров",
                                    emails=["son@mail.ru"])).created[0]
    result = write(hub_db, ContactRecord(source="crm", external_id="2", first_name="Иван", last_name="Петров",
                                         phones=["+7 916 123-45-67", "+7 903 555-00-00"], emails=["son@mail.ru"]))
    assert result.merged == [(a, b)]
    with hub_db.engine.connect() as conn:
        merge_id = conn.execute(select(ContactMerge.id)).scalar_one()
    unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="cli")
    assert ("phone", "+79035550000") in held(hub_db, b) and ("phone", "+79035550000") not in held(hub_db, a)


def test_a_no_given_after_the_merge_stays_with_both(hub_db: HubDB) -> None:
    """After the merge the joined contact said no to SMS: it may have been either person, so neither gets them."""
    a = write(hub_db, ContactRecord(source="crm", external_id="1", first_name="Иван", last_name="Петров",
                                    phones=["+7 916 123-45-67"])).created[0]
    b = write(hub_db, ContactRecord(source="crm", external_id="2", first_name="Иван", last_name="Петров",
                                    emails=["son@mail.ru"])).created[0]
    with hub_db.engine.begin() as conn:
        consent.record(conn, b, "sms", "marketing", "granted", source="form", at=WHEN)
    write(hub_db, ContactRecord(source="crm", external_id="2", first_name="Иван", last_name="Петров",
                                phones=["+7 916 123-45-67"], emails=["son@mail.ru"]))
    with hub_db.engine.begin() as conn:
        consent.record(conn, a, "sms", "marketing", "withdrawn", source="unsubscribe_link",
                       at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
        merge_id = conn.execute(select(ContactMerge.id)).scalar_one()
    unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="cli")
    with hub_db.engine.connect() as conn:
        assert consent.current(conn, a)[("sms", "marketing")] == "withdrawn"
        assert consent.current(conn, b)[("sms", "marketing")] == "withdrawn"
