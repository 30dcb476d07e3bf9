"""A shared phone or email shown as shared wherever a person reads the contact: the CLI card, its JSON, the admin."""

from __future__ import annotations

import json
from dataclasses import replace

from click.testing import CliRunner
from sqlalchemy import select, update

from hub import i18n, identity, records, sync
from hub.admin import create_app
from hub.contacts import value_note
from hub.models import ContactIdentity
from hub.records import ContactRecord
from tests.conftest import HubDB
from tests.support.admin import AdminEnv, admin_env, client_as, sign_in, text  # noqa: F401
from tests.support.cli import cli

SWITCHBOARD = "+7 495 111-22-33"
EN = {"HUB_LANGUAGE": "en", "COLUMNS": "200"}
RU = {"COLUMNS": "200"}


def write(db: HubDB, *found: ContactRecord) -> list[int]:
    with db.engine.begin() as conn:
        ids = sync.write_contacts(conn, list(found), db.settings, sync.Counts()).contact_ids
    return [cid for cid in ids if cid is not None]  # a record that holds nothing has no contact


def office(db: HubDB) -> tuple[int, int]:
    """Two colleagues, each with a mobile of their own, who both give the office switchboard as their work phone."""
    ids = write(db,
                ContactRecord(source="bitrix24", external_id="1", first_name="Анна", last_name="Смирнова",
                              phones=[SWITCHBOARD, "+7 916 100-00-01"], labels={SWITCHBOARD: "work",
                                                                             "+7 916 100-00-01": "mobile"}),
                ContactRecord(source="bitrix24", external_id="2", first_name="Олег", last_name="Кузнецов",
                              phones=[SWITCHBOARD, "+7 916 100-00-02"], labels={SWITCHBOARD: "work"}))
    assert len(set(ids)) == 2, "two people with different names never become one through a switchboard"
    return ids[0], ids[1]


def test_every_type_and_reason_has_a_title_in_both_languages() -> None:
    assert set(records.LABELS) <= set(identity.LABEL_TITLES)
    assert set(identity.SHARED_REASONS) <= set(identity.SHARED_TITLES)
    assert [identity.label_title(label) for label in records.LABELS] == [
        "рабочий", "мобильный", "домашний", "факс", "для рассылок", "личный", "другой"]
    assert identity.label_title(None) == "" and identity.label_title("pager") == "pager"
    assert identity.shared_title("toll_free") == "бесплатная линия 8-800"
    assert value_note("work", "names") == "рабочий, общий: у людей с разными именами"
    assert value_note(None, "role_mailbox") == "общий: общий ящик компании"
    assert value_note("mobile", None) == "мобильный" and value_note(None, None) == ""
    with i18n.use_language("en"):
        assert identity.label_title("mailing") == "for mailings"
        assert value_note("work", "names") == "work, shared: used by people with different names"


def test_contacts_show_says_which_values_are_shared_and_why(hub_db: HubDB) -> None:
    anna, oleg = office(hub_db)
    shown = CliRunner().invoke(cli, ["contacts", "show", str(anna)], env=RU)
    assert shown.exit_code == 0, shown.output
    assert "+7 495 111-22-33 — рабочий, общий: у людей с разными именами" in shown.output
    assert "+7 916 100-00-01 — мобильный; из bitrix24" in shown.output
    english = CliRunner().invoke(cli, ["contacts", "show", str(oleg)], env=EN)
    assert "+7 495 111-22-33 — work, shared: used by people with different names" in english.output
    assert "+7 916 100-00-02 " in english.output and "+7 916 100-00-02 —" not in english.output  # no type given


def test_json_gives_each_value_its_label_and_shared_reason(hub_db: HubDB) -> None:
    anna, oleg = office(hub_db)
    card = json.loads(CliRunner().invoke(cli, ["contacts", "show", str(anna), "--json"]).stdout)
    by_value = {i["value"]: i for i in card["identities"]}
    assert by_value["+74951112233"]["shared"] == "names" and by_value["+74951112233"]["label"] == "work"
    assert by_value["+79161000001"]["shared"] is None and by_value["+79161000001"]["label"] == "mobile"
    assert {"kind", "value", "raw", "valid", "source", "added_at"} <= set(by_value["+74951112233"])
    people = json.loads(CliRunner().invoke(cli, ["contacts", "list", "--json"]).stdout)
    assert [p["id"] for p in people] == [anna, oleg]
    for person in people:  # the old keys stay as they were: phones are E.164 strings
        assert "+74951112233" in person["phones"] and all(isinstance(p, str) for p in person["phones"])
        entry = next(i for i in person["identities"] if i["value"] == "+74951112233")
        assert entry == {"kind": "phone", "value": "+74951112233", "valid": True, "label": "work", "shared": "names"}


