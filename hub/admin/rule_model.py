"""A segment document as the visual rule builder holds it, and back, without losing anything.

The builder in the browser edits a tree of plain JSON nodes; the server turns
the YAML a person typed into that tree (so the browser needs no YAML parser)
and the tree back into YAML (with the dumper the editor always used). Nodes:

- `{"kind": "condition", "field": …, "op": …, "value": …}`: a key is left
  out of the node exactly when the document leaves it out (`is_null` has no
  `value`; `value: null` is kept as null);
- `{"kind": "all" | "any", "items": [node, …]}`, `{"kind": "not", "item": node}`;
- `{"kind": "segment", "name": "…"}`: another segment's rule;
- `{"kind": "text", "yaml": "…"}`: anything the builder cannot show as a form
  (a misspelt key, a value shaped like nothing it knows, a plugin's construct,
  a number JavaScript would round). It is shown as text and written back as
  the same data, so nothing a person wrote is ever lost by opening the builder.

The top of the document keeps its `name`, `title`, `description` and `rule`
as such, every other key as text, and the order the keys came in.
`document(model(d)) == d` for every document as the segment store keeps it
(`rules.jsonable`: dates as ISO text); tests/test_segment_builder.py proves it.
"""

from __future__ import annotations

import math
from typing import Any

import yaml

from hub.i18n import gettext as _
from hub.segments.rules import CONDITION_KEYS, GROUP_KEYS, MAX_DEPTH, PlainDumper, load_yaml

TEXT_KEYS = ("name", "title", "description")
KINDS = ("condition", "all", "any", "not", "segment", "text")
# Deeper than the parser allows is kept as text: it is refused on saving anyway.
MAX_MODEL_DEPTH = MAX_DEPTH + 2
# Integers beyond this lose digits in JavaScript, so they stay text.
SAFE_INTEGER = 2 ** 53 - 1


class ModelError(ValueError):
    """A builder tree that cannot be turned into a document; the message starts with the path."""


class _Dumper(PlainDumper):
    """yaml.safe_dump's dumper, but text holding a line break of its own is written in double quotes.

    Left to choose, PyYAML writes a NEL (U+0085) bare, and reading it back
    folds it into a space; in double quotes it is escaped (\\N) and survives.
    """


