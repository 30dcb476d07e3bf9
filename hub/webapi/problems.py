"""Errors as application/problem+json (RFC 9457), in the reader's language.

A client's mistake is told as exactly as we can: `detail` names the field,
and `errors` lists each problem with a JSON pointer to it (and the item's
index in a batch). The messages for JSON Schema violations are our own,
translated, rather than the validator's English.
"""

from __future__ import annotations

from typing import Any, cast

import jsonschema_rs
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from hub.i18n import N_, gettext, ngettext
from hub.webapi.endpoints import JSON, ApiError

MEDIA_TYPE = "application/problem+json"
MAX_LISTED = 50  # problems listed in one answer; the count says how many there were

# The title of each status, marked here and translated per request.
TITLES = {
    400: N_("Bad request"),
    401: N_("Unauthorized"),
    403: N_("Forbidden"),
    404: N_("Not found"),
    405: N_("Method not allowed"),
    406: N_("Not acceptable"),
    409: N_("Conflict"),
    413: N_("Request too large"),
    415: N_("Unsupported media type"),
    422: N_("Invalid request body"),
    429: N_("Too many requests"),
    500: N_("Server error"),
    503: N_("Service unavailable"),
}


def title(status: int) -> str:
    """The status's short title in the reader's language; an unlisted status gets its class's, never none."""
    return gettext(TITLES.get(status, TITLES[500] if status >= 500 else TITLES[400]))


def body(status: int, title_text: str, detail: str, errors: list[JSON] | None = None) -> JSON:
    """The problem document as RFC 9457 shapes it, so generic clients read it without knowing Hub."""
    out: JSON = {"type": "about:blank", "title": title_text, "status": status, "detail": detail}
    if errors is not None:
        out["errors"] = errors
    return out


def error(status: int, detail: str, **kwargs: Any) -> ApiError:
    """An ApiError with the standard title of `status`."""
    return ApiError(status, title(status), detail, **kwargs)


def pointer(path: Any) -> str:
    """A JSON pointer (RFC 6901) to the field, escaped, so a client can find it in what it sent."""
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in path) if path else "/"


def _message(e: ValidationError) -> str:
    v, expected = e.validator, cast(Any, e.validator_value)
    if v == "type":
        kinds = expected if isinstance(expected, list) else [expected]
        return gettext("must be %(type)s", type=gettext(" or ").join(_type_name(k) for k in kinds))
    if v == "required":
        missing = [name for name in expected if isinstance(e.instance, dict) and name not in e.instance]
        return gettext("%(field)s is required", field=missing[0] if missing else "?")
    if v == "additionalProperties":
        schema = cast(dict[str, Any], e.schema) if isinstance(e.schema, dict) else {}
        extra = sorted(set(e.instance) - set(schema.get("properties") or {})) if isinstance(e.instance, dict) else []
        return gettext("unknown field %(field)s", field=extra[0] if extra else "?")
    if v == "maxItems":
        return ngettext("at most %(num)d item", "at most %(num)d items", int(expected))
    if v == "minItems":
        return ngettext("at least %(num)d item", "at least %(num)d items", int(expected))
    if v == "maxLength":
        return ngettext("at most %(num)d character", "at most %(num)d characters", int(expected))
    if v == "minLength":
        return ngettext("at least %(num)d character", "at least %(num)d characters", int(expected))
    if v == "maxProperties":
        return ngettext("at most %(num)d field", "at most %(num)d fields", int(expected))
    if v == "enum":
        return gettext("must be one of: %(values)s", values=", ".join(str(x) for x in expected))
    if v == "const":
        return gettext("must be %(value)s", value=expected)
    if v in ("minimum", "exclusiveMinimum"):
        return gettext("must be at least %(value)s", value=expected)
    if v in ("maximum", "exclusiveMaximum"):
        return gettext("must be at most %(value)s", value=expected)
    if v == "pattern":
        return pattern_message(cast(Any, e.schema), str(expected))
    if v == "format":
        return gettext("must be a %(format)s", format=_format_name(expected))
    if v in ("anyOf", "oneOf"):
        return gettext("does not match any of the allowed forms")
    return gettext("is not allowed here")


def pattern_message(schema: Any, pattern: str) -> str:
    """A value that does not fit `pattern`, told as people read it: the schema's example or description.

    A regular expression means nothing to most readers, so it is quoted only when the schema gives
    neither. `examples` comes first: it shows the form at once and reads the same in any language,
    where a description is English unless a catalog translates it.
    """
    schema = schema if isinstance(schema, dict) else {}
    examples = schema.get("examples")
    if isinstance(examples, list) and examples and isinstance(examples[0], str):
        return gettext("does not have the expected form, e.g. %(example)s", example=examples[0])
    described = schema.get("description")
    if isinstance(described, str) and described.strip():  # translated when a catalog has it
        return gettext("does not have the expected form: %(form)s", form=gettext(described.strip()))
    return gettext("does not have the expected form (%(pattern)s)", pattern=pattern)


