"""Keeping the translation catalogs whole: finding every message to translate and what is still missing.

A translations folder sits in the package it translates (hub/translations,
plugins/gdpr/translations), so its package is the folder's parent. Messages
are found the way pybabel finds them (Babel's extractors, mapping in
babel.cfg): calls of ``_``, ``gettext``, ``ngettext``, ``lazy_gettext``,
``N_`` in Python and ``{{ _() }}`` / ``{% trans %}`` in Jinja templates;
and, because command help is written as docstrings and ``help=`` texts, the
docstrings of click commands and the ``help=`` of their options, which the
command line translates when it shows them. Customer letters
(message_templates folders) are the shop's own words, not Hub's, and are
left out.
"""

from __future__ import annotations

import ast
import inspect
import io
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir, extract_python
from babel.messages.pofile import read_po, write_po

KEYWORDS = {**DEFAULT_KEYWORDS, "lazy_gettext": None, "_l": None, "lazy_ngettext": (1, 2)}
METHODS = [  # the first pattern a file matches decides (the admin's own templates/message_templates/ pages count)
    ("**/message_templates/*/meta.yaml", "hub.catalogs:extract_titles"),
    ("**/library/*.yaml", "hub.catalogs:extract_titles"),
    ("**/scaffold/template/**", "ignore"),
    ("**/templates/**.html", "jinja2"),
    ("**/admin_templates/**.html", "jinja2"),
    ("**/message_templates/**", "ignore"),
    ("**.py", "hub.catalogs:extract_hub_python"),
]
JINJA_OPTIONS = {"extensions": "jinja2.ext.do,jinja2.ext.loopcontrols", "trimmed": "true"}
# Keyword arguments of click's decorators that people read in `--help`.
CLICK_TEXTS = ("help", "short_help", "epilog", "prompt")


def extract_hub_python(fileobj: Any, keywords: Any, comment_tags: Any, options: Any) -> Iterator[tuple]:
    """Babel's Python extractor, plus click command docstrings and their options' help texts."""
    source = fileobj.read()
    yield from extract_python(io.BytesIO(source), keywords, comment_tags, options)
    text = source.decode("utf-8")
    if "click" not in text:
        return
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _is_click_command(node):
            doc = ast.get_docstring(node, clean=False)
            if doc:
                yield node.lineno, None, inspect.cleandoc(doc), []
        elif isinstance(node, ast.Call) and _is_click_call(node):
            for keyword in node.keywords:
                if keyword.arg in CLICK_TEXTS and isinstance(keyword.value, ast.Constant) \
                        and isinstance(keyword.value.value, str) and keyword.value.value.strip():
                    yield keyword.lineno, None, inspect.cleandoc(keyword.value.value), []


TITLE_KEYS = ("title", "description")


def extract_titles(fileobj: Any, keywords: Any, comment_tags: Any, options: Any) -> Iterator[tuple]:
    """The title and description of a shipped definition (segment, workflow, template meta.yaml).

    They are written in English and shown through gettext, so a shipped
    segment reads "Не покупали 90 дней" in Russian; a marketer's own
    definitions, in whatever language they wrote them, are not in any
    catalog and show as written.
    """
    import yaml

    document = yaml.safe_load(fileobj.read().decode("utf-8"))
    if not isinstance(document, dict):
        return
    for key in TITLE_KEYS:
        value = document.get(key)
        if isinstance(value, str) and value.strip():
            yield 1, None, " ".join(value.split()), []


