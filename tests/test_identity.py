"""Identity resolution: same valid phone, email or reference → same person; names never merge."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from hub import consent, contacts, dedupe, identity, importer, sync
from hub.hookspecs import hookimpl
from hub.models import Contact, ContactMerge
from hub.records import ContactRecord
from tests.conftest import HubDB
from tests.support.cli import cli

pytestmark = pytest.mark.both_databases  # identity resolution and merges


class MergeListener:
    """A test plugin: every contact_merged call, with what the contacts held at that moment."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    @hookimpl
    def contact_merged(self, conn, settings, survivor_id: int, merged_id: int, merge_id: int, reason: dict) -> None:
        still_there = conn.execute(select(Contact.id).where(Contact.id == merged_id)).first() is not None
        logged = conn.execute(select(ContactMerge.merged_id).where(ContactMerge.id == merge_id)).scalar()
        self.calls.append({"pair": (survivor_id, merged_id), "reason": reason, "settings": settings,
                           "merged_still_there": still_there, "logged": logged})


def write(db: HubDB, *records: ContactRecord) -> identity.Resolution:
    with db.engine.begin() as conn:
        return sync.write_contacts(conn, list(records), db.settings, sync.Counts())


def all_contacts(db: HubDB) -> list[dict]:
    with db.engine.connect() as conn:
        return list(contacts.iter_contacts(conn))


def test_same_phone_in_other_writing_is_one_person(hub_db: HubDB) -> None:
    write(hub_db, ContactRecord(source="a", first_name="Иван", phones=["8 (916) 123-45-67"]))
    write(hub_db, ContactRecord(source="b", first_name="Иван", phones=["+7 916 1234567"], emails=["I@X.RU"]))
    (only,) = all_contacts(hub_db)
    assert only["phones"] == ["+79161234567"]
    assert only["emails"] == ["i@x.ru"]


def test_transitive_links_within_one_chunk(hub_db: HubDB) -> None:
    result = write(
        hub_db,
        ContactRecord(source="a", external_id="1", phones=["9161234567"]),
        ContactRecord(source="a", external_id="2", phones=["+79161234567"], emails=["c@mail.ru"]),
        ContactRecord(source="b", external_id="3", emails=["C@Mail.ru"]),
    )
    assert len(result.created) == 1
    assert len(set(result.contact_ids)) == 1
    (only,) = all_contacts(hub_db)
    assert sorted(r["id"] for r in only["external_refs"]) == ["1", "2", "3"]


def test_a_bridging_record_merges_two_existing_contacts_and_logs_where_values_came_from(hub_db: HubDB) -> None:
    write(hub_db, ContactRecord(source="crm", external_id="10", first_name="Анна", phones=["+79161112233"]))
    write(hub_db, ContactRecord(source="shop", external_id="20", last_name="Смирнова", emails=["anna@mail.ru"]))
    assert len(all_contacts(hub_db)) == 2
    result = write(hub_db, ContactRecord(source="form", phones=["89161112233"], emails=["anna@mail.ru"]))
    assert len(result.merged) == 1
    (only,) = all_contacts(hub_db)
    assert (only["first_name"], only["last_name"]) == ("Анна", "Смирнова")
    with hub_db.engine.connect() as conn:
        merge = conn.execute(select(ContactMerge)).one()
        card = contacts.card(conn, only["id"])
    assert merge.survivor_id == only["id"]
    assert merge.snapshot["provenance"]["last_name"] == "shop"
    assert {i["source"] for i in merge.snapshot["identities"]} == {"shop"}
    assert "phone:+79161112233" in merge.reason["keys"] or "email:anna@mail.ru" in merge.reason["keys"]
    assert card["provenance"]["first_name"] == "crm" and card["provenance"]["last_name"] == "shop"
    assert {i["source"] for i in card["identities"]} == {"crm", "shop"}


def test_namesakes_stay_apart(hub_db: HubDB) -> None:
    write(hub_db,
          ContactRecord(source="a", first_name="Иван", last_name="Иванов", middle_name="Иванович",
                        phones=["+79160000001"], city="Москва"),
          ContactRecord(source="a", first_name="Иван", last_name="Иванов", middle_name="Иванович",
                        phones=["+79160000002"], city="Казань"),
          ContactRecord(source="a", first_name="Иван", last_name="Иванов", middle_name="Иванович"))
    assert len(all_contacts(hub_db)) == 3


