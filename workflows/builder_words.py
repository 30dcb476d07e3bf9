"""The builder's problems in people's words: «Шаг 7 «Подождать»: укажите, сколько ждать…».

The check reports problems the way the text form needs them — a path and the
file's syntax ("steps[6].wait: give a length (wait: 7d) or …") — and the
command line and YAML users keep exactly that. A marketer clicking cards reads
the same problems under the builder: there the path becomes the step's number
as drawn (steps, then «да», then «нет», counted like the workflow's own
numbering: every step, conditions and exits included) and the states the
builder itself leaves behind (a new wait with nothing, a condition with no
field yet, an operator without its value, a step whose template is not
chosen) are said as what to do next. Anything not recognised keeps the
parser's words after the new location, so nothing is hidden.
"""

from __future__ import annotations

import re
from typing import Any

from hub.api import N_, gettext

from workflows.definition import NAME
from workflows.steps import kind_title

PROBLEM = re.compile(r"^([A-Za-z_]\w*(?:\.[\w-]+|\[\d+\])*): (.*)$", re.S)
NAME_LIMIT = 64
TRANSLIT = {
    "а": "a", "б": "b", "в": "v", "г": "g", "д": "d", "е": "e", "ё": "e", "ж": "zh", "з": "z", "и": "i",
    "й": "y", "к": "k", "л": "l", "м": "m", "н": "n", "о": "o", "п": "p", "р": "r", "с": "s", "т": "t",
    "у": "u", "ф": "f", "х": "kh", "ц": "ts", "ч": "ch", "ш": "sh", "щ": "shch", "ъ": "", "ы": "y", "ь": "",
    "э": "e", "ю": "yu", "я": "ya",
}
PLACES = {"name": N_("Name"), "title": N_("Title"), "description": N_("Description"), "trigger": N_("Start"),
          "goal": N_("Goal"), "holdout": N_("Control group"), "reentry": N_("Enter again"), "steps": N_("Steps")}
RULE_PARTS = {"field": N_("Condition in step %(num)s, field"), "op": N_("Condition in step %(num)s, operator"),
              "value": N_("Condition in step %(num)s, value")}


def transliterate(title: str) -> str:
    """A workflow name made from a title («Весенний возврат» → vesenniy_vozvrat); "" when nothing is left.

    The same table as the builder's script (workflow-builder.js `translit`), so
    the name the page fills in and the one a problem suggests agree.
    """
    latin = "".join(TRANSLIT.get(ch, ch) for ch in title.lower())
    name = re.sub(r"[^a-z0-9]+", "_", latin).strip("_")
    if name and not name[0].isalpha():
        name = "w_" + name
    return name[:NAME_LIMIT].rstrip("_")


def numbered(model: Any) -> dict[str, tuple[int, dict[str, Any]]]:
    """Each drawn step's path → (its number as people read it, its node)."""
    out: dict[str, tuple[int, dict[str, Any]]] = {}
    steps = model.get("steps") if isinstance(model, dict) else None
    _walk(steps, "steps", False, out, [0], 0)
    return out


def _walk(nodes: Any, base: str, one: bool, out: dict[str, tuple[int, dict[str, Any]]], count: list[int],
          depth: int) -> None:
    if not isinstance(nodes, list) or depth > 40:
        return
    for i, node in enumerate(nodes):
        if not isinstance(node, dict):
            continue
        count[0] += 1
        path = base if one and len(nodes) == 1 else f"{base}[{i}]"
        out[path] = (count[0], node)
        if node.get("kind") == "if":
            for branch in ("then", "else"):
                _walk(node.get(branch), f"{path}.{branch}", bool(node.get(f"{branch}_one")), out, count, depth + 1)


def shown(problems: list[str], model: Any, kinds: dict[str, Any]) -> list[dict[str, Any]]:
    """Each problem as the builder shows it: where (in words), what (builder-worded when known), and
    whether it is only something not filled in yet ("todo": shown as a to-do, not as an error).

    `kinds` maps a step kind to its class (for titles and form field titles).
    """
    steps = numbered(model)
    out: list[dict[str, Any]] = []
    for problem in problems:
        said: dict[str, Any] = _one(problem, model if isinstance(model, dict) else {}, steps, kinds)
        found = PROBLEM.match(problem)
        said["todo"] = said["text"] != (found.group(2) if found else problem)  # the builder's own words
        out.append(said)
    return out


