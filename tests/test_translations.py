"""Every message Hub shows has its Russian translation, and translations keep their placeholders.

Messages are found as `make translations` finds them (hub.catalogs, the
extractors of babel.cfg), in the core and in every built-in plugin that
registers a translations folder, and in click (whose Usage, Options and error
texts the core's catalog translates).
"""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from babel.messages.pofile import read_po

from hub import catalogs, i18n
from hub.plugins import get_pm


def _folders() -> list[Path]:
    found: list[Path] = []
    get_pm().hook.register_translations(register=lambda path: found.append(Path(path)))
    return found


def _report(missing: dict[str, list[str]]) -> str:
    return "\n".join(f"{where[0]}: {msgid!r}" for msgid, where in sorted(missing.items(), key=lambda i: i[1][0]))


@pytest.mark.parametrize("folder", _folders(), ids=lambda f: f.parent.name)
def test_every_message_has_a_russian_translation(folder: Path) -> None:
    missing = catalogs.untranslated(folder, "ru")
    assert not missing, f"{len(missing)} messages without a Russian translation (make translations):\n" \
                        + _report(missing)


def test_clicks_own_texts_are_translated() -> None:
    missing = catalogs.untranslated_from(Path(click.__file__).parent, i18n.TRANSLATIONS, "ru")
    assert not missing, _report(missing)


@pytest.mark.parametrize("folder", _folders(), ids=lambda f: f.parent.name)
def test_translations_keep_their_placeholders(folder: Path) -> None:
    """A translation that loses %(name)s or {name} would fail or mislead at the moment it is shown."""
    problems = []
    for po in sorted((folder / "ru" / "LC_MESSAGES").glob("*.po")):
        with po.open("rb") as f:
            catalog = read_po(f, locale="ru")
        for message, errors in catalog.check():
            problems += [f"{po.name}: {message.id!r}: {error}" for error in errors]
        for message in catalog:
            if message.id and message.string and "python-brace-format" in message.flags:
                ids = message.id if isinstance(message.id, tuple) else (message.id,)
                strings = message.string if isinstance(message.string, tuple) else (message.string,)
                wanted = set(catalogs.brace_fields(ids[-1]))
                problems += [f"{po.name}: {message.id!r}: {{…}} fields differ" for s in strings
                             if s and set(catalogs.brace_fields(s)) != wanted]
    assert not problems, "\n".join(problems)


def test_plural_forms_follow_russian_rules() -> None:
    from hub import formats

    with i18n.use_language("ru"):
        shown = [formats.contacts(n) for n in (1, 2, 5, 11, 21, 22, 1000)]
    assert shown == ["1 контакт", "2 контакта", "5 контактов", "11 контактов", "21 контакт", "22 контакта",
                     "1\u00a0000 контактов"]
    with i18n.use_language("en"):
        assert [formats.contacts(n) for n in (1, 2, 1000)] == ["1 contact", "2 contacts", "1,000 contacts"]


def test_the_language_setting_is_checked() -> None:
    from hub.config import SettingsError, load_settings

    assert load_settings({"HUB_LANGUAGE": "EN_us"}, config_path="/nonexistent").language == "en"
    assert load_settings({}, config_path="/nonexistent").language == "ru"
    with pytest.raises(SettingsError, match="HUB_LANGUAGE"):
        load_settings({"HUB_LANGUAGE": "klingon"}, config_path="/nonexistent")
