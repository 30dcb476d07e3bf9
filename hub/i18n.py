"""Hub in the language of the person reading it: gettext catalogs and the current language.

Messages are written in English in the code and templates (the msgid) and
translated in gettext catalogs: the core and every plugin ship a
``translations/`` folder (``<language>/LC_MESSAGES/*.po``) and register it
through the register_translations hook, the same door for a stranger's plugin
as for ours. English needs no catalog; Russian is shipped complete and is the
default (HUB_LANGUAGE), because the owner and the marketer of a Russian shop
read it. ``make translations`` extracts new messages into the catalogs; a test
fails while any message lacks its Russian translation.

The language is chosen per reader: the command line and background jobs use
HUB_LANGUAGE; the admin uses the signed-in person's own choice (Flask-Babel's
locale selector sets it for each request). Catalogs are read from the .po
files themselves, once per process and language, so there is no compiled file
to forget to rebuild: each is compiled the first time it is seen and the
compiled form is kept in the user's cache folder under the hash of the .po's
bytes (`compiled`), so the next process (every worker start) loads it instead of
parsing the .po again, and an edited .po is compiled afresh.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import tempfile
import threading
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Callable, Iterator

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import LazyProxy, NullTranslations, Translations

from hub.config import SettingsError
from hub.hookspecs import hookimpl

DEFAULT_LANGUAGE = "ru"
LANGUAGES = ("ru", "en")  # the languages Hub is shipped complete in; English is the code's own
LANGUAGE_NAMES = {"ru": "Русский", "en": "English"}  # each in its own words, for a language picker
TRANSLATIONS = Path(__file__).parent / "translations"

_active: ContextVar[str | None] = ContextVar("hub_language", default=None)
_lock = threading.Lock()


@hookimpl
def register_translations(register: Callable[[Path], None]) -> None:
    register(TRANSLATIONS)


def directories() -> list[Path]:
    """Every registered translations folder: each loaded plugin's, then the core's.

    Catalogs are merged in this order and a later one wins, so a plugin that
    translates one of the core's messages differently cannot change how the
    core's own pages read.
    """
    from hub.plugins import get_pm

    found: list[Path] = []
    get_pm().hook.register_translations(register=lambda path: found.append(Path(path)))
    ordered = [folder for folder in dict.fromkeys(found) if folder != TRANSLATIONS]
    return ordered + [TRANSLATIONS] if TRANSLATIONS in found else ordered


def translations(language: str) -> NullTranslations:
    """All catalogs for `language` merged into one, read once per process (English: the messages as written).

    Plugins, and so their folders, are found through the settings: while a
    setting is broken, the core's catalog alone answers, so the message that
    names the broken setting is still shown in the reader's language.
    """
    language = normalize(language)
    if language == "en":
        return NullTranslations()
    try:
        folders = _registered()
    except SettingsError:
        folders = (TRANSLATIONS,)
    with _lock:
        return _load(language, folders)


def core_translations(language: str) -> NullTranslations:
    """The core's catalog alone: for the messages about settings, checked before any plugin can be found."""
    language = normalize(language)
    if language == "en":
        return NullTranslations()
    with _lock:
        return _load(language, (TRANSLATIONS,))


_known: dict[tuple[int, ...], tuple[Path, ...]] = {}


def _registered() -> tuple[Path, ...]:
    """directories(), asked of the plugins once for each set of plugins that implement the hook (not per message)."""
    from hub.plugins import get_pm

    pm = get_pm()
    key = (id(pm), *(id(impl.plugin) for impl in pm.hook.register_translations.get_hookimpls()))
    found = _known.get(key)
    if found is None:
        found = _known[key] = tuple(directories())
    return found


@functools.lru_cache(maxsize=16)
def _load(language: str, folders: tuple[Path, ...]) -> NullTranslations:
    merged: Translations | None = None
    for folder in folders:
        for po in sorted((folder / language / "LC_MESSAGES").glob("*.po")):
            loaded = Translations(io.BytesIO(compiled(po, language)))
            if merged is None:
                merged = loaded
            else:
                merged.merge(loaded)
    return merged or NullTranslations()


