"""Promo codes in amoCRM: read from a lead's field or tag, written to a contact's field.

Reading. A lead carries a code in the lead field `[amocrm] promo_field` (its
id), or in a tag that starts with `[amocrm] promo_tag_prefix` («promo:ABC123»
carries ABC123): managers in amoCRM tag a lead faster than they fill a field.
The field wins when both are there. The order then holds the code, and the
workflows plugin redeems it by the same rules as any CRM's order.

Writing. The code goes to the contact field `[amocrm] fields.promo_code`
(the workflows plugin, which knows what the code is worth and until when,
adds the note on the contact, in every CRM alike). With
`[amocrm] lead_promo_field` the code is also written to the contact's newest
open lead. That field must not be `promo_field`: the lead would then carry
the code on the next sync and redeem it before the customer bought anything.
"""

from __future__ import annotations

from typing import Any, Mapping

from hub.api import SettingsError, WriteBackError, gettext, whole_number

MAX_CODE = 64  # orders.promo_code holds 64 characters; a longer value is not a code


def lead_code(row: Mapping[str, Any], field_id: int | None, tag_prefix: str | None) -> str | None:
    """The promo code a lead carries: the field's first value, else the first tag with the prefix."""
    if field_id is not None:
        for field in row.get("custom_fields_values") or []:
            if isinstance(field, Mapping) and str(field.get("field_id")) == str(field_id):
                for item in field.get("values") or []:
                    code = _code(item.get("value") if isinstance(item, Mapping) else item)
                    if code:
                        return code
    if tag_prefix:
        prefix = tag_prefix.strip().casefold()
        for tag in (row.get("_embedded") or {}).get("tags") or []:
            name = str(tag.get("name") or "").strip() if isinstance(tag, Mapping) else ""
            if prefix and name.casefold().startswith(prefix):
                code = _code(name[len(prefix):])
                if code:
                    return code
    return None


def _code(value: Any) -> str | None:
    """A code as a manager typed it, without the spaces a code never holds (« TRY- 7K2 » is TRY-7K2)."""
    if value is None or isinstance(value, (bool, dict, list)):
        return None
    text = "".join(str(value).split())
    return text if text and len(text) <= MAX_CODE else None


def reading(options: Mapping[str, Any]) -> tuple[int | None, str | None]:
    """(promo_field id, promo_tag_prefix) from `[amocrm]`; raises naming the setting that is wrong."""
    field_id = _field_setting(options, "promo_field", SettingsError)
    prefix = options.get("promo_tag_prefix")
    if prefix is not None and (not isinstance(prefix, str) or not prefix.strip() or len(prefix) > MAX_CODE):
        raise SettingsError(gettext("[amocrm] promo_tag_prefix = %(value)s: give the tag's beginning, e.g. \"promo:\"",
                                    value=repr(prefix)[:80]))
    return field_id, (prefix.strip() if isinstance(prefix, str) else None)


def lead_field(options: Mapping[str, Any]) -> int | None:
    """`[amocrm] lead_promo_field`, checked: a lead field id other than `promo_field`."""
    field_id = _field_setting(options, "lead_promo_field", WriteBackError)
    if field_id is not None and str(options.get("promo_field") or "").strip() == str(field_id):
        raise WriteBackError(gettext("amoCRM: [amocrm] lead_promo_field is the field promo_field reads codes from: "
                                     "a lead would redeem the code on the next sync, before anyone bought; use "
                                     "another field"))
    return field_id


def _field_setting(options: Mapping[str, Any], key: str, error: type[Exception]) -> int | None:
    raw = options.get(key)
    if raw is None or raw == "":
        return None
    field_id = whole_number(str(raw).strip()) if isinstance(raw, (int, str)) and not isinstance(raw, bool) else None
    if field_id is None:
        raise error(gettext("[amocrm] %(setting)s = %(value)s: give the lead field's id, a number like 1234567",
                            setting=key, value=repr(raw)[:80]))
    return field_id
