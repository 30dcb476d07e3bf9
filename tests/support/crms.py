"""Both CRM plugins loaded into a test as `hub` loads them: their hooks and their commands."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import plugins.amocrm as amocrm_plugin
import plugins.bitrix24 as bitrix24_plugin
from hub import normalize
from tests.support.cli import cli


def load_crm_plugins(plugin_manager: Any) -> None:
    for plugin, name in ((bitrix24_plugin, "bitrix24"), (amocrm_plugin, "amocrm")):
        plugin_manager.register(plugin, name=name)
        plugin.register_commands(cli)


def assert_b2b_truth(b2b: Any, records: dict[int, tuple[int, Any]], refs: dict[str, int],
                     shared: dict[tuple[int, str, str], str | None]) -> None:
    """A sync of an emulator's B2B base, checked against the emulator's truth (its `b2b` module).

    `records` maps each CRM contact id to (person, entry), `refs` a CRM id to
    its Hub contact, `shared` each stored (contact, kind, value) to why it is
    shared. Colleagues, spouses and hotline callers stay apart; one person
    written several ways is one contact; every place's value (switchboard,
    home line, hotline, role mailbox, fax) stays on each holder, shared.
    """
    contact_of: dict[int, set[int]] = defaultdict(set)  # person -> the Hub contacts holding their records
    for contact_id, (person, _) in records.items():
        contact_of[person].add(refs[str(contact_id)])
    assert all(len(held) == 1 for held in contact_of.values()), contact_of  # Пётр Соколов's records: one
    one = {person: next(iter(held)) for person, held in contact_of.items()}
    for group in (*b2b.COLLEAGUES.values(), b2b.HOUSEHOLD, b2b.HOTLINE):
        assert len({one[person] for person in group}) == len(group), group
    assert len(set(one.values())) == len(b2b.PEOPLE)  # and nobody from one group joined anyone else
    holders: dict[tuple[str, str], set[int]] = defaultdict(set)
    for person, entries in b2b.PEOPLE.items():
        for entry in entries:
            for _, raw in entry.phones:
                for phone in normalize.phones(raw):
                    holders["phone", phone.value].add(person)
            for _, raw in entry.emails:
                address = normalize.email(raw)
                assert address is not None
                holders["email", address.value].add(person)
    places = {key: people for key, people in holders.items() if len(people) > 1}
    assert len(places) == 7  # two switchboards, two role mailboxes, a fax, a home line, a hotline
    for (kind, value), people in places.items():
        for person in people:
            assert shared[one[person], kind, value] is not None, (kind, value, person)
