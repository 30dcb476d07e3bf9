"""`hub dedupe` lists merges a person should check, brings an older base up to the rules, keeps undone pairs apart.

Hub never splits a contact by itself: a merge made through a value later
found shared, or one that gave a contact somebody else's first name, is
listed with the command that undoes it, and a person decides.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from hub import dedupe, identity, sync, unmerge
from hub.db import utcnow
from hub.models import Contact, ContactIdentity, ContactMerge, ContactsApart
from hub.records import ContactRecord
from tests.conftest import HubDB
from tests.support.admin import AdminEnv, admin_env, client_as, plain, post, text  # noqa: F401
from tests.support.cli import cli

pytestmark = pytest.mark.both_databases  # merges, shared values, pairs kept apart

EN = {"HUB_LANGUAGE": "en", "COLUMNS": "200"}
identities_t = ContactIdentity.__table__


def write(db: HubDB, *found: ContactRecord) -> list[int]:
    with db.engine.begin() as conn:
        ids = sync.write_contacts(conn, list(found), db.settings, sync.Counts()).contact_ids
    return [cid for cid in ids if cid is not None]  # a record that holds nothing has no contact


def merge(db: HubDB, survivor: int, other: int, keys: list[str] | None = None) -> int:
    reason: dict[str, Any] = ({"rule": "shared identifier", "keys": keys, "via": ["crm"]} if keys
                              else {"rule": "merged by hand", "by": "cli"})
    with db.engine.begin() as conn:
        return identity.merge_contacts(conn, survivor, other, reason=reason, settings=db.settings, actor="cli")


def dedupe_json(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, ["dedupe", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_merge_through_a_mobile_later_found_shared_is_listed_for_review(hub_db: HubDB) -> None:
    ivan = write(hub_db, ContactRecord(source="crm", external_id="1", first_name="Иван", last_name="Петров",
                                       phones=["+7 916 123-45-67"]))[0]
    vanya = write(hub_db, ContactRecord(source="crm", external_id="2", first_name="Ваня", last_name="Петров",
                                        emails=["vanya@example.ru"]))[0]
    # The son's record brings the family mobile: the two Petrovs become one (their names agree).
    write(hub_db, ContactRecord(source="crm", external_id="2", first_name="Ваня", last_name="Петров",
                                emails=["vanya@example.ru"], phones=["+7 916 123-45-67"]))
    report = dedupe_json()
    assert report["review"] == [] and report["marked_shared"] == 0
    # Then the mother gives the same mobile: three holders whose names differ, so it is a shared value now.
    write(hub_db, ContactRecord(source="shop", first_name="Мария", last_name="Петрова", phones=["89161234567"]))
    with hub_db.engine.connect() as conn:
        shared = conn.execute(select(identities_t.c.shared).where(identities_t.c.value == "+79161234567")).scalars()
        assert set(shared) == {"names"}
        merge_id = conn.execute(select(ContactMerge.id)).scalar_one()
    (item,) = dedupe_json()["review"]
    assert item["merge_id"] == merge_id and (item["survivor"], item["merged"]) == (ivan, vanya)
    assert item["why"] == "value now shared" and item["values"] == ["phone:+79161234567"] and item["names"] == []
    shown = CliRunner().invoke(cli, ["dedupe"], env={"COLUMNS": "200"}).output
    assert "1 слияние стоит проверить (Hub никогда не разделяет контакт сам):" in shown
    assert (f"слияние №{merge_id}: #{vanya} в #{ivan} — значение, по которому объединили, теперь общее "
            f"(+7 916 123-45-67); отменить: hub contacts unmerge {merge_id}") in shown
    english = CliRunner().invoke(cli, ["dedupe"], env=EN).output
    assert (f"merge №{merge_id}: #{vanya} into #{ivan} — a value it was joined through is now shared "
            f"(+7 916 123-45-67); to undo: hub contacts unmerge {merge_id}") in english
    # Undone, the merge is not listed any more.
    unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="cli")
    assert dedupe_json()["review"] == []


def test_a_value_already_shared_when_it_joined_agreeing_names_is_not_listed(hub_db: HubDB) -> None:
    a, b = write(hub_db,
                 ContactRecord(source="crm", first_name="Пётр", last_name="Соколов", phones=["+7 495 700-00-01"]),
                 ContactRecord(source="shop", first_name="Петр", last_name="Соколов", emails=["p@sokolov.ru"]))
    with hub_db.engine.begin() as conn:
        conn.execute(update(identities_t).where(identities_t.c.contact_id == b).values(shared="common"))
        conn.execute(identities_t.insert().values(contact_id=b, kind="phone", value="+74957000001", raw="x",
                                                  valid=True, source="shop", created_at=utcnow(), shared="common"))
        conn.execute(update(identities_t).where(identities_t.c.contact_id == a).values(shared="common"))
    merge(hub_db, a, b, keys=["phone:+74957000001"])
    assert dedupe_json()["review"] == []


def test_several_first_names_are_listed_and_forms_of_one_name_are_not(hub_db: HubDB) -> None:
    anna, maria, sasha, alexander = write(
        hub_db,
        ContactRecord(source="crm", first_name="Анна", last_name="Орлова", phones=["+7 916 200-00-01"]),
        ContactRecord(source="crm", first_name="Мария", last_name="Орлова", phones=["+7 916 200-00-02"]),
        ContactRecord(source="crm", first_name="Саша", last_name="Белов", phones=["+7 916 200-00-03"]),
        ContactRecord(source="crm", first_name="Александр", last_name="Белов", phones=["+7 916 200-00-04"]))
    wrong = merge(hub_db, anna, maria)
    merge(hub_db, alexander, sasha)
    report = dedupe_json()
    assert report["review"] == [{
        "merge_id": wrong, "survivor": anna, "merged": maria, "why": "several first names", "values": [],
        "names": ["Орлова Анна", "Орлова Мария"], "rule": "merged by hand", "actor": "cli",
        "at": report["review"][0]["at"]}]
    shown = CliRunner().invoke(cli, ["dedupe"], env={"COLUMNS": "200"}).output
    assert (f"слияние №{wrong}: #{maria} в #{anna} — несколько разных имён (Орлова Анна / Орлова Мария); "
            f"отменить: hub contacts unmerge {wrong}") in shown
    english = CliRunner().invoke(cli, ["dedupe"], env=EN).output
    assert "1 merge to check (Hub never splits a contact by itself):" in english
    assert f"— several first names (Орлова Анна / Орлова Мария); to undo: hub contacts unmerge {wrong}" in english
    with hub_db.engine.connect() as conn:
        assert len(dedupe.review(conn, limit=1)) == 1


def test_dedupe_marks_toll_free_lines_company_mailboxes_and_faxes_of_an_older_base_shared(hub_db: HubDB) -> None:
    firm, client = write(
        hub_db,
        ContactRecord(source="crm", first_name="Ольга", last_name="Ветрова",
                      phones=["8 800 555-35-35", "+7 916 300-00-01", "+7 495 300-00-02"], emails=["info@firm.ru"],
                      labels={"+7 495 300-00-02": "fax"}),
        ContactRecord(source="crm", first_name="Ольга", last_name="Ветрова", emails=["olga@example.ru"]))
    assert firm != client
    # As an older Hub stored them: every value personal, and one merge made through the 8-800 line.
    with hub_db.engine.begin() as conn:
        conn.execute(update(identities_t).values(shared=None))
    merge_id = merge(hub_db, firm, client, keys=["phone:+78005553535"])
    report = dedupe_json()
    assert report["marked_shared"] == 3
    with hub_db.engine.connect() as conn:
        rows = conn.execute(select(identities_t.c.value, identities_t.c.shared)).all()
    assert dict(rows) == {"+78005553535": "toll_free", "+79163000001": None, "+74953000002": "fax",
                          "info@firm.ru": "role_mailbox", "olga@example.ru": None}
    assert [(i["merge_id"], i["why"], i["values"]) for i in report["review"]] == [
        (merge_id, "value now shared", ["phone:+78005553535"])]
    again = dedupe_json()
    assert again["marked_shared"] == 0 and len(again["review"]) == 1  # marked once; the merge waits for a person
    shown = CliRunner().invoke(cli, ["dedupe"], env={"COLUMNS": "200"}).output
    assert "отмечен" not in shown and "1 слияние стоит проверить" in shown
    with hub_db.engine.begin() as conn:
        conn.execute(update(identities_t).where(identities_t.c.value == "info@firm.ru").values(shared=None))
    assert "1 значение отмечено как общее: бесплатная линия, общий ящик компании или факс" in CliRunner().invoke(
        cli, ["dedupe"], env={"COLUMNS": "200"}).output
    with hub_db.engine.begin() as conn:
        conn.execute(update(identities_t).where(identities_t.c.value == "info@firm.ru").values(shared=None))
    english = CliRunner().invoke(cli, ["dedupe"], env=EN).output
    assert "Marked 1 value shared: a toll-free line, a company mailbox or a fax never identifies one person." in english


def test_namesakes_kept_apart_are_not_suggested_again(hub_db: HubDB) -> None:
    a, b, c = write(hub_db, *(ContactRecord(source="crm", first_name="Иван", last_name="Петров",
                                            phones=[f"+7 916 400-00-0{n}"]) for n in range(3)))
    assert [s["contact_ids"] for s in dedupe_json()["suggestions"]] == [[a, b, c]]
    with hub_db.engine.begin() as conn:
        conn.execute(ContactsApart.__table__.insert().values(low_id=a, high_id=b, actor="cli", at=utcnow()))
    assert [s["contact_ids"] for s in dedupe_json()["suggestions"]] == [[a, c]]
    with hub_db.engine.begin() as conn:
        conn.execute(ContactsApart.__table__.insert().values(low_id=a, high_id=c, actor="cli", at=utcnow()))
    assert [s["contact_ids"] for s in dedupe_json()["suggestions"]] == [[b, c]]
    with hub_db.engine.begin() as conn:
        conn.execute(ContactsApart.__table__.insert().values(low_id=b, high_id=c, actor="cli", at=utcnow()))
    assert dedupe_json()["suggestions"] == []
    assert "Похожих нет" in CliRunner().invoke(cli, ["dedupe"]).output


def test_namesakes_with_different_patronymics_are_never_offered_together(hub_db: HubDB) -> None:
    father, son, plain_name = write(hub_db, *(
        ContactRecord(source="crm", first_name="Сергей", last_name="Волков", middle_name=middle,
                      phones=[f"+7 916 500-00-0{n}"]) for n, middle in enumerate(("Петрович", "Сергеевич", None))))
    found = {tuple(s["contact_ids"]): s["name"] for s in dedupe_json()["suggestions"]}
    # The one without a patronymic may be either of them: offered with each, never the two together.
    assert found == {(father, plain_name): "Волков Сергей Петрович", (son, plain_name): "Волков Сергей Сергеевич"}


def test_the_json_report_keeps_its_keys_and_adds_review_and_marked_shared(hub_db: HubDB) -> None:
    assert set(dedupe_json()) == {"reparsed", "merged", "suggestions", "marked_shared", "review"}


def wrong_merge_in_admin(env: AdminEnv) -> tuple[int, int, int]:
    """The two seeded Petrovs merged, and Anna's first name given to the survivor: a merge to check."""
    survivor, other = env.ids["petrov_1"], env.ids["petrov_2"]
    with env.engine.begin() as conn:
        conn.execute(update(Contact.__table__).where(Contact.id == other).values(first_name="Павел"))
        merge_id = identity.merge_contacts(conn, survivor, other, reason={"rule": "merged by hand", "by": "cli"},
                                           settings=env.settings, actor="cli")
    return survivor, other, merge_id