def _one(problem: str, model: dict[str, Any], steps: dict[str, tuple[int, dict[str, Any]]],
         kinds: dict[str, Any]) -> dict[str, str]:
    found = PROBLEM.match(problem)
    if not found:
        return {"where": "", "text": problem}
    path, detail = found.group(1), found.group(2)
    best = ""
    for key in steps:
        if (path == key or path.startswith(key + ".") or path.startswith(key + "[")) and len(key) > len(best):
            best = key
    if best:
        number, node = steps[best]
        return _step(path[len(best):].lstrip("."), detail, number, node, kinds)
    return _top(path, detail, model)


def _top(path: str, detail: str, model: dict[str, Any]) -> dict[str, str]:
    head = re.split(r"[.\[]", path, maxsplit=1)[0]
    where = gettext(PLACES[head]) if head in PLACES else path
    name = model.get("name")
    if path == "name" and (not isinstance(name, str) or not NAME.match(name)):  # missing or not Latin
        return {"where": where, "text": _name(model)}
    if path == "steps" and detail == gettext("expected a list of at least one step"):
        return {"where": where, "text": gettext("add at least one step with «+ step»")}
    if path == "trigger":
        found = model.get("trigger")
        trigger: dict[str, Any] = found if isinstance(found, dict) else {}
        kind = trigger.get("kind") or "segment"  # the card starts on «entering a segment»
        if kind in ("segment", "segment_exit", "schedule") and not trigger.get("segment"):
            return {"where": where, "text": gettext("choose the segment")}
        if kind == "event" and not trigger.get("event"):
            return {"where": where, "text": gettext("choose the event")}
        if kind == "date" and not trigger.get("date"):
            return {"where": where, "text": gettext("choose the date in the card")}
    return {"where": where, "text": detail}


def _name(model: dict[str, Any]) -> str:
    """What to type as the name, with a suggestion made from the title (or from the name typed in Cyrillic)."""
    typed, title = model.get("name"), model.get("title")
    suggestion = transliterate(typed if isinstance(typed, str) else "") or \
        transliterate(title if isinstance(title, str) else "")
    if suggestion and NAME.match(suggestion):
        return gettext("write the name in Latin letters, e.g. %(name)s", name=suggestion)
    return gettext("write the name in Latin letters, digits and _, starting with a letter; or give a title and "
                   "the name is made from it")


def _step(rest: str, detail: str, number: int, node: dict[str, Any], kinds: dict[str, Any]) -> dict[str, str]:
    kind = node.get("kind")
    if kind == "if":
        return _condition(rest, detail, number, node)
    cls = kinds.get(str(kind))
    title = gettext("Condition") if kind == "if" else gettext("Leave the workflow") if kind == "exit" else \
        kind_title(cls) if cls is not None else str(kind)
    where = gettext("Step %(num)s «%(title)s»", num=number, title=title)
    found = node.get("options")
    options: dict[str, Any] = found if isinstance(found, dict) else {}
    parts = rest.split(".")
    if kind == "wait" and parts == ["wait"] and not options:
        return {"where": where, "text": gettext("say how long to wait, or until what time")}
    if kind == "tag" and parts == ["tag"] and not options:
        return {"where": where, "text": gettext("give the tag")}
    if len(parts) == 2 and parts[0] == kind and cls is not None:
        key = parts[1]
        field = next((f for f in getattr(cls, "form", ()) if f.key == key), None)
        if detail in (gettext("missing"), gettext("expected some text")) and options.get(key) in (None, ""):
            if key == "channel":
                return {"where": where, "text": gettext("no channel chosen")}
            if key == "template":
                return {"where": where, "text": gettext("no template chosen")}
            if field is not None:
                return {"where": where, "text": gettext("fill in «%(field)s»", field=gettext(field.title))}
        if field is not None:
            return {"where": gettext("Step %(num)s «%(title)s», «%(field)s»", num=number, title=title,
                                     field=gettext(field.title)), "text": detail}
    return {"where": where, "text": detail}


def _condition(rest: str, detail: str, number: int, node: dict[str, Any]) -> dict[str, str]:
    where = gettext("Condition in step %(num)s", num=number)
    rule = node.get("rule")
    if rest == "if" and not rule:
        return {"where": where, "text": gettext("choose the condition's field")}
    if rest == "if.field" and detail == gettext("missing"):
        return {"where": where, "text": gettext("choose the condition's field")}
    if rest.startswith("if") and rest.endswith(".value") and detail.startswith(gettext("missing") + ";"):
        return {"where": where, "text": gettext("give the value")}
    last = rest.rsplit(".", 1)[-1]
    if rest.count(".") == 1 and last in RULE_PARTS:
        return {"where": gettext(RULE_PARTS[last], num=number), "text": detail}
    return {"where": where, "text": detail}
