"""A workflow document as the admin's visual builder holds it, and back, without losing anything.

The builder in the browser (admin_static/workflow-builder.js) edits a tree of
plain JSON; the server reads the YAML a person typed into that tree, so the
browser needs no YAML parser, and writes a changed tree back as YAML. The tree:

    {"name", "title", "description",            # present exactly when the document has them
     "trigger": {"kind": K, ...the trigger's own keys},   # K: event | date | schedule | segment_exit | segment
     "reentry", "holdout", "goal",              # as the document writes them
     "steps": [node, ...],
     "other": {key: "<YAML>"}}                  # anything else at the top, kept as text

Step nodes:

- `{"kind": "<step>", "options": {...}}` for a step kind that declares a
  `form` covering its options (`"short": true` when written as `wait: 7d`);
- `{"kind": "if", "rule": <hub.admin.rule_model node>, "then": [node],
  "else": [node]}` (`"then_one"`/`"else_one"` when the branch is one step,
  not a list, as in `then: exit`);
- `{"kind": "exit"}` (`"mapping": true` for `{exit: null}`);
- `{"kind": "text", "text": "<YAML>"}` for everything else: unknown kinds, a
  plugin's step without a form, odd shapes. It is written back as the same data.

`to_document(to_model(d)) == d` and `from_text(to_text(d)) == d` for every
document as the store keeps it (tests/test_workflow_builder_model.py).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import yaml

# not in hub.api on purpose: a workflow's `if` is a rule in the segment language, drawn by the same builder tree
from hub.admin import rule_model
from hub.api import gettext
# not in hub.api on purpose: conditions and triggers are written in the segment rule language itself
from hub.segments.rules import PlainDumper, jsonable, read_yaml
from workflows.definition import KEYS, step_types
from workflows.steps import Step

TEXT_KEYS = ("name", "title", "description")
VALUE_KEYS = ("reentry", "holdout")
TRIGGER_KINDS = ("event", "date", "schedule", "segment_exit", "segment")
# Branches deeper than this are kept as text: nobody builds them by clicking, and JSON stays shallow.
MAX_DEPTH = 12
SAFE_INTEGER = 2 ** 53 - 1
FLOW_WIDTH = 100  # a mapping of plain values shorter than this is written inline, as the library files do


class ModelError(ValueError):
    """A builder tree that cannot be turned into a document; the message starts with the path."""


def _scalar(value: Any) -> bool:
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        return abs(value) <= SAFE_INTEGER
    return isinstance(value, float) and math.isfinite(value)


def _text(data: Any) -> dict[str, Any]:
    return {"kind": "text", "text": rule_model.dump(data)}


# --- document → tree ----------------------------------------------------------------------

def to_model(document: Any, types: Mapping[str, type[Step]] | None = None) -> dict[str, Any] | None:
    """The builder's tree for a workflow document, or None when it is not a mapping or too deep to show."""
    if not isinstance(document, dict):
        return None
    kinds = step_types() if types is None else types
    try:
        return _model(document, kinds)
    except RecursionError:  # hundreds of levels: the check refuses them, the builder shows nothing
        return None


def _model(document: dict[Any, Any], kinds: Mapping[str, type[Step]]) -> dict[str, Any]:
    out: dict[str, Any] = {"other": {}}
    for key, value in document.items():
        key = str(key)
        if key in TEXT_KEYS and (value is None or isinstance(value, str)):
            out[key] = value
        elif key in VALUE_KEYS and _scalar(value):
            out[key] = value
        elif key == "goal" and (value is None or (isinstance(value, dict) and all(
                isinstance(k, str) and k != "kind" and _scalar(v) for k, v in value.items()))):
            out[key] = value
        elif key == "trigger" and _plain_trigger(value):
            out[key] = {"kind": trigger_kind(value), **value}
        elif key == "steps" and isinstance(value, list):
            out[key] = [_node(item, kinds, 1) for item in value]
        else:
            out["other"][key] = rule_model.dump(value)
    return out


def _plain_trigger(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(k, str) and k != "kind" and _scalar(v) for k, v in value.items())


def trigger_kind(trigger: Mapping[str, Any]) -> str:
    """What kind of trigger the keys make: event, date, schedule, segment_exit or segment."""
    if "event" in trigger:
        return "event"
    if "date" in trigger:
        return "date"
    if "schedule" in trigger:
        return "schedule"
    if "segment" in trigger and trigger.get("on") == "exit":
        return "segment_exit"
    return "segment"