def _forms(schema: Any) -> dict[str, JSON]:
    """Each pattern in a schema with the (first) subschema that has it, to word jsonschema-rs's pattern errors."""
    found: dict[str, JSON] = {}
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            pattern = node.get("pattern")
            if isinstance(pattern, str) and (pattern not in found or _has_form(node) and not _has_form(found[pattern])):
                found[pattern] = node
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _has_form(schema: JSON) -> bool:
    return bool(schema.get("examples") or schema.get("description"))


def _type_name(kind: str) -> str:
    return {"string": gettext("a string"), "integer": gettext("a whole number"), "number": gettext("a number"),
            "object": gettext("an object"), "array": gettext("an array"), "boolean": gettext("true or false"),
            "null": "null"}.get(kind, kind)


def _format_name(fmt: str) -> str:
    return {"date-time": gettext("date and time (ISO 8601, e.g. 2026-12-06T10:00:00+03:00)"),
            "date": gettext("date (YYYY-MM-DD)"), "email": gettext("email address"),
            "uri": gettext("URL")}.get(fmt, fmt)


class Schema:
    """A JSON Schema compiled twice: in Rust to tell fast whether a body fits, in Python to say how it does not.

    A batch of 500 events takes ~150 ms to check with the Python validator and ~3 ms with
    jsonschema-rs, and nearly every request fits, so the Python one runs only for a request that does
    not. jsonschema-rs also reads `pattern` as JSON Schema means it (ECMA-262: `$` is the end of the
    text), where Python's `re` lets a trailing newline through `^[^\\x00-\\x1f]*$`.
    """

    def __init__(self, schema: JSON) -> None:
        self.python = Draft202012Validator(schema)
        self.forms = _forms(schema)
        try:
            self.rust: Any = jsonschema_rs.validator_for(schema, validate_formats=False)
        except ValueError:  # a schema jsonschema-rs cannot compile (a regex it does not know) is checked in Python
            self.rust = None

    def rust_errors(self, instance: Any) -> list[Any] | None:
        """jsonschema-rs's errors ([] if it fits); None when it cannot read the instance."""
        if self.rust is None:
            return None
        try:
            return [] if self.rust.is_valid(instance) else list(self.rust.iter_errors(instance))
        except (ValueError, TypeError, OverflowError):  # a value it cannot read: the Python validator decides
            return None


def validate(validator: Schema | Draft202012Validator, instance: Any, *, where: str = "body",
             batch_key: str | None = None) -> None:
    """Raise a 422 (400 for the query) listing every way `instance` breaks the schema; None if it fits."""
    schema = validator if isinstance(validator, Schema) else None
    fast = schema.rust_errors(instance) if schema is not None else None
    if fast == []:
        return
    python = schema.python if schema is not None else cast(Draft202012Validator, validator)
    found = sorted(python.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    errors: list[JSON] = []
    for e in found[:MAX_LISTED]:
        path = list(e.absolute_path)
        if e.validator == "required" and isinstance(e.instance, dict):
            path += [n for n in e.validator_value if n not in e.instance][:1]
        errors.append(_item(path, _message(e), where, batch_key))
    count = len(found)
    if not found:
        # Only a pattern can fit Python's `re` and not JSON Schema's regex (a trailing newline); jsonschema-rs
        # reads NaN as null and so on, where Python is right.
        patterns = [e for e in fast or () if type(e.kind).__name__ == "Pattern"]
        forms = schema.forms if schema is not None else {}
        errors = [_item(list(e.instance_path), pattern_message(forms.get(e.kind.pattern), e.kind.pattern), where,
                        batch_key)
                  for e in patterns[:MAX_LISTED]]
        count = len(patterns)
    if not errors:
        return
    first = errors[0]
    detail = f"{first['field']}: {first['detail']}"
    if count > 1:
        detail += " " + ngettext("(and %(num)d more problem)", "(and %(num)d more problems)", count - 1)
    status = 422 if where == "body" else 400
    raise ApiError(status, title(status), detail, errors=errors)


def _item(path: list[Any], detail: str, where: str, batch_key: str | None) -> JSON:
    item: JSON = {"field": pointer(path) if where == "body" else (str(path[0]) if path else "?"), "detail": detail}
    if batch_key and len(path) >= 2 and path[0] == batch_key and isinstance(path[1], int):
        item["index"] = path[1]
    return item