def test_the_duplicates_page_lists_merges_to_check_with_an_undo_button(admin_env: AdminEnv) -> None:  # noqa: F811
    survivor, other, merge_id = wrong_merge_in_admin(admin_env)
    page = text(client_as(admin_env, "marketer").get("/contacts/duplicates"))
    section = page[page.index('id="review"'):page.index("</section>", page.index('id="review"'))]
    assert "Проверить слияния" in section and f'data-merge="{merge_id}"' in section
    assert "несколько разных имён (Петров Пётр / Петров Павел)" in section
    assert f'action="/contacts/merges/{merge_id}/undo"' in section and "Отменить слияние" in section
    viewer = text(client_as(admin_env, "viewer").get("/contacts/duplicates"))
    assert f'data-merge="{merge_id}"' in viewer and "/undo" not in viewer


def test_undoing_a_merge_from_the_card_as_marketer_and_refusals(admin_env: AdminEnv) -> None:  # noqa: F811
    survivor, other, merge_id = wrong_merge_in_admin(admin_env)
    marketer = client_as(admin_env, "marketer")
    card = text(marketer.get(f"/contacts/{survivor}"))
    assert f'action="/contacts/merges/{merge_id}/undo"' in card and "Отменить слияние" in card
    assert "Петров Павел" in card  # who the merged contact was
    viewer = client_as(admin_env, "viewer")
    assert "/undo" not in text(viewer.get(f"/contacts/{survivor}"))
    refused = post(viewer, f"/contacts/merges/{merge_id}/undo", token_from=f"/contacts/{survivor}")
    assert refused.status_code == 403
    expired = marketer.post(f"/contacts/merges/{merge_id}/undo", data={"back": f"/contacts/{survivor}"})
    assert expired.status_code in (302, 400)
    with admin_env.engine.connect() as conn:
        assert conn.execute(select(ContactMerge.undone_at).where(ContactMerge.id == merge_id)).scalar_one() is None
    done = post(marketer, f"/contacts/merges/{merge_id}/undo", {"back": f"/contacts/{survivor}"},
                token_from=f"/contacts/{survivor}", follow_redirects=True)
    page = plain(done)
    assert done.request.path == f"/contacts/{other}"
    assert f"Слияние отменено: #{other} снова самостоятельный контакт, отдельно от #{survivor}." in page
    with admin_env.engine.connect() as conn:
        undone = conn.execute(select(ContactMerge.undone_by).where(ContactMerge.id == merge_id)).scalar_one()
    assert undone == "marketer@shop.example"
    card = text(marketer.get(f"/contacts/{survivor}"))
    assert f"/contacts/merges/{merge_id}/undo" not in card and "отменено" in card
    again = post(marketer, f"/contacts/merges/{merge_id}/undo", {"back": f"/contacts/{survivor}"},
                 token_from=f"/contacts/{survivor}", follow_redirects=True)
    assert f"Слияние №{merge_id} уже отменено." in plain(again)
    assert again.request.path == f"/contacts/{survivor}"