def test_invalid_values_are_kept_flagged_and_never_matched(hub_db: HubDB) -> None:
    write(hub_db, ContactRecord(source="a", first_name="Олег", phones=["нет"], emails=["oleg@"]))
    write(hub_db, ContactRecord(source="a", first_name="Пётр", phones=["нет"], emails=["oleg@"]))
    people = all_contacts(hub_db)
    assert len(people) == 2
    assert all(p["invalid_phones"] == ["нет"] and p["invalid_emails"] == ["oleg@"] for p in people)
    assert all(p["phones"] == [] for p in people)


def test_resync_of_the_same_record_changes_nothing(hub_db: HubDB) -> None:
    record = ContactRecord(source="crm", external_id="7", first_name="Юлия", phones=["+79035550000"])
    write(hub_db, record)
    second = write(hub_db, record)
    assert second.created == [] and second.updated == []
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Contact)).scalar_one() == 1


def test_a_source_corrects_its_own_value_but_cannot_overwrite_another_sources(hub_db: HubDB) -> None:
    write(hub_db, ContactRecord(source="crm", external_id="1", first_name="Ольга", phones=["+79035550001"]))
    write(hub_db, ContactRecord(source="shop", external_id="9", first_name="Оля", phones=["+79035550001"]))
    assert all_contacts(hub_db)[0]["first_name"] == "Ольга"
    write(hub_db, ContactRecord(source="crm", external_id="1", first_name="Ольга Петровна"))
    assert all_contacts(hub_db)[0]["first_name"] == "Ольга Петровна"


def test_merge_keeps_the_stricter_consent_and_tells_plugins(hub_db: HubDB, plugin_manager) -> None:
    # hook:contact_merged
    listener = MergeListener()
    plugin_manager.register(listener)
    a = write(hub_db, ContactRecord(source="a", phones=["+79161230000"])).created[0]
    b = write(hub_db, ContactRecord(source="b", emails=["x@y.ru"])).created[0]
    with hub_db.engine.begin() as conn:
        consent.record(conn, a, "email", "marketing", "granted", source="form")
        consent.record(conn, b, "email", "marketing", "withdrawn", source="unsubscribe")
        consent.record(conn, b, "sms", "marketing", "granted", source="form")
    # A later grant on the survivor's side must not win over the other's withdrawal.
    with hub_db.engine.begin() as conn:
        consent.record(conn, a, "email", "marketing", "granted", source="form")
    write(hub_db, ContactRecord(source="c", phones=["+79161230000"], emails=["x@y.ru"]))
    [call] = listener.calls
    assert call["pair"] == (a, b) and call["settings"] is hub_db.settings
    assert call["reason"]["rule"] == "shared identifier" and call["reason"]["via"] == ["c"]
    # Inside the merge: logged already, the merged contact not yet deleted (its foreign keys would
    # take a plugin's rows with it); gone once the merge is over.
    assert call["logged"] == b and call["merged_still_there"]
    assert [c["id"] for c in all_contacts(hub_db)] == [a]
    with hub_db.engine.connect() as conn:
        state = consent.current(conn, a)
    assert state[("email", "marketing")] == "withdrawn"
    assert state[("sms", "marketing")] == "granted"


