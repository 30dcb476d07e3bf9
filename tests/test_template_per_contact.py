"""A plugin's per-person template variable (register_template_variables(..., per_contact=...)).

The outbox fills it in for every message whose template uses it, whoever
sends; a template that does not use it costs nothing.
"""

from __future__ import annotations

from typing import Any

from hub.hookspecs import hookimpl
from hub.message_templates import Template
from hub import messaging
from tests.conftest import HubDB
from tests.test_messaging import Channels, person, row


class Personal:
    """Offers `card_link`: a link of the person's own."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def value(self, settings: Any, contact_id: int) -> str:
        self.asked.append(contact_id)
        return f"https://cards.example.ru/{contact_id}"

    @hookimpl
    def register_template_variables(self, register: Any, settings: Any) -> None:
        register("card_link", "https://cards.example.ru/0", {"card_link": "card"}, per_contact=self.value)


def test_the_outbox_fills_a_per_person_variable_only_where_a_template_uses_it(hub_db: HubDB,
                                                                               plugin_manager: Any) -> None:
    # hook:register_template_variables
    plugin = Personal()
    plugin_manager.register(plugin)
    plugin_manager.register(Channels())
    anna = person(hub_db)
    uses = Template(name="card_sms", channel="sms", text="Ваша карта: {{ card_link }}")
    plain = Template(name="plain_sms", channel="sms", text="Привет, {{ contact.first_name }}")
    with hub_db.engine.begin() as conn:
        first = messaging.create(conn, hub_db.settings, contact_id=anna, channel="sms", template=uses, key="a")
        second = messaging.create(conn, hub_db.settings, contact_id=anna, channel="sms", template=plain, key="b")
        given = messaging.create(conn, hub_db.settings, contact_id=anna, channel="sms", template=uses, key="c",
                                 context={"card_link": "https://cards.example.ru/given"})
    assert row(hub_db, first.id)["body_text"] == f"Ваша карта: https://cards.example.ru/{anna}"
    assert row(hub_db, second.id)["body_text"] == "Привет, Анна"
    assert row(hub_db, given.id)["body_text"] == "Ваша карта: https://cards.example.ru/given"  # the sender's wins
    assert plugin.asked == [anna]