def _node(item: Any, kinds: Mapping[str, type[Step]], depth: int) -> dict[str, Any]:
    if item == "exit":
        return {"kind": "exit"}
    if depth > MAX_DEPTH or not isinstance(item, dict) or not item or not all(isinstance(k, str) for k in item):
        return _text(item)
    if item == {"exit": None}:
        return {"kind": "exit", "mapping": True}
    if "if" in item:
        if set(item) - {"if", "then", "else"} or "then" not in item:
            return _text(item)
        out: dict[str, Any] = {"kind": "if", "rule": rule_model.node(item["if"])}
        for branch in ("then", "else"):
            if branch not in item:
                continue
            body = item[branch]
            if isinstance(body, list):
                out[branch] = [_node(one, kinds, depth + 1) for one in body]
            else:
                out[branch] = [_node(body, kinds, depth + 1)]
                out[f"{branch}_one"] = True
        return out
    if len(item) != 1:
        return _text(item)
    kind, options = next(iter(item.items()))
    cls = kinds.get(kind)
    if cls is None or not cls.form or kind in ("if", "exit"):
        return _text(item)
    keys = {f.key for f in cls.form}
    if isinstance(options, dict):
        if all(k in keys and _scalar(v) for k, v in options.items()):
            return {"kind": kind, "options": dict(options)}
        return _text(item)
    if cls.shorthand is not None and options is not None and _scalar(options):
        return {"kind": kind, "options": {cls.shorthand: options}, "short": True}
    return _text(item)


# --- tree → document ----------------------------------------------------------------------

def to_document(model: Any, path: str = "") -> dict[str, Any]:
    """The workflow document a builder tree stands for; ModelError says where a hostile tree is wrong."""
    if not isinstance(model, dict):
        raise ModelError(gettext("the builder sent no workflow"))
    where = (path + ".") if path else ""
    other = model.get("other", {})
    if not isinstance(other, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in other.items()):
        raise ModelError(where + "other: " + gettext("expected keys with their text"))
    out: dict[str, Any] = {}
    for key in model:
        if key == "other":
            continue
        value = model[key]
        if key in TEXT_KEYS:
            if value is not None and not isinstance(value, str):
                raise ModelError(where + key + ": " + gettext("expected text or nothing"))
            out[key] = value
        elif key in VALUE_KEYS:
            if not _scalar(value):
                raise ModelError(where + key + ": " + gettext("expected one value"))
            out[key] = value
        elif key == "goal":
            if value is not None and not (isinstance(value, dict) and all(_scalar(v) for v in value.values())):
                raise ModelError(where + key + ": " + gettext("expected an event and a period"))
            out[key] = value
        elif key == "trigger":
            out[key] = _trigger(value, where + key)
        elif key == "steps":
            if not isinstance(value, list):
                raise ModelError(where + key + ": " + gettext("expected a list of steps"))
            out[key] = [_step(node, f"{where}steps[{i}]", 1) for i, node in enumerate(value)]
        else:
            raise ModelError(where + str(key) + ": " + gettext("not a part of a workflow the builder knows"))
    for key, text in other.items():
        if key in out:
            raise ModelError(where + key + ": " + gettext("given twice"))
        out[key] = _load(text, where + key)
    return out


