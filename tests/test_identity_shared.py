"""Shared phones and mailboxes: a switchboard, a household landline, a hotline or info@ never merges people.

Every case is a B2B or household base as our users' CRMs hold them; each
test states who the people are and checks Hub keeps exactly them.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select, update

from hub import identity, sync
from hub.models import Contact, ContactIdentity, ContactsApart
from hub.records import ContactRecord
from tests.conftest import HubDB

pytestmark = pytest.mark.both_databases  # shared values change which rows the unique index covers

SWITCHBOARD = "+7 495 111-22-33"


def write(db: HubDB, *records: ContactRecord) -> identity.Resolution:
    with db.engine.begin() as conn:
        return sync.write_contacts(conn, list(records), db.settings, sync.Counts())


def holders(db: HubDB, value: str) -> dict[int, str | None]:
    """contact id -> why the value is shared (None: it is the contact's own)."""
    with db.engine.connect() as conn:
        rows = conn.execute(select(ContactIdentity.contact_id, ContactIdentity.shared)
                            .where(ContactIdentity.value == value, ContactIdentity.valid))
        return {cid: shared for cid, shared in rows}


def person(source: str, ref: str, first: str | None, last: str | None, *, phones: list[str] = (),  # type: ignore[assignment]
           emails: list[str] = (), labels: dict[str, str] | None = None) -> ContactRecord:  # type: ignore[assignment]
    return ContactRecord(source=source, external_id=ref, first_name=first, last_name=last, phones=list(phones),
                         emails=list(emails), labels=labels or {})


def test_four_colleagues_on_one_switchboard_stay_four_people(hub_db: HubDB) -> None:
    staff = [("Иван", "Петров"), ("Мария", "Сидорова"), ("Олег", "Кузнецов"), ("Анна", "Смирнова")]
    result = write(hub_db, *[person("bitrix24", str(i), first, last, phones=[SWITCHBOARD],
                                    labels={SWITCHBOARD: "work"}) for i, (first, last) in enumerate(staff)])
    assert len(set(result.contact_ids)) == 4 and not result.merged
    shared = holders(hub_db, "+74951112233")
    assert len(shared) == 4 and set(shared.values()) == {"names"}


def test_a_colleague_arriving_later_marks_the_number_shared_without_splitting_anyone(hub_db: HubDB) -> None:
    first = write(hub_db, person("bitrix24", "1", "Иван", "Петров", phones=[SWITCHBOARD, "+7 916 000-00-01"]))
    second = write(hub_db, person("bitrix24", "2", "Мария", "Сидорова", phones=[SWITCHBOARD]))
    assert first.contact_ids != second.contact_ids and not second.merged
    assert second.shared == {("phone", "+74951112233"): "names"}
    assert holders(hub_db, "+74951112233") == {first.contact_ids[0]: "names", second.contact_ids[0]: "names"}
    assert holders(hub_db, "+79160000001") == {first.contact_ids[0]: None}  # his mobile stays his own


def test_husband_and_wife_on_one_home_landline_are_two_people(hub_db: HubDB) -> None:
    home = "8 (4712) 55-66-77"
    result = write(hub_db, person("amocrm", "1", "Иван", "Николаев", phones=[home], labels={home: "home"}),
                   person("amocrm", "2", "Мария", "Николаева", phones=[home], labels={home: "home"}))
    assert len(set(result.contact_ids)) == 2


def test_a_wife_written_with_a_diminutive_is_not_her_husband_on_their_family_mobile(hub_db: HubDB) -> None:
    """Саша is Александр or Александра; beside Иванова it is her, so the mobile they both give is shared."""
    family = "+7 916 321-54-76"
    husband = write(hub_db, person("amocrm", "1", "Александр", "Иванов", phones=[family]))
    wife = write(hub_db, person("import", "2", "Саша", "Иванова", phones=[family]))
    assert husband.contact_ids != wife.contact_ids and not wife.merged
    assert set(holders(hub_db, "+79163215476").values()) == {"names"}
    # and a later row of hers finds her alone, by the same mobile and her own mailbox
    again = write(hub_db, person("import", "3", "Александра", "Иванова", phones=[family],
                                 emails=["sasha.ivanova@mail.ru"]))
    assert again.contact_ids == wife.contact_ids


def test_customers_who_typed_the_hotline_are_never_one_person(hub_db: HubDB) -> None:
    hotline = "8-800-555-35-35"
    result = write(hub_db, person("import", "1", "Иван", None, phones=[hotline]),
                   person("import", "2", None, None, phones=[hotline]),
                   person("import", "3", "Иван", None, phones=[hotline]))
    assert len(set(result.contact_ids)) == 3
    assert set(holders(hub_db, "+78005553535").values()) == {"toll_free"}


def test_a_role_mailbox_names_nobody(hub_db: HubDB) -> None:
    result = write(hub_db, person("bitrix24", "1", "Иван", "Петров", emails=["info@roga.ru"]),
                   person("bitrix24", "2", "Иван", "Петров", emails=["INFO@roga.ru"]))
    assert len(set(result.contact_ids)) == 2
    assert set(holders(hub_db, "info@roga.ru").values()) == {"role_mailbox"}


def test_a_fax_names_nobody(hub_db: HubDB) -> None:
    fax = "+7 495 777-88-99"
    result = write(hub_db, person("bitrix24", "1", "Иван", "Петров", phones=[fax], labels={fax: "fax"}),
                   person("bitrix24", "2", "Иван", "Петров", phones=[fax], labels={fax: "fax"}))
    assert len(set(result.contact_ids)) == 2


def test_one_person_written_several_ways_is_still_one(hub_db: HubDB) -> None:
    mobile = "+7 916 555-66-77"
    result = write(hub_db, person("bitrix24", "1", "Пётр", "Соколов", phones=[mobile]),
                   person("amocrm", "7", "П.", "Соколов", phones=["8 916 555 66 77"]),
                   person("import", "r3", "Petr", "Sokolov", phones=["89165556677"]),
                   person("import", "r4", "Соколов", "Петр", phones=["9165556677"]))
    assert len(set(result.contact_ids)) == 1
    assert holders(hub_db, "+79165556677") == {result.contact_ids[0]: None}


def test_a_shared_number_still_joins_two_records_of_one_named_person(hub_db: HubDB) -> None:
    """Names decide whether a shared value can join two records: Иван Петров's second CRM card finds him."""
    write(hub_db, person("bitrix24", "1", "Иван", "Петров", phones=[SWITCHBOARD]),
          person("bitrix24", "2", "Мария", "Сидорова", phones=[SWITCHBOARD]))
    again = write(hub_db, person("amocrm", "9", "Иван", "Петров", phones=[SWITCHBOARD]))
    assert again.contact_ids[0] in holders(hub_db, "+74951112233")
    assert len(holders(hub_db, "+74951112233")) == 2


def test_a_name_alone_never_merges(hub_db: HubDB) -> None:
    result = write(hub_db, person("a", "1", "Иван", "Петров", phones=["+7 916 000-00-01"]),
                   person("b", "1", "Иван", "Петров", phones=["+7 916 000-00-02"]))
    assert len(set(result.contact_ids)) == 2


def test_transitive_links_through_personal_values_still_hold(hub_db: HubDB) -> None:
    result = write(hub_db, person("a", "1", "Ольга", None, phones=["+7 916 000-00-01"]),
                   person("a", "2", None, None, phones=["+7 916 000-00-01"], emails=["olga@mail.ru"]),
                   person("b", "3", "Ольга", "Иванова", emails=["olga@mail.ru"]))
    assert len(set(result.contact_ids)) == 1


def test_a_personal_mobile_two_different_names_hold_is_shared(hub_db: HubDB) -> None:
    """A mother's mobile typed for her son's order: two names, one number, two people."""
    result = write(hub_db, person("shop", "1", "Ирина", "Волкова", phones=["+7 916 000-00-03"]),
                   person("shop", "2", "Денис", "Волков", phones=["+7 916 000-00-03"]))
    assert len(set(result.contact_ids)) == 2
    assert set(holders(hub_db, "+79160000003").values()) == {"names"}


def test_a_busy_office_line_needs_names_that_agree(hub_db: HubDB) -> None:
    """A work landline is weak evidence: a nameless card with it joins nobody, a named one joins its person."""
    labels = {SWITCHBOARD: "work"}
    first = write(hub_db, person("bitrix24", "1", "Иван", "Петров", phones=[SWITCHBOARD], labels=labels))
    nameless = write(hub_db, person("bitrix24", "2", None, None, phones=[SWITCHBOARD], labels=labels))
    assert nameless.contact_ids != first.contact_ids
    assert set(holders(hub_db, "+74951112233").values()) == {"common"}
    named = write(hub_db, person("amocrm", "5", "Иван", "Петров", phones=[SWITCHBOARD], labels=labels))
    assert named.contact_ids == first.contact_ids


def test_a_work_mailbox_on_three_rows_of_one_person_written_three_ways_joins_them(hub_db: HubDB) -> None:
    """Two of the rows agree on the name, so the mailbox has two possible holders, not three: it joins."""
    mailbox = "y.shestakov@progress-snab.ru"
    rows = [person("import", "1", "Юрий", "Шестаков", emails=[mailbox], labels={mailbox: "work"}),
            person("import", "2", "Юрий", "Шестаков", emails=[mailbox], labels={mailbox: "work"}),
            person("import", "3", "юрий", None, emails=[mailbox], labels={mailbox: "work"})]
    rows[0].middle_name = "Андреевич"
    assert len(set(write(hub_db, *rows).contact_ids)) == 1
    assert set(holders(hub_db, mailbox).values()) == {None}


def test_a_work_mailbox_three_different_people_may_hold_still_needs_their_names_to_agree(hub_db: HubDB) -> None:
    """Петров, Иван Петров and Олег Петров: nothing says the bare surname is either of them."""
    mailbox = "petrov@roga.ru"
    rows = [person("import", str(i), first, "Петров", emails=[mailbox], labels={mailbox: "work"})
            for i, first in enumerate((None, "Иван", "Олег"))]
    assert len(set(write(hub_db, *rows).contact_ids)) == 3


def test_syncing_the_same_b2b_base_twice_changes_nothing(hub_db: HubDB) -> None:
    base = [person("bitrix24", "1", "Иван", "Петров", phones=[SWITCHBOARD, "+7 916 000-00-01"]),
            person("bitrix24", "2", "Мария", "Сидорова", phones=[SWITCHBOARD], emails=["info@roga.ru"]),
            person("bitrix24", "3", None, None, phones=["8-800-555-35-35"], emails=["sales@roga.ru"]),
            person("bitrix24", "4", "Олег", None, phones=[SWITCHBOARD], labels={SWITCHBOARD: "work"})]
    first = write(hub_db, *base)
    again = write(hub_db, *base)
    assert again.contact_ids == first.contact_ids and not again.created and not again.merged


def test_a_pair_kept_apart_is_not_joined_by_a_shared_value(hub_db: HubDB) -> None:
    a = write(hub_db, person("a", "1", "Иван", "Петров", phones=[SWITCHBOARD])).contact_ids[0]
    b = write(hub_db, person("b", "1", "Мария", "Сидорова", phones=[SWITCHBOARD])).contact_ids[0]
    assert a is not None and b is not None
    with hub_db.engine.begin() as conn:
        # A second Иван Петров card would join `a`; as if a person had said `a` and `b` are two people
        # and `b` were then renamed, a shared value must not join them.
        conn.execute(ContactsApart.__table__.insert().values(low_id=min(a, b), high_id=max(a, b), actor="t"))
        conn.execute(update(identity.contacts_t).where(identity.contacts_t.c.id == b)
                     .values(first_name="Иван", last_name="Петров"))
    result = write(hub_db, person("c", "1", "Иван", "Петров", phones=[SWITCHBOARD]))
    assert not result.merged


def test_an_undone_merge_stays_undone_when_a_row_names_one_half_by_its_own_mobile(hub_db: HubDB) -> None:
    """Father and son, both Иван Петров, share the flat's landline; a person undid their merge.

    A later row with the son's mobile and the landline is the son: the landline (shared now) must
    not join him to his father through their equal names.
    """
    from hub import unmerge

    landline, father_mobile, son_mobile = "8 (495) 222-33-44", "+7 916 000-00-11", "+7 903 555-66-77"
    father = write(hub_db, person("crm", "1", "Иван", "Петров", phones=[father_mobile])).contact_ids[0]
    son = write(hub_db, person("crm", "2", "Иван", "Петров", phones=[son_mobile])).contact_ids[0]
    # A sheet row listing both mobiles and the landline joins them, wrongly.
    joined = write(hub_db, ContactRecord(source="import:family.csv", first_name="Иван", last_name="Петров",
                                         phones=[father_mobile, son_mobile, landline]))
    assert joined.merged == [(father, son)]
    with hub_db.engine.connect() as conn:
        merge_id = conn.execute(select(identity.merges_t.c.id)).scalar_one()
    unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="test")
    # Each mobile is its holder's own again, not shared.
    assert holders(hub_db, "+79160000011") == {father: None} and holders(hub_db, "+79035556677") == {son: None}
    # The same row imported again is old evidence: it joins nobody.
    again = write(hub_db, ContactRecord(source="import:family.csv", first_name="Иван", last_name="Петров",
                                        phones=[father_mobile, son_mobile, landline]))
    assert not again.merged
    # A row with the son's mobile and the landline is the son, not joined to his father by their names.
    row = write(hub_db, ContactRecord(source="import:other.csv", first_name="Иван", last_name="Петров",
                                      phones=[son_mobile, landline]))
    assert not row.merged and row.contact_ids == [son]
    # New evidence still joins them: a personal email both turn out to hold.
    both = write(hub_db, person("crm", "1", "Иван", "Петров", phones=[father_mobile], emails=["ivan@petrov.ru"]),
                 person("crm", "2", "Иван", "Петров", phones=[son_mobile], emails=["ivan@petrov.ru"]))
    assert both.merged


