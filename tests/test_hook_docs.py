"""Every hook is documented in docs/plugins.md and has a test of its own.

A hook's own test carries a marker comment naming it, e.g. ``# hook:contact_merged``,
anywhere in a tests/**/test_*.py file.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

from hub import hookspecs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs" / "plugins.md"
TESTS = ROOT / "tests"
HEADING = re.compile(r"^###\s+`([A-Za-z_][A-Za-z0-9_]*)\((.*)\)`\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def hookspec_params() -> dict[str, list[str]]:
    """Hook name -> parameter names, for every function hub.hookspecs marks as a spec."""
    return {
        name: list(inspect.signature(func).parameters)
        for name, func in vars(hookspecs).items()
        if inspect.isfunction(func) and getattr(func, "hub_spec", None) is not None
    }


def doc_sections() -> list[tuple[str, list[str], str]]:
    """(hook name, documented parameters, section body) for each ### `name(...)` heading.

    Headings inside fenced code blocks do not count; a section runs to the next
    heading of level 1 to 3.
    """
    lines = DOCS.read_text(encoding="utf-8").splitlines()
    sections: list[tuple[str, list[str], str]] = []
    current: tuple[str, list[str]] | None = None
    body: list[str] = []
    in_fence = False

    def close() -> None:
        if current is not None:
            sections.append((current[0], current[1], "\n".join(body)))

    for line in lines:
        if FENCE.match(line):
            in_fence = not in_fence
        elif not in_fence and re.match(r"^#{1,3}\s", line):
            close()
            current, body = None, []
            m = HEADING.match(line)
            if m:
                params = [p.strip() for p in m.group(2).split(",") if p.strip()]
                current = (m.group(1), params)
            continue
        body.append(line)
    close()
    return sections


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python[^\n]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_hookspecs_found() -> None:
    assert hookspec_params(), "no hookspecs found in hub.hookspecs"


def test_every_hook_is_documented() -> None:
    specs = hookspec_params()
    documented: dict[str, list[tuple[list[str], str]]] = {}
    for name, params, body in doc_sections():
        documented.setdefault(name, []).append((params, body))
    problems = []
    for name, params in specs.items():
        expected = f"### `{name}({', '.join(params)})`"
        found = documented.get(name)
        if not found:
            problems.append(f"{name}: no heading {expected}")
            continue
        if len(found) > 1:
            problems.append(f"{name}: documented {len(found)} times")
        doc_params, body = found[0]
        if doc_params != params:
            problems.append(f"{name}: heading lists ({', '.join(doc_params)}), the spec has ({', '.join(params)})")
        if not any(re.search(rf"^\s*def {name}\(", block, flags=re.MULTILINE) for block in python_blocks(body)):
            problems.append(f"{name}: no ```python example with `def {name}(` in its section")
    assert not problems, f"{DOCS.relative_to(ROOT)} is out of date with hub/hookspecs.py:\n  " + "\n  ".join(problems)


def test_every_hook_has_its_own_test() -> None:
    specs = hookspec_params()
    texts = [
        p.read_text(encoding="utf-8")
        for p in sorted(TESTS.rglob("test_*.py"))
        if p.resolve() != Path(__file__).resolve()
    ]
    missing = [name for name in specs if not any(re.search(rf"hook:{name}\b", t) for t in texts)]
    assert not missing, (
        "hooks without a test of their own (add a test with a `# hook:NAME` comment under tests/):\n  "
        + "\n  ".join(missing)
    )


def test_docs_name_no_missing_hook() -> None:
    specs = hookspec_params()
    stale = sorted({name for name, _, _ in doc_sections() if name not in specs})
    assert not stale, (f"{DOCS.relative_to(ROOT)} documents hooks that hub/hookspecs.py does not have: "
                       f"{', '.join(stale)}")