def _text_scalar(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    if any(c in value for c in "\x85\u2028\u2029"):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_str(value)


_Dumper.add_representer(str, _text_scalar)


def dump(data: Any) -> str:
    """YAML as the segment editor shows it (hub.admin.segments.as_yaml is this)."""
    return yaml.dump(data, Dumper=_Dumper, allow_unicode=True, sort_keys=False)


def _scalar(value: Any) -> bool:
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        return abs(value) <= SAFE_INTEGER
    return isinstance(value, float) and math.isfinite(value)


def _plain_value(value: Any) -> bool:
    """A value the builder can edit: one scalar, or a flat list of them."""
    if isinstance(value, list):
        return all(_scalar(v) for v in value)
    return _scalar(value)


def model(document: Any) -> dict[str, Any] | None:
    """The builder's tree for a segment document, or None when it is not a mapping or too deep to show."""
    if not isinstance(document, dict):
        return None
    try:
        return _model(document)
    except RecursionError:  # groups hundreds of levels deep: the check refuses them, the builder shows nothing
        return None


def _model(document: dict[Any, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"order": [], "other": {}}
    for key, value in document.items():
        key = str(key)
        out["order"].append(key)
        if key in TEXT_KEYS and (value is None or isinstance(value, str)):
            out[key] = value
        elif key == "rule":
            out["rule"] = node(value)
        else:
            out["other"][key] = dump(value)
    return out


def node(data: Any, depth: int = 1) -> dict[str, Any]:
    """One rule as a builder node; what it cannot show as a form becomes a text node."""
    if depth > MAX_MODEL_DEPTH or not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        return _text(data)
    groups = [k for k in GROUP_KEYS if k in data]
    if groups:
        kind, body = groups[0], data[groups[0]]
        if len(data) != 1:
            return _text(data)
        if kind in ("all", "any") and isinstance(body, list):
            return {"kind": kind, "items": [node(item, depth + 1) for item in body]}
        if kind == "not":
            return {"kind": "not", "item": node(body, depth + 1)}
        if kind == "segment" and isinstance(body, str):
            return {"kind": "segment", "name": body}
        return _text(data)
    if any(k not in CONDITION_KEYS for k in data):
        return _text(data)
    if any(k in data and not (data[k] is None or isinstance(data[k], str)) for k in ("field", "op")):
        return _text(data)
    if "value" in data and not _plain_value(data["value"]):
        return _text(data)
    return {"kind": "condition", **data}


def _text(data: Any) -> dict[str, Any]:
    return {"kind": "text", "yaml": dump(data)}


def document(tree: Any) -> dict[str, Any]:
    """The segment document a builder tree stands for; ModelError says where a hostile tree is wrong."""
    if not isinstance(tree, dict):
        raise ModelError(_("the builder sent no segment"))
    order, other = tree.get("order", []), tree.get("other", {})
    if not isinstance(order, list) or not all(isinstance(k, str) for k in order):
        raise ModelError("order: " + _("expected a list of keys"))
    if not isinstance(other, dict) or not all(isinstance(v, str) for v in other.values()):
        raise ModelError("other: " + _("expected keys with their text"))
    keys = list(dict.fromkeys(order + [k for k in (*TEXT_KEYS, "rule") if k in tree] + list(other)))
    out: dict[str, Any] = {}
    for key in keys:
        if key in TEXT_KEYS and key in tree:
            value = tree[key]
            if value is not None and not isinstance(value, str):
                raise ModelError(key + ": " + _("expected text or nothing"))
            out[key] = value
        elif key == "rule" and "rule" in tree:
            out["rule"] = rule(tree["rule"], "rule")
        elif key in other:
            out[key] = _load(other[key], key)
    return out


def rule(tree: Any, path: str, depth: int = 1) -> Any:
    """The rule a builder node stands for (see the module's docstring for the node shapes)."""
    if depth > MAX_MODEL_DEPTH + 1:
        raise ModelError(path + ": " + _("nested too deeply"))
    if not isinstance(tree, dict) or tree.get("kind") not in KINDS:
        raise ModelError(path + ": " + _("not a part of a rule the builder knows"))
    kind = tree["kind"]
    if kind == "text":
        if not isinstance(tree.get("yaml"), str):
            raise ModelError(path + ": " + _("expected the rule as text"))
        return _load(tree["yaml"], path)
    if kind == "condition":
        out = {k: tree[k] for k in tree if k in CONDITION_KEYS}
        if not _plain_value(out.get("value")) or not all(_scalar(out.get(k)) for k in ("field", "op")):
            raise ModelError(path + ": " + _("expected a field, an operator and a value"))
        return out
    if kind == "segment":
        if not isinstance(tree.get("name"), str):
            raise ModelError(path + ".segment: " + _("expected the name of a segment"))
        return {"segment": tree["name"]}
    if kind == "not":
        return {"not": rule(tree.get("item"), f"{path}.not", depth + 1)}
    items = tree.get("items")
    if not isinstance(items, list):
        raise ModelError(f"{path}.{kind}: " + _("expected a list of rules"))
    return {kind: [rule(item, f"{path}.{kind}[{i}]", depth + 1) for i, item in enumerate(items)]}


def _load(text: str, path: str) -> Any:
    try:
        return load_yaml(text)
    except RecursionError:
        raise ModelError(path + ": " + _("nested too deeply")) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or _("cannot be read")
        if mark is None:
            raise ModelError(path + ": " + _("not valid YAML (%(problem)s)", problem=problem)) from None
        raise ModelError(path + ": " + _("not valid YAML (%(problem)s at line %(line)s, column %(column)s)",
                                         problem=problem, line=mark.line + 1, column=mark.column + 1)) from None
