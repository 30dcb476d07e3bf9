"""Identity resolution: same valid phone, email or reference → same person; names never merge."""

from __future__ import annotations

from sqlalchemy import func, select

from hub import consent, contacts, identity, sync
from hub.hookspecs import hookimpl
from hub.models import Contact, ContactMerge
from hub.records import ContactRecord
from tests.conftest import HubDB


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
    seen: list[tuple[int, int, dict]] = []

    class Listener:
        @hookimpl
        def contact_merged(self, survivor_id: int, merged_id: int, reason: dict) -> None:
            seen.append((survivor_id, merged_id, reason))

    plugin_manager.register(Listener())
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
    assert seen and seen[0][:2] == (a, b)
    with hub_db.engine.connect() as conn:
        state = consent.current(conn, a)
    assert state[("email", "marketing")] == "withdrawn"
    assert state[("sms", "marketing")] == "granted"
