"""amoCRM API v4 payloads (as documented) to Hub records."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from hub.records import Deletion
from plugins.amocrm import mapping

UTC = dt.timezone.utc

# GET /api/v4/contacts?with=leads, one item, in the documented shape.
CONTACT = {
    "id": 3, "name": "Иван Петров", "first_name": "Иван", "last_name": "Петров", "responsible_user_id": 504141,
    "group_id": 0, "created_by": 504141, "updated_by": 504141, "created_at": 1582117331, "updated_at": 1590943929,
    "closest_task_at": None, "is_deleted": False, "is_unsorted": False, "account_id": 28805383,
    "custom_fields_values": [
        {"field_id": 3, "field_name": "Телефон", "field_code": "PHONE", "field_type": "multitext",
         "values": [{"value": "8 (916) 123-45-67", "enum_id": 1, "enum_code": "WORK"},
                    {"value": "+7 926 000-11-22", "enum_id": 3, "enum_code": "MOB"}]},
        {"field_id": 4, "field_name": "Email", "field_code": "EMAIL", "field_type": "multitext",
         "values": [{"value": "Ivan@Example.RU", "enum_id": 7, "enum_code": "WORK"}]},
        {"field_id": 77, "field_name": "День рождения", "field_code": None, "field_type": "birthday",
         "values": [{"value": 642459600}]},
    ],
    "_links": {"self": {"href": "https://example.amocrm.ru/api/v4/contacts/3"}},
    "_embedded": {"tags": [{"id": 1, "name": "vip", "color": None}],
                  "leads": [{"id": 11, "_links": {"self": {"href": "https://example.amocrm.ru/api/v4/leads/11"}}}],
                  "companies": []},
}

LEAD = {
    "id": 19619, "name": "Сделка для примера", "price": 46333, "responsible_user_id": 123321, "group_id": 625,
    "status_id": 142, "pipeline_id": 1300, "loss_reason_id": None, "created_by": 321123, "updated_by": 321123,
    "created_at": 1453279607, "updated_at": 1502193501, "closed_at": 1483005931, "closest_task_at": None,
    "is_deleted": False, "custom_fields_values": None, "score": None, "account_id": 5135160,
    "_embedded": {"tags": [], "contacts": [{"id": 7, "is_main": False}, {"id": 3, "is_main": True}],
                  "companies": []},
}


def test_a_documented_contact_maps_every_phone_email_and_tag() -> None:
    problems: list[mapping.Problem] = []
    record = mapping.contact(CONTACT, problems=problems)
    assert record.source == "amocrm" and record.external_id == "3"
    assert (record.first_name, record.last_name) == ("Иван", "Петров")
    assert record.phones == ["8 (916) 123-45-67", "+7 926 000-11-22"]
    assert record.emails == ["Ivan@Example.RU"]
    assert record.tags == ["vip"]
    assert record.birthday == dt.date(1990, 5, 12)  # midnight in Moscow, 21:00 UTC the day before
    assert record.created_at == dt.datetime(2020, 2, 19, 13, 2, 11, tzinfo=UTC)
    assert record.updated_at is not None and record.updated_at.tzinfo is not None
    assert record.attributes["responsible_user_id"] == 504141
    assert problems == []


def test_empty_custom_fields_are_null_and_a_name_only_contact_keeps_its_name() -> None:
    record = mapping.contact({"id": 9, "name": "ООО Ромашка, Анна", "first_name": "", "last_name": "",
                              "custom_fields_values": None, "created_at": 1582117331, "updated_at": 1582117331,
                              "_embedded": {"tags": []}})
    assert record.phones == [] and record.emails == [] and record.birthday is None
    assert record.first_name == "ООО Ромашка, Анна" and record.last_name is None


def test_a_bad_birthday_is_reported_and_the_contact_kept() -> None:
    problems: list[mapping.Problem] = []
    row = {**CONTACT, "custom_fields_values": [
        {"field_id": 77, "field_code": None, "field_type": "birthday", "values": [{"value": "когда-то"}]}]}
    record = mapping.contact(row, problems=problems)
    assert record.birthday is None and record.external_id == "3"
    assert problems == [mapping.Problem("contact", "3", "birthday 'когда-то' is not a date")]


def test_a_configured_birthday_field_in_iso_form() -> None:
    row = {**CONTACT, "custom_fields_values": [
        {"field_id": 555, "field_code": None, "field_type": "date",
         "values": [{"value": "1985-12-31T00:00:00+03:00"}]}]}
    assert mapping.contact(row, {"birthday": 555}).birthday == dt.date(1985, 12, 31)


# GET /api/v4/contacts: custom_fields_values of an account that added fields of its own. Each entry is
# {field_id, field_name, field_code, field_type, values}; a value is {value} for text, numbers, checkboxes
# and dates (unix seconds: dates at midnight in the account's zone), {value, enum_id} for list fields
# (select, multiselect, radiobutton) and {value, enum_id, enum_code} for phones and emails.
FIELDS_OF_ITS_OWN = [
    {"field_id": 3, "field_name": "Телефон", "field_code": "PHONE", "field_type": "multitext",
     "values": [{"value": "+7 916 123-45-67", "enum_id": 1, "enum_code": "MOB"}]},
    {"field_id": 9, "field_name": "Должность", "field_code": "POSITION", "field_type": "text",
     "values": [{"value": "Директор"}]},
    {"field_id": 77, "field_name": "День рождения", "field_code": None, "field_type": "birthday",
     "values": [{"value": 642459600}]},
    {"field_id": 78, "field_name": "Город", "field_code": None, "field_type": "text",
     "values": [{"value": " Казань "}]},
    {"field_id": 79, "field_name": "Источник", "field_code": None, "field_type": "select",
     "values": [{"value": "Instagram", "enum_id": 511}]},
    {"field_id": 80, "field_name": "Интересы", "field_code": None, "field_type": "multiselect",
     "values": [{"value": "Скидки", "enum_id": 521}, {"value": "Подарки", "enum_id": 522}]},
    {"field_id": 81, "field_name": "Дата договора", "field_code": None, "field_type": "date",
     "values": [{"value": 1704056400}]},
    {"field_id": 82, "field_name": "Последний визит", "field_code": None, "field_type": "date_time",
     "values": [{"value": 1718000000}]},
    {"field_id": 83, "field_name": "Согласие на звонки", "field_code": None, "field_type": "checkbox",
     "values": [{"value": True}]},
    {"field_id": 84, "field_name": "Бонусы", "field_code": None, "field_type": "numeric", "values": [{"value": "150"}]},
    {"field_id": 85, "field_name": "Комментарий", "field_code": None, "field_type": "textarea",
     "values": [{"value": "Звонить после 18:00"}]},
    {"field_id": 86, "field_name": "Комментарий", "field_code": None, "field_type": "text",
     "values": [{"value": "второе поле с тем же именем"}]},
    {"field_id": 87, "field_name": "Пустое", "field_code": None, "field_type": "text", "values": []},
]


def test_fields_of_its_own_become_the_birthday_the_city_and_attributes() -> None:
    problems: list[mapping.Problem] = []
    record = mapping.contact({**CONTACT, "custom_fields_values": FIELDS_OF_ITS_OWN}, problems=problems)
    assert record.phones == ["+7 916 123-45-67"] and record.emails == []
    assert record.birthday == dt.date(1990, 5, 12)
    assert record.city == "Казань"
    assert record.attributes == {
        "responsible_user_id": 504141,
        "POSITION": "Директор",                          # keyed by the code when the field has one
        "Источник": "Instagram",                         # else by the name; one value as itself
        "Интересы": ["Скидки", "Подарки"],               # several as a list
        "Дата договора": "2024-01-01",                   # midnight in Moscow, 21:00 UTC the day before
        "Последний визит": "2024-06-10T06:13:20+00:00",  # a moment stays a moment, in UTC
        "Согласие на звонки": True,
        "Бонусы": 150,  # numbers come as text and go in as numbers
        "Комментарий": "Звонить после 18:00",
        "Комментарий (86)": "второе поле с тем же именем",  # a second field of the same name keeps its id
    }
    assert problems == []


def test_a_birthday_that_is_not_a_date_is_reported_and_kept_as_amocrm_has_it() -> None:
    problems: list[mapping.Problem] = []
    row = {**CONTACT, "custom_fields_values": [
        {"field_id": 77, "field_name": "День рождения", "field_code": None, "field_type": "birthday",
         "values": [{"value": "весной"}]}]}
    record = mapping.contact(row, problems=problems)
    assert record.birthday is None and record.attributes["День рождения"] == "весной"
    assert problems == [mapping.Problem("contact", "3", "birthday 'весной' is not a date")]


def test_configured_fields_win_over_a_field_found_by_its_type_or_name() -> None:
    row = {**CONTACT, "custom_fields_values": FIELDS_OF_ITS_OWN + [
        {"field_id": 90, "field_name": "Дата рождения (из анкеты)", "field_code": None, "field_type": "date",
         "values": [{"value": "1985-12-31"}]},
        {"field_id": 91, "field_name": "Город доставки", "field_code": None, "field_type": "text",
         "values": [{"value": "Тверь"}]}]}
    record = mapping.contact(row, {"birthday": 90, "city": 91})
    assert record.birthday == dt.date(1985, 12, 31) and record.city == "Тверь"
    # The fields that were not chosen stay as attributes, nothing is dropped.
    assert record.attributes["День рождения"] == "1990-05-12" and record.attributes["Город"] == "Казань"


def test_tags_and_the_company_when_the_answer_embeds_its_name() -> None:
    embedded = {"tags": [{"id": 1, "name": "vip", "color": None}, {"id": 2, "name": "опт", "color": None}],
                "companies": [{"id": 35000001, "name": "ООО «Ромашка»",
                               "_links": {"self": {"href": "https://example.amocrm.ru/api/v4/companies/35000001"}}}]}
    record = mapping.contact({**CONTACT, "_embedded": embedded})
    assert record.tags == ["vip", "опт"] and record.company == "ООО «Ромашка»"
    # The contact list links companies by id alone: no name, no company.
    only_ids = {"tags": [], "companies": [{"id": 35000001, "_links": {}}]}
    assert mapping.contact({**CONTACT, "_embedded": only_ids}).company is None


def test_a_won_lead_is_a_won_order_of_its_main_contact() -> None:
    order = mapping.lead(LEAD, "RUB")
    assert order is not None
    assert (order.external_id, order.contact_external_id, order.status) == ("19619", "3", "won")
    assert order.amount == Decimal("46333") and order.currency == "RUB"
    assert order.closed_at == dt.datetime.fromtimestamp(1483005931, UTC)
    assert order.title == "Сделка для примера"


def test_lead_statuses_and_missing_contacts() -> None:
    lost = mapping.lead({**LEAD, "status_id": 143, "_embedded": {"contacts": []}})
    open_ = mapping.lead({**LEAD, "status_id": 4_000_001, "closed_at": None, "price": None})
    assert lost is not None and lost.status == "lost" and lost.contact_external_id is None
    assert open_ is not None and open_.status == "open" and open_.closed_at is None and open_.amount == 0


def test_a_lead_with_a_price_that_is_not_a_number_is_skipped_and_reported() -> None:
    problems: list[mapping.Problem] = []
    assert mapping.lead({**LEAD, "price": "много"}, problems=problems) is None
    assert problems == [mapping.Problem("order", "19619", "price 'много' is not a number")]


def test_a_customers_transaction_is_a_won_purchase_of_the_customers_main_contact() -> None:
    row = {"id": 134, "comment": "Покупка", "price": 1500, "completed_at": 1589284940, "customer_id": 2,
           "created_by": 0, "updated_by": 0, "created_at": 1589284940, "updated_at": 1589284940,
           "is_deleted": False, "account_id": 28805383, "_embedded": {"customer": {"id": 2}}}
    order = mapping.transaction(row, {"2": "3"})
    assert order is not None and not isinstance(order, Deletion)
    assert (order.external_id, order.contact_external_id, order.status, order.amount) == (
        "transaction:134", "3", "won", Decimal("1500"))
    assert mapping.transaction({**row, "is_deleted": True}, {}) == Deletion("amocrm", "order", "transaction:134")


def test_deletion_events() -> None:
    event = {"id": "01pz58t6p04vqzvpt8f5ss2a2g", "type": "contact_deleted", "entity_id": 3, "entity_type": "contact",
             "created_by": 504141, "created_at": 1590943929, "value_after": [], "value_before": [],
             "account_id": 28805383}
    assert mapping.deletion(event) == Deletion("amocrm", "contact", "3")
    lead_deleted = {**event, "type": "lead_deleted", "entity_id": 19619}
    assert mapping.deletion(lead_deleted) == Deletion("amocrm", "order", "19619")
    assert mapping.deletion({**event, "type": "lead_status_changed"}) is None


def test_a_contact_typed_as_one_whole_name_is_read_as_its_parts() -> None:
    """Only `name` filled ("Журавлёва Анастасия Владимировна"): merged with a Bitrix24 record that has the parts,
    a first name holding all of it would read «Журавлёва Журавлёва Анастасия Владимировна Владимировна»."""
    def named(name: str) -> tuple[str | None, str | None, str | None]:
        record = mapping.contact({"id": 9, "name": name, "first_name": "", "last_name": "",
                                  "custom_fields_values": None, "created_at": 1582117331, "updated_at": 1582117331})
        return record.first_name, record.last_name, record.middle_name

    assert named("Журавлёва Анастасия Владимировна") == ("Анастасия", "Журавлёва", "Владимировна")
    assert named("сычёва анна павловна") == ("Анна", "Сычёва", "Павловна")
    assert named("Иван Петров") == ("Иван", "Петров", None)
    assert named("Римский-Корсаков Николай") == ("Николай", "Римский-Корсаков", None)
    for kept in ("ООО Ромашка, Анна", "Анна", "Анна 2 этаж", "Иванов Иван Иванович Петрович"):
        assert named(kept) == (kept, None, None)  # not an ФИО: kept whole, as typed