def test_a_merge_whose_survivor_was_merged_on_is_listed_with_who_holds_it_now(hub_db: HubDB) -> None:
    anna, maria, anya = write(
        hub_db,
        ContactRecord(source="crm", first_name="Анна", last_name="Орлова", phones=["+7 916 500-00-01"]),
        ContactRecord(source="crm", first_name="Мария", last_name="Орлова", phones=["+7 916 500-00-02"]),
        ContactRecord(source="shop", first_name="Аня", last_name="Орлова", emails=["anya@example.ru"]))
    wrong = merge(hub_db, anna, maria)
    merge(hub_db, anya, anna)
    (item,) = dedupe_json()["review"]
    assert (item["merge_id"], item["survivor"], item["merged"]) == (wrong, anya, maria)
    assert item["names"] == ["Орлова Аня", "Орлова Мария"]


def test_contacts_show_numbers_each_merge_and_says_how_to_undo_it(hub_db: HubDB) -> None:
    anna, maria = write(
        hub_db,
        ContactRecord(source="crm", first_name="Анна", last_name="Орлова", phones=["+7 916 600-00-01"]),
        ContactRecord(source="crm", first_name="Мария", last_name="Орлова", phones=["+7 916 600-00-02"]))
    merge_id = merge(hub_db, anna, maria, keys=["phone:+79166000002"])
    shown = CliRunner().invoke(cli, ["contacts", "show", str(anna)], env={"COLUMNS": "200"}).output
    assert f"№{merge_id} присоединён #{maria}" in shown
    assert "совпал телефон, e-mail или ID (+7 916 600-00-02)" in shown
    assert f"отменить: hub contacts unmerge {merge_id}" in shown
    unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="cli")
    shown = CliRunner().invoke(cli, ["contacts", "show", str(anna)], env=EN).output
    assert f"№{merge_id} merged #{maria}" in shown and "; undone at " in shown and "(cli)" not in shown
    assert "by cli" in shown and "hub contacts unmerge" not in shown


def test_a_long_review_shows_a_page_and_says_where_the_rest_is(hub_db: HubDB) -> None:
    from hub.commands import dedupe as command

    pairs = [write(hub_db,
                   ContactRecord(source="crm", first_name="Анна", last_name=f"Орлова{n}", emails=[f"a{n}@x.ru"]),
                   ContactRecord(source="crm", first_name="Мария", last_name=f"Орлова{n}", emails=[f"m{n}@x.ru"]))
             for n in range(command.PAGE_SIZE + 2)]
    for a, b in pairs:
        merge(hub_db, a, b)
    assert len(dedupe_json()["review"]) == command.PAGE_SIZE + 2
    shown = CliRunner().invoke(cli, ["dedupe"], env={"COLUMNS": "200"}).output
    assert shown.count("отменить: hub contacts unmerge") == command.PAGE_SIZE
    assert "…и ещё 2 слияния: все покажет hub dedupe --json." in shown
