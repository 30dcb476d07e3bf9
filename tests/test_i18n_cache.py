"""Compiled catalogs kept between processes: the same translations as the .po, and never stale."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from babel.support import Translations

from hub import i18n

PO = """msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"

msgid "apple"
msgstr "%s"
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "hub" / "catalogs"


def _catalog(tmp_path: Path, word: str) -> Path:
    po = tmp_path / "ru" / "LC_MESSAGES" / "shop.po"
    po.parent.mkdir(parents=True, exist_ok=True)
    po.write_text(PO % word, encoding="utf-8")
    return po


def test_a_catalog_is_compiled_once_and_read_back(tmp_path: Path, cache: Path) -> None:
    po = _catalog(tmp_path, "яблоко")
    first = i18n.compiled(po, "ru")
    kept = list(cache.glob("*.mo"))
    assert len(kept) == 1 and kept[0].read_bytes() == first
    kept[0].write_bytes(first)  # as another process left it
    assert i18n.compiled(po, "ru") == first
    assert Translations(io.BytesIO(first)).gettext("apple") == "яблоко"
    assert not list(cache.glob("*.tmp"))


def test_an_edited_catalog_is_compiled_afresh(tmp_path: Path, cache: Path) -> None:
    po = _catalog(tmp_path, "яблоко")
    i18n.compiled(po, "ru")
    _catalog(tmp_path, "груша")
    assert Translations(io.BytesIO(i18n.compiled(po, "ru"))).gettext("apple") == "груша"
    assert len(list(cache.glob("*.mo"))) == 1  # the compiled form of the catalog before the edit is gone


def test_two_catalogs_with_the_same_words_keep_a_compiled_file_each(tmp_path: Path, cache: Path) -> None:
    first = _catalog(tmp_path / "a", "яблоко")
    second = _catalog(tmp_path / "b", "яблоко")
    i18n.compiled(first, "ru")
    i18n.compiled(second, "ru")
    assert len(list(cache.glob("*.mo"))) == 2


def test_without_a_writable_cache_the_catalog_is_compiled_in_memory(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    po = _catalog(tmp_path, "слива")
    assert Translations(io.BytesIO(i18n.compiled(po, "ru"))).gettext("apple") == "слива"


def test_hubs_catalogs_read_through_the_cache_say_what_the_po_says(tmp_path: Path, cache: Path) -> None:
    i18n._load.cache_clear()
    try:
        fresh = i18n._load("ru", (i18n.TRANSLATIONS,))
        i18n._load.cache_clear()
        again = i18n._load("ru", (i18n.TRANSLATIONS,))  # from the compiled files now
        assert list(cache.glob("*.mo"))
        assert again.gettext("queued") == fresh.gettext("queued") == "в очереди"
        assert again.ngettext("%(num)s contact", "%(num)s contacts", 5) == \
            fresh.ngettext("%(num)s contact", "%(num)s contacts", 5)
    finally:
        i18n._load.cache_clear()