def test_a_value_kept_apart_shows_its_own_reason(hub_db: HubDB) -> None:
    (vera,) = write(hub_db, ContactRecord(source="shop", first_name="Вера", emails=["vera@example.ru"]))
    with hub_db.engine.begin() as conn:
        conn.execute(update(ContactIdentity.__table__).values(shared="unmerged"))
    shown = CliRunner().invoke(cli, ["contacts", "show", str(vera)], env=RU)
    assert "vera@example.ru — общий: разделены вручную" in shown.output


def test_the_admin_card_badges_a_shared_value_with_its_reason_and_type(admin_env: AdminEnv) -> None:  # noqa: F811
    anna, _oleg = office(admin_env.db)
    page = text(client_as(admin_env, "viewer").get(f"/contacts/{anna}"))
    assert ('<span class="badge shared" data-shared="names" title="у людей с разными именами">общий</span>'
            in page)
    assert 'data-label="work">рабочий<' in page and 'data-label="mobile">мобильный<' in page
    with admin_env.engine.connect() as conn:
        personal = conn.execute(select(ContactIdentity.shared).where(ContactIdentity.value == "+79161000001")
                                ).scalar_one()
    assert personal is None and page.count('class="badge shared"') == 1
    english = sign_in(create_app(replace(admin_env.settings, language="en")).test_client(),
                      admin_env.users["viewer"])
    page = text(english.get(f"/contacts/{anna}"))
    assert 'title="used by people with different names">shared</span>' in page and 'data-label="work">work<' in page


def test_the_contacts_table_and_the_duplicates_page_mark_shared_values(admin_env: AdminEnv) -> None:  # noqa: F811
    office(admin_env.db)
    table = CliRunner().invoke(cli, ["contacts", "list"], env={"COLUMNS": "250"}).output
    assert "+7 495 111-22-33 (общий)" in table and "+7 916 100-00-01 (общий)" not in table
    english = CliRunner().invoke(cli, ["contacts", "list"], env={**EN, "COLUMNS": "250"}).output
    assert "+7 495 111-22-33 (shared)" in english
    with admin_env.engine.begin() as conn:  # two namesakes of the seed, one of them with the switchboard too
        sync.write_contacts(conn, [ContactRecord(source="shop", first_name="Пётр", last_name="Петров",
                                                 phones=[SWITCHBOARD], labels={SWITCHBOARD: "work"})],
                            admin_env.settings, sync.Counts())
    page = text(client_as(admin_env, "viewer").get("/contacts/duplicates"))
    assert page.count('<span class="badge shared">общий</span>') >= 1


def test_the_columns_an_import_kept_are_on_the_card(hub_db: HubDB, tmp_path) -> None:  # type: ignore[no-untyped-def]
    sheet = tmp_path / "b24.csv"
    sheet.write_text("Имя;Фамилия;Мобильный телефон;Должность;Ответственный;Компания;Комментарий\n"
                     "Иван;Петров;8 916 000-00-01;Директор;Ольга Смирнова;ООО «Рога»;звонить после 18\n",
                     encoding="utf-8")
    assert CliRunner().invoke(cli, ["import", "contacts", str(sheet)]).exit_code == 0
    shown = CliRunner().invoke(cli, ["contacts", "show", "1"], env=RU).output
    assert "компания: ООО «Рога»" in shown
    assert "Должность: Директор" in shown and "Ответственный: Ольга Смирнова" in shown
    assert "Комментарий: звонить после 18" in shown


def test_the_admin_card_shows_the_company_and_the_kept_columns(admin_env: AdminEnv) -> None:  # noqa: F811
    (ivan,) = write(admin_env.db, ContactRecord(source="bitrix24", external_id="7", first_name="Иван",
                                                 last_name="Петров", phones=["+7 916 100-00-07"], company="ООО «Рога»",
                                                 attributes={"position": "Директор", "Комментарий": "после 18"}))
    page = text(client_as(admin_env, "viewer").get(f"/contacts/{ivan}"))
    assert "Компания <strong>ООО «Рога»</strong>" in page
    assert '<span class="attribute" data-field="position">Должность <strong>Директор</strong></span>' in page
    assert '<span class="attribute" data-field="Комментарий">Комментарий <strong>после 18</strong></span>' in page