def cache_folder() -> Path:
    """Where compiled catalogs are kept: $XDG_CACHE_HOME/hub/catalogs, by default ~/.cache/hub/catalogs."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hub" / "catalogs"


def compiled(po: Path, language: str) -> bytes:
    """The .mo form of one .po catalog, compiled once per content and kept in cache_folder().

    Parsing a .po with Babel costs about a tenth of a second of CPU for Hub's
    catalogs, paid again by every process that speaks Russian (each worker
    that opens the email channel); reading the compiled file costs nearly
    nothing. The file is named by the .po's place and the hash of its bytes
    and the language, so an edited catalog never meets a stale compiled one
    (whose file is removed when the new one is written), and it is written
    under a temporary name and renamed, so a process reading it never sees
    half of it. When the cache cannot be written (a read-only home) the
    catalog is compiled in memory, as before.
    """
    source = po.read_bytes()
    place = hashlib.sha256(f"{po.resolve()}\0{language}".encode()).hexdigest()[:16]
    digest = hashlib.sha256(language.encode("ascii") + b"\0" + source).hexdigest()[:32]
    cached = cache_folder() / f"{place}-{digest}.mo"
    try:
        return cached.read_bytes()
    except OSError:
        pass
    buffer = io.BytesIO()
    write_mo(buffer, read_po(io.BytesIO(source), locale=language))
    data = buffer.getvalue()
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=cached.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(temporary, cached)
        except BaseException:
            os.unlink(temporary)
            raise
        for stale in cached.parent.glob(f"{place}-*.mo"):  # this catalog as it was before an edit
            if stale != cached:
                stale.unlink(missing_ok=True)
    except OSError:
        pass  # no cache to keep it in: compiled again by the next process
    return data


def normalize(language: str | None) -> str:
    """"ru_RU", "RU", "ru-ru" → "ru"; a language Hub does not speak → the default."""
    code = str(language or "").strip().lower().replace("_", "-").split("-")[0]
    return code if code in LANGUAGES else DEFAULT_LANGUAGE


def current_language() -> str:
    """The language of whoever reads what is being made now (the command line and the admin set it)."""
    return _active.get() or DEFAULT_LANGUAGE


def activate(language: str | None) -> None:
    """Speak `language` in this thread or task from now on (the admin does it for each request)."""
    _active.set(normalize(language) if language else None)


@contextlib.contextmanager
def use_language(language: str) -> Iterator[str]:
    """Speak `language` inside the block: a test, or a message for a reader with another language."""
    token = _active.set(normalize(language))
    try:
        yield current_language()
    finally:
        _active.reset(token)


def gettext(message: str, **variables: Any) -> str:
    """`message` in the current language; %(name)s placeholders are filled from `variables`."""
    if not message:
        return ""  # gettext("") is the catalog's header
    text = translations(current_language()).gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables: Any) -> str:
    """The form the count takes in the current language (1 контакт, 2 контакта, 5 контактов).

    ``%(num)s`` in the message is the count, as in Flask-Babel; pass ``num=``
    to show it formatted (``hub.formats.number``: 1 234).
    """
    text = translations(current_language()).ngettext(singular, plural, n)
    variables.setdefault("num", n)
    return text % variables


def pgettext(context: str, message: str, **variables: Any) -> str:
    """`message` where one English word has two Russian ones ("Sent" a letter, "Sent" a form)."""
    text = str(translations(current_language()).pgettext(context, message))
    return text % variables if variables else text


def title(text: str | None) -> str:
    """A definition's title or description in the reader's language, when it is one Hub ships.

    Shipped segments, workflows and templates are titled in English in their
    YAML (hub.catalogs extracts them); a marketer's own title is in no
    catalog and comes back as written.
    """
    if not text:
        return ""
    collapsed = " ".join(text.split())  # as the catalogs hold it (hub.catalogs.extract_titles)
    return translations(current_language()).gettext(collapsed) if collapsed else ""


def lazy_gettext(message: str, **variables: Any) -> LazyProxy:
    """A message translated when it is shown, for module-level texts such as labels and titles."""
    return LazyProxy(gettext, message, enable_cache=False, **variables)


def N_(message: str) -> str:  # noqa: N802 - the gettext convention
    """Marks `message` for the catalog without translating it here: it is translated where it is shown."""
    return message


_ = gettext
