"""The API plugins are written against, recorded so that every change to it is a deliberate one.

tests/public_api.txt lists every hook with its arguments, every name in
`hub.api` and `workflows.steps.__all__` with its signature (fields of data
classes, methods of classes), and the fixtures of `hub.testing`. Changing any
of them fails this test until the file is rewritten:

    HUB_UPDATE_PUBLIC_API=1 .venv/bin/pytest tests/test_public_api.py

Review the diff: a removed or renamed name, or a changed argument, breaks
plugins people wrote; note it in the hook's or class's docstring
(``.. versionchanged::``) and in docs/plugins.md.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
from pathlib import Path
from typing import Any, Iterator

import hub.api
import hub.testing
import workflows.steps
from hub import hookspecs

RECORD = Path(__file__).with_name("public_api.txt")


def _signature(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _class(name: str, cls: type) -> Iterator[str]:
    bases = ", ".join(b.__name__ for b in cls.__bases__ if b is not object)
    yield f"class {name}({bases})" if bases else f"class {name}"
    if dataclasses.is_dataclass(cls):
        for f in dataclasses.fields(cls):
            yield f"    {f.name}: {f.type}"
    for attr, value in sorted(vars(cls).items()):
        if attr.startswith("_") and attr != "__init__":
            continue
        if attr == "__init__" and (dataclasses.is_dataclass(cls)
                                   or getattr(value, "__qualname__", "") != f"{cls.__qualname__}.__init__"):
            continue  # generated constructors (data classes, protocols, ORM models) are described by their fields
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if inspect.isfunction(value):
            yield f"    def {attr}{_signature(value)}"
        elif isinstance(value, property):
            yield f"    property {attr}"


def _describe(module: str, names: list[str], namespace: Any) -> Iterator[str]:
    yield f"[{module}]"
    for name in names:
        obj = getattr(namespace, name)
        if inspect.isclass(obj):
            yield from _class(name, obj)
        elif callable(obj):
            yield f"def {name}{_signature(obj)}"
        else:
            yield f"{name}: {type(obj).__name__}"
    yield ""


def current_api() -> str:
    lines = ["[hub.hookspecs]"]
    for name, fn in sorted(vars(hookspecs).items()):
        if inspect.isfunction(fn) and hasattr(fn, "hub_spec"):
            lines.append(f"hook {name}{_signature(fn)}")
    lines.append("")
    lines += _describe("hub.api", sorted(hub.api.__all__), hub.api)
    lines += _describe("workflows.steps", sorted(workflows.steps.__all__), workflows.steps)
    lines.append("[hub.testing fixtures]")
    for name, fn in sorted(vars(hub.testing).items()):
        if name.startswith("hub_") and hasattr(fn, "_fixture_function_marker") or (
                name.startswith("hub_") and type(fn).__name__ == "FixtureFunctionDefinition"):
            lines.append(f"fixture {name}")
    for cls in (hub.testing.HubDatabase, hub.testing.HubCLI, hub.testing.AdminClient, hub.testing.FakeClock,
                hub.testing.Sandboxes):
        lines += list(_class(cls.__name__, cls))
    return "\n".join(lines) + "\n"


def test_the_public_api_changes_only_on_purpose() -> None:
    now = current_api()
    if os.environ.get("HUB_UPDATE_PUBLIC_API"):
        RECORD.write_text(now, encoding="utf-8")
    recorded = RECORD.read_text(encoding="utf-8") if RECORD.exists() else ""
    diff = "".join(difflib.unified_diff(recorded.splitlines(True), now.splitlines(True),
                                        "tests/public_api.txt (recorded)", "the code now"))
    assert not diff, ("The public plugin API changed. If that is deliberate, record it with "
                      "HUB_UPDATE_PUBLIC_API=1 .venv/bin/pytest tests/test_public_api.py\n" + diff)


def test_every_hook_says_since_when() -> None:
    missing = [name for name, fn in vars(hookspecs).items()
               if inspect.isfunction(fn) and hasattr(fn, "hub_spec") and ".. versionadded::" not in (fn.__doc__ or "")]
    assert not missing, f"hooks without a `.. versionadded::` note: {missing}"


def test_the_api_module_exports_what_it_imports() -> None:
    imported = {name for name, value in vars(hub.api).items()
                if not name.startswith("_") and getattr(value, "__module__", "").startswith("hub")}
    assert imported - set(hub.api.__all__) == set(), "names imported into hub.api but not in __all__"
    assert len(hub.api.__all__) == len(set(hub.api.__all__))
