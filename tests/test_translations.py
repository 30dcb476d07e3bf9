"""Every message Hub shows has its Russian translation, and translations keep their placeholders.

Messages are found as `make translations` finds them (hub.catalogs, the
extractors of babel.cfg), in the core and in every built-in plugin that
registers a translations folder, and in click (whose Usage, Options and error
texts the core's catalog translates).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pytest
from babel.messages.pofile import read_po

from hub import catalogs, formats, i18n
from hub.hookspecs import hookimpl
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
    with pytest.raises(SettingsError) as huge:  # a value pasted by mistake is named, not echoed whole
        load_settings({"HUB_LANGUAGE": "x" * 5000}, config_path="/nonexistent")
    assert len(str(huge.value)) < 200


class Stamps:
    """A stranger's plugin shipping its own Russian catalog."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @hookimpl
    def register_translations(self, register):
        register(self.folder)


def test_a_plugins_catalog_is_merged_with_hubs(tmp_path: Path) -> None:
    messages = tmp_path / "translations" / "ru" / "LC_MESSAGES"
    messages.mkdir(parents=True)
    (messages / "stamps.po").write_text(
        'msgid ""\nmsgstr ""\n"Language: ru\\n"\n"Content-Type: text/plain; charset=utf-8\\n"\n'
        '"Plural-Forms: nplurals=3; plural=n % 10 == 1 && n % 100 != 11 ? 0 : n % 10 >= 2 && n % 10 <= 4 && '
        '(n % 100 < 12 || n % 100 > 14) ? 1 : 2;\\n"\n\n'
        'msgid "%(num)s stamp"\nmsgid_plural "%(num)s stamps"\n'
        'msgstr[0] "%(num)s штамп"\nmsgstr[1] "%(num)s штампа"\nmsgstr[2] "%(num)s штампов"\n', encoding="utf-8")
    pm = get_pm()
    # hook:register_translations
    pm.register(Stamps(tmp_path / "translations"), name="stamps")
    try:
        with i18n.use_language("ru"):
            assert [i18n.ngettext("%(num)s stamp", "%(num)s stamps", n) for n in (1, 3, 5)] == [
                "1 штамп", "3 штампа", "5 штампов"]
            assert formats.contacts(2) == "2 контакта"  # Hub's own catalog is still there
        with i18n.use_language("en"):
            assert i18n.ngettext("%(num)s stamp", "%(num)s stamps", 3) == "3 stamps"
    finally:
        pm.unregister(name="stamps")
    with i18n.use_language("ru"):
        assert i18n.ngettext("%(num)s stamp", "%(num)s stamps", 3) == "3 stamps"  # gone with its plugin


def test_no_two_catalogs_translate_one_message_differently() -> None:
    """Catalogs are merged: the same English words must read the same everywhere, or one page changes another's.

    Short words that mean different things in different places ("on" a switch,
    "on" a date) need different English (or pgettext's context).
    """
    seen: dict[tuple[str, str | None], tuple[str, Any]] = {}
    clashes = []
    for folder in dict.fromkeys(_folders()):
        for po in sorted((folder / "ru" / "LC_MESSAGES").glob("*.po")):
            with po.open("rb") as f:
                for message in read_po(f, locale="ru"):
                    if not message.id or not message.string:
                        continue
                    key = (message.id if isinstance(message.id, str) else message.id[0], message.context)
                    where, string = seen.setdefault(key, (f"{folder.parent.name}/{po.name}", message.string))
                    if string != message.string:
                        clashes.append(f"{key[0]!r}: {where} {string!r}, {folder.parent.name}/{po.name} "
                                       f"{message.string!r}")
    assert not clashes, "\n".join(clashes)


def _says() -> str:
    return i18n.gettext("no contact with id %(id)s", id=7)


def test_background_work_speaks_the_language_it_was_started_in() -> None:
    """A sync started from an English admin page records its errors in English, not in the thread's default."""
    from hub import queue
    from hub.config import Settings

    with i18n.use_language("en"):
        english = queue.enqueue(Settings(), _says, background=True)
    with i18n.use_language("ru"):
        russian = queue.enqueue(Settings(), _says, background=True)
    queue.drain(timeout=30)
    assert english.job.result(timeout=30) == "no contact with id 7"
    assert russian.job.result(timeout=30) == "нет контакта с id 7"


def test_a_blank_title_is_blank_not_the_catalogs_header() -> None:
    with i18n.use_language("ru"):
        assert i18n.title("   ") == i18n.title(None) == i18n.gettext("") == ""
        assert i18n.title("Birthday today or  in the next 7 days") != "Birthday today or in the next 7 days"