def test_every_way_of_merging_tells_plugins_once_per_merged_contact(hub_db: HubDB, plugin_manager,
                                                                    tmp_path: Path, monkeypatch) -> None:
    listener = MergeListener()
    plugin_manager.register(listener)

    # A sync chunk that bridges three known contacts: two merges, one call each.
    a, b, c = (write(hub_db, ContactRecord(source="s", emails=[f"{n}@x.ru"])).created[0] for n in "abc")
    write(hub_db, ContactRecord(source="s", emails=["a@x.ru", "b@x.ru", "c@x.ru"]))
    assert sorted(call["pair"] for call in listener.calls) == [(a, b), (a, c)]

    # An import row that bridges two.
    d, e = (write(hub_db, ContactRecord(source="s", phones=[f"+7916555000{n}"])).created[0] for n in (1, 2))
    listener.calls.clear()
    path = tmp_path / "people.csv"
    path.write_text("Телефон,Моб. телефон\n+79165550001,+79165550002\n", encoding="utf-8")
    importer.import_contacts(hub_db.engine, hub_db.settings, path, parallel=False)
    assert [call["pair"] for call in listener.calls] == [(d, e)]

    # `hub dedupe` re-reading a phone that a wrong default region had flagged.
    by = replace(hub_db.settings, default_region="BY")
    f = write(hub_db, ContactRecord(source="x", phones=["29 123 45 67"])).created[0]
    with hub_db.engine.begin() as conn:
        g = sync.write_contacts(conn, [ContactRecord(source="y", phones=["+375 29 123-45-67"])], by,
                                sync.Counts()).created[0]
    listener.calls.clear()
    assert len(dedupe.run(hub_db.engine, by).merged) == 1
    [call] = listener.calls
    assert call["pair"] == (min(f, g), max(f, g)) and call["reason"]["via"] == ["dedupe"] and call["settings"] is by

    # A merge by hand, through `hub dedupe --merge` (the admin's merge takes the same door).
    h, i = (write(hub_db, ContactRecord(source="s", first_name="Ян", emails=[f"{n}@y.ru"])).created[0]
            for n in "hi")
    listener.calls.clear()
    result = CliRunner().invoke(cli, ["dedupe", "--merge", str(h), str(i)])
    assert result.exit_code == 0, result.output
    [call] = listener.calls
    assert call["pair"] == (h, i) and call["reason"] == {"rule": "merged by hand", "by": "cli"}

    # Any other caller of the merge itself.
    j, k = (write(hub_db, ContactRecord(source="s", emails=[f"{n}@z.ru"])).created[0] for n in "jk")
    listener.calls.clear()
    with hub_db.engine.begin() as conn:
        merge_id = identity.merge_contacts(conn, j, k, reason={"rule": "merged by hand"}, settings=hub_db.settings)
    assert [(call["pair"], call["logged"]) for call in listener.calls] == [((j, k), k)]
    with hub_db.engine.connect() as conn:
        assert conn.execute(select(ContactMerge.merged_id).where(ContactMerge.id == merge_id)).scalar() == k


def test_a_plugin_can_give_rows_back_when_a_merge_is_undone(hub_db: HubDB, plugin_manager) -> None:
    # hook:contact_unmerged
    # The unmerge itself comes later; what the hook promises is enough for a plugin to restore its
    # rows: it notes under the merge's id what it moved, and gets that id back with the snapshot.
    class Cards:
        def __init__(self) -> None:
            self.owner: dict[str, int] = {}
            self.moved: dict[int, list[str]] = {}

        @hookimpl
        def contact_merged(self, survivor_id: int, merged_id: int, merge_id: int) -> None:
            mine = [card for card, owner in self.owner.items() if owner == merged_id]
            self.moved[merge_id] = mine
            self.owner.update({card: survivor_id for card in mine})

        @hookimpl
        def contact_unmerged(self, conn, settings, survivor_id: int, restored_id: int, merge_id: int,
                             snapshot: dict) -> None:
            assert snapshot["identities"][0]["value"] == "b@x.ru"
            self.owner.update({card: restored_id for card in self.moved.pop(merge_id)})

    cards = Cards()
    plugin_manager.register(cards)
    a = write(hub_db, ContactRecord(source="s", emails=["a@x.ru"])).created[0]
    b = write(hub_db, ContactRecord(source="s", emails=["b@x.ru"])).created[0]
    cards.owner = {"A-1": a, "B-1": b, "B-2": b}
    write(hub_db, ContactRecord(source="s", emails=["a@x.ru", "b@x.ru"]))
    assert set(cards.owner.values()) == {a}
    with hub_db.engine.begin() as conn:
        merge = conn.execute(select(ContactMerge).where(ContactMerge.merged_id == b)).one()
        plugin_manager.hook.contact_unmerged(conn=conn, settings=hub_db.settings, survivor_id=a, restored_id=b,
                                             merge_id=merge.id, snapshot=merge.snapshot)
    assert cards.owner == {"A-1": a, "B-1": b, "B-2": b}