def _callee(node: ast.expr) -> str:
    func = node.func if isinstance(node, ast.Call) else node
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _is_click_command(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(_callee(d) in ("command", "group") for d in node.decorator_list)


def _is_click_call(node: ast.Call) -> bool:
    return _callee(node) in ("option", "argument", "command", "group", "version_option", "confirmation_option",
                             "password_option", "Option", "Argument", "Command", "Group")


@dataclass
class Found:
    """A message to translate: its plural form (if any) and every place it is written (path:line)."""

    plural: str | None = None
    where: list[str] = field(default_factory=list)


# A message is known by its text and its context (pgettext's first argument; None for most).
Key = tuple[str, str | None]


def messages(package: Path) -> dict[Key, Found]:
    """Every message in `package` that needs a translation."""
    found: dict[Key, Found] = {}
    options = {"**/templates/**.html": JINJA_OPTIONS, "**/admin_templates/**.html": JINJA_OPTIONS}
    for filename, lineno, message, _comments, context in extract_from_dir(
            package, METHODS, options_map=options, keywords=KEYWORDS, strip_comment_tags=True,
            directory_filter=_not_hidden):
        forms = [message] if isinstance(message, str) else [m for m in message if m]
        if forms:
            entry = found.setdefault((forms[0], context or None), Found(forms[1] if len(forms) > 1 else None))
            entry.where.append(f"{package.name}/{filename}:{lineno}")
    return found


def _not_hidden(path: str) -> bool:
    # Every folder is walked (babel.cfg's ignore rules apply to files), so a template's meta.yaml is found.
    return not Path(path).name.startswith((".", "_"))


def brace_fields(text: str) -> list[str]:
    """The {name} fields of a str.format text (click's messages use them)."""
    try:
        return sorted(name for _, name, _, _ in string.Formatter().parse(text) if name is not None)
    except ValueError:
        return ["<malformed>"]


def read(folder: Path, language: str) -> Catalog:
    """Every catalog of `language` in `folder` as one (a package may split its messages over several files)."""
    merged = Catalog(locale=language)
    for po in sorted((folder / language / "LC_MESSAGES").glob("*.po")):
        with po.open("rb") as f:
            for message in read_po(f, locale=language):
                key = message.id if isinstance(message.id, str) else message.id[0]
                if key and not _translated(merged, (key, message.context)):
                    merged[message.id] = message  # a translation in one file is not undone by a blank in another
    return merged


def untranslated(folder: Path, language: str) -> dict[str, list[str]]:
    """Messages of the folder's package that have no translation into `language` (or only a fuzzy one)."""
    return untranslated_from(folder.parent, folder, language)


def update(folder: Path, language: str, domain: str) -> tuple[int, int]:
    """Add the new messages of the folder's own package; see update_from."""
    return update_from(folder.parent, folder, language, domain)


def untranslated_from(package: Path, folder: Path, language: str) -> dict[str, list[str]]:
    """Messages of `package` (click's, say) that `folder`'s catalogs do not translate, with where they are."""
    catalog = read(folder, language)
    return {_shown(key): found.where for key, found in messages(package).items() if not _translated(catalog, key)}


def _shown(key: Key) -> str:
    msgid, context = key
    return f"{context} | {msgid}" if context else msgid


def _translated(catalog: Catalog, key: Key) -> bool:
    entry = catalog.get(key[0], context=key[1])
    if entry is None or entry.fuzzy:
        return False
    strings = entry.string
    return all(strings) if isinstance(strings, (tuple, list)) else bool(strings)


def update_from(package: Path, folder: Path, language: str, domain: str) -> tuple[int, int]:
    """Add the package's new messages to ``<language>/LC_MESSAGES/<domain>.po`` (untranslated); (added, total).

    Messages already in any of the folder's files stay where they are;
    nothing is removed, so a message that left the code is kept until a
    person deletes it.
    """
    path = folder / language / "LC_MESSAGES" / f"{domain}.po"
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        with path.open("rb") as f:
            catalog = read_po(f, locale=language)
    else:
        catalog = Catalog(locale=language, project="Hub", domain=domain, version="", fuzzy=False,
                          copyright_holder="Hub contributors", msgid_bugs_address="", last_translator="",
                          language_team="")
    known = read(folder, language)
    added = 0
    for (msgid, context), found in messages(package).items():
        if known.get(msgid, context=context) is not None or catalog.get(msgid, context=context) is not None:
            continue
        locations = [(w.rpartition(":")[0], int(w.rpartition(":")[2])) for w in found.where]
        catalog.add((msgid, found.plural) if found.plural else msgid, locations=locations, context=context)
        added += 1
    with path.open("wb") as f:
        write_po(f, catalog, width=120, omit_header=False, sort_output=False)
    return added, len(catalog)