def test_a_letter_goes_to_the_persons_own_mailbox_before_the_company_one(hub_db: HubDB) -> None:
    from hub import contacts
    from hub.messaging import compose

    result = write(hub_db, person("bitrix24", "1", "Иван", "Петров", emails=["info@roga.ru", "ivan@roga.ru"]),
                   person("bitrix24", "2", "Мария", "Сидорова", emails=["info@roga.ru"]))
    ivan, maria = result.contact_ids
    assert ivan is not None and maria is not None
    with hub_db.engine.connect() as conn:
        shown = {c["id"]: c for c in contacts.iter_contacts(conn)}
        assert shown[ivan]["emails"] == ["ivan@roga.ru", "info@roga.ru"]
        picked = compose.pick_addresses(conn, hub_db.settings, shown, "email")
    assert picked == {ivan: "ivan@roga.ru", maria: "info@roga.ru"}


def test_an_import_tells_how_many_values_turned_out_shared(hub_db: HubDB, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from click.testing import CliRunner

    from tests.support.cli import cli

    sheet = tmp_path / "office.csv"
    sheet.write_text("Имя;Фамилия;Рабочий телефон;Мобильный телефон\n"
                     "Иван;Петров;+7 495 111-22-33;+7 916 000-00-01\n"
                     "Мария;Сидорова;+7 495 111-22-33;\n"
                     "Олег;Кузнецов;8 800 555-35-35;\n", encoding="utf-8")
    shown = CliRunner().invoke(cli, ["import", "contacts", str(sheet)])
    assert shown.exit_code == 0, shown.output
    assert "общих телефонов и ящиков (коммутаторы, 8-800, info@…)" in shown.output
    again = CliRunner().invoke(cli, ["import", "contacts", str(sheet), "--json"])
    report = json.loads(again.output)
    assert report["created"] == 0 and report["shared_values"] == 0  # already known as shared
    assert set(holders(hub_db, "+74951112233").values()) == {"names"}
    assert set(holders(hub_db, "+78005553535").values()) == {"toll_free"}


def test_a_row_that_fits_a_father_and_his_son_joins_neither(hub_db: HubDB) -> None:
    """Николай Петрович and Николай Николаевич Григорьев share the flat's phone; a row «Николай Григорьев»
    with the son's mobile is the son, and must not join his father through their one phone and name."""
    home = "8 812 555-01-02"
    first = write(hub_db, ContactRecord(source="import:a.csv", external_id="1", first_name="Николай",
                                        middle_name="Петрович", last_name="Григорьев",
                                        phones=["8 911 700-00-18", home], labels={home: "home"}),
                  ContactRecord(source="import:a.csv", external_id="2", first_name="Николай",
                                middle_name="Николаевич", last_name="Григорьев",
                                phones=["8 911 700-00-19", home], labels={home: "home"}))
    father, son = first.contact_ids
    assert father != son
    row = write(hub_db, ContactRecord(source="import:b.csv", first_name="Николай", last_name="Григорьев",
                                      phones=["8 911 700-00-19", home]))
    assert not row.merged and row.contact_ids == [son]
    nameless = write(hub_db, ContactRecord(source="import:c.csv", first_name="Николай", last_name="Григорьев",
                                           phones=[home]))
    assert not nameless.merged and nameless.contact_ids[0] not in (father, son)  # either of them: neither


@pytest.mark.parametrize("name", ["Клиент", "", "ООО Ромашка", "12345", "Иван"])
def test_an_office_line_does_not_join_two_rows_that_only_share_it(hub_db: HubDB, name: str) -> None:
    office = "8 495 222-33-44"
    result = write(hub_db, *[ContactRecord(source="import:x.csv", external_id=str(i), first_name=name or None,
                                           phones=[mobile, office], labels={office: "work"})
                             for i, mobile in enumerate(["8 916 111-00-01", "8 916 111-00-02"])])
    assert len(set(result.contact_ids)) == 2
    assert set(holders(hub_db, "+74952223344").values()) == {"common"}


def test_an_extension_marks_a_switchboard(hub_db: HubDB) -> None:
    result = write(hub_db, person("import", "1", "Иван", None, phones=["+7 495 500-00-00 доб. 1", "8 999 000-00-01"]),
                   person("import", "2", "Иван", None, phones=["+7 495 500-00-00 доб. 2", "8 999 000-00-02"]))
    assert len(set(result.contact_ids)) == 2


def test_a_big_switchboard_joins_no_namesakes(hub_db: HubDB) -> None:
    """Sixty people on one company line, some of them namesakes with mobiles of their own: all stay apart."""
    board = "+7 495 600-00-00"
    staff = [person("bitrix24", str(i), ["Иван", "Мария", "Олег"][i % 3], ["Петров", "Сидорова", "Кузнецов"][i % 3],
                    phones=[board, f"+7 916 100-{i // 100:02d}-{i % 100:02d}"]) for i in range(60)]
    result = write(hub_db, *staff)
    assert len(set(result.contact_ids)) == 60


def test_a_nameless_row_with_only_an_office_line_is_found_again_on_reimport(hub_db: HubDB, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from hub import importer

    sheet = tmp_path / "calls.csv"
    sheet.write_text("Рабочий телефон;Комментарий\n8 495 222-33-44;перезвонить\n8 495 222-33-44;заказ\n",
                     encoding="utf-8")
    first = importer.import_contacts(hub_db.engine, hub_db.settings, sheet)
    again = importer.import_contacts(hub_db.engine, hub_db.settings, sheet)
    assert first.created == 2 and again.created == 0


@pytest.mark.parametrize("args", [["contacts", "unmerge", str(2**63)], ["contacts", "show", "99999999999999999999999"],
                                  ["dedupe", "--merge", "1", str(2**64)], ["contacts", "unmerge", "0"],
                                  ["contacts", "unmerge", "abc"]])
def test_a_record_number_past_what_the_database_holds_is_one_clear_line(hub_db: HubDB, args: list[str]) -> None:
    from click.testing import CliRunner

    from tests.support.cli import cli

    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert "не номер записи Hub" in result.output or "не число" in result.output, result.output


def test_a_nameless_row_never_makes_two_named_people_one(hub_db: HubDB) -> None:
    """A row with Анна's mobile and Мария's email (a form filled in for a friend) joins Анна only."""
    anna = write(hub_db, person("crm", "1", "Анна", "Петрова", phones=["+7 916 111-11-11"])).contact_ids[0]
    maria = write(hub_db, person("crm", "2", "Мария", "Петрова", emails=["maria@mail.ru"])).contact_ids[0]
    row = write(hub_db, ContactRecord(source="site", phones=["+7 916 111-11-11"], emails=["maria@mail.ru"]))
    assert not row.merged and row.contact_ids == [anna]
    assert holders(hub_db, "maria@mail.ru") == {anna: "names", maria: "names"}
    both = write(hub_db, ContactRecord(source="site2", phones=["+7 916 111-11-11"], emails=["maria@mail.ru"]),
                 ContactRecord(source="site3", first_name="Мария", phones=["+7 916 111-11-11"]))
    assert not both.merged


def test_a_weak_line_never_merges_two_known_people(hub_db: HubDB) -> None:
    """Two CRM cards, both Николай Григорьев, one landline: two people as far as Hub can tell."""
    home = "8 812 555-01-02"
    a = write(hub_db, person("crm", "1", "Николай", "Григорьев", phones=["+7 911 700-00-18"])).contact_ids[0]
    b = write(hub_db, person("crm", "2", "Николай", "Григорьев", phones=["+7 911 700-00-19"])).contact_ids[0]
    write(hub_db, person("crm", "1", "Николай", "Григорьев", phones=["+7 911 700-00-18", home]))
    result = write(hub_db, person("crm", "2", "Николай", "Григорьев", phones=["+7 911 700-00-19", home]))
    assert not result.merged and result.contact_ids == [b]
    assert set(holders(hub_db, "+78125550102")) == {a, b}


def test_a_record_of_its_own_brings_a_kept_apart_value_as_shared(hub_db: HubDB) -> None:
    """After an undone merge, B's own CRM card lists A's phone: both hold it now, shared."""
    from hub import unmerge

    a = write(hub_db, person("a", "1", "Иван", "Петров", phones=["+7 916 123-45-67"])).contact_ids[0]
    b = write(hub_db, person("a", "2", "Иван", "Петров", emails=["ivan@mail.ru"])).contact_ids[0]
    joined = write(hub_db, ContactRecord(source="row", phones=["+7 916 123-45-67"], emails=["ivan@mail.ru"]))
    assert joined.merged
    with hub_db.engine.connect() as conn:
        merge_id = conn.execute(select(identity.merges_t.c.id)).scalar_one()
    unmerge.unmerge(hub_db.engine, hub_db.settings, merge_id, actor="test")
    again = write(hub_db, person("a", "2", "Иван", "Петров", phones=["+7 916 123-45-67"], emails=["ivan@mail.ru"]))
    assert not again.merged and again.contact_ids == [b]
    assert holders(hub_db, "+79161234567") == {a: "unmerged", b: "unmerged"}


def test_a_kazakh_mobile_is_a_mobile(hub_db: HubDB) -> None:
    """+7 701 … is a mobile in Kazakhstan, not a Russian landline: three rows of one Павел are one person."""
    result = write(hub_db, person("shop", "1", "Павел", "Иванов", phones=["+7 701 123-45-67"]),
                   person("shop", "2", "Павел", None, phones=["87011234567"]),
                   person("shop", "3", None, "Иванов", phones=["+77011234567"]))
    assert len(set(result.contact_ids)) == 1


def test_an_extension_marks_only_its_own_number(hub_db: HubDB) -> None:
    """«+7 991 971-13-20; +7 495 861-75-09 доб. 699»: the office line is work, the mobile stays a mobile."""
    from hub import normalize

    found = normalize.phones("+79919711320; +7 495 861-75-09 доб. 699")
    assert [(i.value, i.label) for i in found] == [("+79919711320", None), ("+74958617509", "work")]
    result = write(hub_db, person("shop", "1", "Павел", "Кузьмин", phones=["+79919711320; +7 495 861-75-09 доб. 699"]),
                   person("shop", "2", "Павел", None, phones=["89919711320; +7 (495) 861-75-09"]),
                   person("shop", "3", "Павел", "Кузьмин", phones=["8 (991) 971-13-20"]))
    assert len(set(result.contact_ids)) == 1



B2B_EXPORT = ("ID;Имя;Отчество;Фамилия;Компания;Рабочий телефон;Мобильный телефон;Домашний телефон;"
              "Рабочий e-mail;Частный e-mail\n") + """\
301;Виктор;;Григорьев;;;8 916 700-11-22;8 (495) 987-65-43;;v.grigoriev@mail.ru
302;Валентина;;Григорьева;;;8 916 700-55-66;8 (495) 987-65-43;;valya.g@mail.ru
311;Александр;;Кузнецов;ООО Ромашка;+7 495 111-22-33;8 915 777-88-99;;kuznetsov@romashka.ru;
312;Александра;;Кузнецова;ООО Ромашка;+7 495 111-22-33;8 915 777-88-00;;a.kuznetsova@romashka.ru;
313;Смирнов Дмитрий;;;ООО Ромашка;+7 495 111-22-33;8 921 222-33-55;;;
314;Екатерина;;Смирнова;ООО Ромашка;+7 495 111-22-33;8 921 222-33-44;;smirnova@romashka.ru;
"""
SHOP_FILE = """ФИО;Телефон;Email;Город
Григорьева В.;8 (495) 987-65-43;valya.g@mail.ru;Химки
Григорьев В.;8 (495) 987-65-43;;Мытищи
Кузнецова Саша;+7 495 111-22-33;alexandra.k@yandex.ru;
Саша Кузнецов;+7 495 111-22-33;sasha.kuz@yandex.ru;
Смирнова Катя;+7 495 111-22-33;katya.smirnova@gmail.com;
Смирнов Д.;+7 495 111-22-33;d.smirnov@gmail.com;
"""


def test_a_shops_file_puts_no_husbands_or_brothers_row_on_the_wife_or_sister(hub_db: HubDB, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from hub import importer

    export, shop = tmp_path / "b2b.csv", tmp_path / "shop.csv"
    export.write_text(B2B_EXPORT, encoding="cp1251")
    shop.write_text(SHOP_FILE, encoding="utf-8")
    for path in (export, shop):
        importer.import_contacts(hub_db.engine, hub_db.settings, path)
    with hub_db.engine.connect() as conn:
        cards = {}
        for row in conn.execute(select(Contact.id, Contact.first_name, Contact.last_name, Contact.city)):
            emails = set(conn.execute(select(ContactIdentity.value).where(
                ContactIdentity.contact_id == row.id, ContactIdentity.kind == "email")).scalars())
            cards[(row.last_name, row.first_name)] = (row.city, emails)
    # Each of them once, with their own values; «В. Григорьев» and «Саша Кузнецов» are the men, not the women.
    assert cards[("Григорьева", "Валентина")] == ("Химки", {"valya.g@mail.ru"})
    assert cards[("Григорьев", "Виктор")][0] in ("Мытищи", None)
    assert cards[("Кузнецова", "Александра")][1] >= {"a.kuznetsova@romashka.ru"}
    assert "sasha.kuz@yandex.ru" not in cards[("Кузнецова", "Александра")][1]
    assert "alexandra.k@yandex.ru" not in cards[("Кузнецов", "Александр")][1]
    assert not any({"alexandra.k@yandex.ru", "sasha.kuz@yandex.ru"} <= emails for _city, emails in cards.values())


def test_a_husband_and_wife_written_with_initials_on_their_landline_stay_apart(hub_db: HubDB) -> None:
    home = "8 (495) 987-65-43"
    known = write(hub_db, person("bitrix24", "1", "Виктор", "Григорьев", phones=[home, "8 916 700-11-22"]),
                  person("bitrix24", "2", "Валентина", "Григорьева", phones=[home, "8 916 700-55-66"]))
    viktor, valentina = known.contact_ids
    # A shop's file, the same day: each of them once more, by initial, with only the landline.
    rows = write(hub_db, person("import", "10", "В.", "Григорьева", phones=[home]),
                 person("import", "11", "В.", "Григорьев", phones=[home]))
    assert rows.contact_ids[1] != valentina  # never the wife's: his city and orders would go to her
    assert rows.contact_ids[0] != viktor
    assert viktor != valentina


def test_a_gender_ambiguous_first_name_does_not_join_a_brother_and_sister_on_a_switchboard(hub_db: HubDB) -> None:
    staff = write(hub_db, person("bitrix24", "1", "Александр", "Кузнецов", phones=[SWITCHBOARD, "8 915 777-88-99"]),
                  person("bitrix24", "2", "Александра", "Кузнецова", phones=[SWITCHBOARD, "8 915 777-88-00"]))
    # Two rows of one file, each «Саша», with their own mailboxes and the office number.
    rows = write(hub_db, person("import", "10", "Саша", "Кузнецова", phones=[SWITCHBOARD],
                                emails=["alexandra.k@yandex.ru"]),
                 person("import", "11", "Саша", "Кузнецов", phones=[SWITCHBOARD], emails=["sasha.kuz@yandex.ru"]))
    assert rows.contact_ids[0] != rows.contact_ids[1]
    with hub_db.engine.connect() as conn:
        def mailboxes(contact_id: int) -> set[str]:
            return set(conn.execute(select(ContactIdentity.value).where(
                ContactIdentity.contact_id == contact_id, ContactIdentity.kind == "email")).scalars())

        assert not {"alexandra.k@yandex.ru", "sasha.kuz@yandex.ru"} <= mailboxes(rows.contact_ids[0])
        assert "alexandra.k@yandex.ru" not in mailboxes(staff.contact_ids[0])  # nothing of hers on his card