def _trigger(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ModelError(path + ": " + gettext("expected a trigger"))
    if value.get("kind") == "text":
        if not isinstance(value.get("text"), str):
            raise ModelError(path + ": " + gettext("expected the trigger as text"))
        return _load(value["text"], path)
    if value.get("kind") not in TRIGGER_KINDS:
        raise ModelError(path + ": " + gettext("not a kind of trigger the builder knows"))
    out = {k: v for k, v in value.items() if k != "kind"}
    for key, one in out.items():
        if not _scalar(one):
            raise ModelError(f"{path}.{key}: " + gettext("expected one value"))
    return out


def _step(node: Any, path: str, depth: int) -> Any:
    if depth > MAX_DEPTH + 1:
        raise ModelError(path + ": " + gettext("nested too deeply"))
    if not isinstance(node, dict) or not isinstance(node.get("kind"), str):
        raise ModelError(path + ": " + gettext("not a step the builder knows"))
    kind = node["kind"]
    if kind == "text":
        if not isinstance(node.get("text"), str):
            raise ModelError(path + ": " + gettext("expected the step as text"))
        return _load(node["text"], path)
    if kind == "exit":
        return {"exit": None} if node.get("mapping") else "exit"
    if kind == "if":
        try:  # a condition not chosen yet is written as `if: null`, for the check to say so
            rule = node.get("rule")
            out: dict[str, Any] = {"if": None if rule is None else rule_model.rule(rule, path + ".if")}
        except rule_model.ModelError as exc:
            raise ModelError(str(exc)) from None
        for branch in ("then", "else"):
            if branch not in node:
                if branch == "then":
                    raise ModelError(f"{path}.then: " + gettext("expected a list of steps"))
                continue
            body = node[branch]
            if not isinstance(body, list):
                raise ModelError(f"{path}.{branch}: " + gettext("expected a list of steps"))
            if node.get(f"{branch}_one") and len(body) == 1:
                out[branch] = _step(body[0], f"{path}.{branch}", depth + 1)
            else:
                out[branch] = [_step(one, f"{path}.{branch}[{i}]", depth + 1) for i, one in enumerate(body)]
        return out
    options = node.get("options")
    if not isinstance(options, dict) or not all(isinstance(k, str) for k in options):
        raise ModelError(f"{path}.{kind}: " + gettext("expected the step's options"))
    for key, value in options.items():
        if not _scalar(value):
            raise ModelError(f"{path}.{kind}.{key}: " + gettext("expected one value"))
    if node.get("short") and len(options) == 1:
        return {kind: next(iter(options.values()))}
    return {kind: dict(options)}


def _load(text: str, path: str) -> Any:
    try:
        return jsonable(rule_model._load(text, path))  # the same reading, the same messages
    except rule_model.ModelError as exc:
        raise ModelError(str(exc)) from None


# --- text ---------------------------------------------------------------------------------

class _Dumper(PlainDumper):
    """Block style for the document and its steps; small mappings and lists of plain values inline."""


class _Block(dict[Any, Any]):
    """A mapping always written as a block (the document, a step)."""


def _text_scalar(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if any(c in value for c in "\x85\u2028\u2029"):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_str(value)


def _small(value: Any) -> bool:
    """Plain values (or flat lists of them, or small mappings of them) short enough to read on one line."""
    def plain(v: Any) -> bool:
        if isinstance(v, str):
            return "\n" not in v
        if isinstance(v, list):
            return all(plain(x) and not isinstance(x, (list, dict)) for x in v)
        if isinstance(v, dict):
            return all(plain(x) for x in v.values())
        return _scalar(v)
    return plain(value) and len(repr(value)) < FLOW_WIDTH * 2


def _mapping(dumper: yaml.SafeDumper, value: dict[Any, Any]) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items(),
                                    flow_style=bool(value) and _small(value))


def _block(dumper: yaml.SafeDumper, value: dict[Any, Any]) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items(), flow_style=False)


def _sequence(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=bool(value) and _small(value))


_Dumper.add_representer(str, _text_scalar)
_Dumper.add_representer(dict, _mapping)
_Dumper.add_representer(_Block, _block)
_Dumper.add_representer(list, _sequence)


def _shape_steps(steps: Any) -> Any:
    if not isinstance(steps, list):
        return _shape_step(steps)
    return [_shape_step(step) for step in steps]


def _shape_step(step: Any) -> Any:
    """A step written as `- send: {...}`; an if step's branches as lists of such steps."""
    if not isinstance(step, dict):
        return step
    if "if" in step:
        return _Block({k: _shape_steps(v) if k in ("then", "else") else v for k, v in step.items()})
    return _Block(step)


def to_text(document: Any) -> str:
    """YAML the way the shipped library files look: keys in the usual order, small parts inline."""
    if not isinstance(document, dict):
        return yaml.dump(document, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=FLOW_WIDTH + 20)
    ordered = _Block({k: document[k] for k in KEYS if k in document})
    ordered.update({k: v for k, v in document.items() if k not in ordered})
    if "steps" in ordered:
        ordered["steps"] = _shape_steps(ordered["steps"])
    return yaml.dump(ordered, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=FLOW_WIDTH + 20)


def from_text(text: str) -> Any:
    """The document a person typed (dates as ISO text), or a SegmentError saying where the YAML is broken."""
    return jsonable(read_yaml(text))
