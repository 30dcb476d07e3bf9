"""Erasing a person in amoCRM: its API cannot delete a contact, so Hub anonymises it.

amoCRM's API v4 has no method that deletes a contact (only the interface
does). On a GDPR/152-FZ erasure Hub therefore overwrites the contact: the
name becomes a placeholder («Удалённый контакт»), first and last name are
emptied, every custom field that holds a value is cleared (`"values": null`:
phones, emails, the birthday, the address and whatever else the account
keeps about a person) and a tag («удалён по запросу») replaces its tags, so a manager
who finds it knows why it is empty and a later sync brings nobody back: with
no phone, no email and no name there is nothing to match a person by.

The contact's calls are notes (call_in / call_out) that keep the number called
(`params.phone`), what the manager wrote about the call (`call_result`) and a
link to the recording: the API edits notes (PATCH /api/v4/contacts/notes, a
list of {id, entity_id, note_type, params}), so each call note of the contact
is read (GET /api/v4/contacts/{id}/notes, paged) and those three are emptied,
50 notes a request. Calls logged on the contact's leads are notes of the lead
(GET /api/v4/leads/{id}/notes, PATCH /api/v4/leads/notes): those made to or
from one of the contact's numbers are emptied the same way (a lead may have
other people, whose calls stay). A note amoCRM refuses to edit is counted, and the answer
then says call notes were kept (`CALLS_KEPT`), so nobody is told the phones
are gone while a note still holds one; the erasure is asked again later.
Other notes (common ones a manager typed) and the card's history are not
touched; the docs tell the shop to delete the contact in the interface when
those hold personal data too.
"""

from __future__ import annotations

from typing import Any, Mapping

from hub.api import Settings, WriteBackError, gettext, normalize_phones, use_language

MAX_TEXT = 250  # a name or tag longer than this is not one a manager typed
CALL_NOTES = ("call_in", "call_out")
CLEARED_PARAMS = ("phone", "call_result", "link")  # the number, the manager's words, the recording
MAX_NOTES_PATCH = 50  # notes edited in one request
CALLS_KEPT = "anonymised; call notes kept"  # the answer when some call note could not be cleared


def placeholder(settings: Settings, options: Mapping[str, Any]) -> tuple[str, str]:
    """(the name an erased contact gets, the tag it carries): `[amocrm] erase_name` / `erase_tag`,
    else «Удалённый контакт» / «удалён по запросу» in the shop's language."""
    with use_language(settings.language):
        defaults = {"erase_name": gettext("Erased contact"), "erase_tag": gettext("erased on request")}
    out = []
    for key, default in defaults.items():
        value = options.get(key, default)
        if not isinstance(value, str) or not value.strip() or len(value.strip()) > MAX_TEXT:
            raise WriteBackError(gettext("amoCRM: [amocrm] %(setting)s = %(value)s: give a text of 1 to %(most)s "
                                         "characters", setting=key, value=repr(value)[:80], most=MAX_TEXT))
        out.append(value.strip())
    return out[0], out[1]


def anonymised(contact: Mapping[str, Any], name: str, tag: str) -> dict[str, Any]:
    """The PATCH /api/v4/contacts item that empties `contact` (as GET /api/v4/contacts/{id} gave it)."""
    # `_embedded.tags` is the documented form and replaces every tag: an erased person keeps only this one.
    change: dict[str, Any] = {"id": int(contact["id"]), "name": name, "first_name": "", "last_name": "",
                              "_embedded": {"tags": [{"name": tag}]}}
    filled = [field["field_id"] for field in contact.get("custom_fields_values") or []
              if isinstance(field, Mapping) and field.get("field_id") is not None and field.get("values")]
    if filled:
        change["custom_fields_values"] = [{"field_id": field_id, "values": None} for field_id in dict.fromkeys(filled)]
    return change


def phone_keys(contact: Mapping[str, Any]) -> frozenset[str]:
    """The contact's phones as Hub normalizes them, to know its calls among a lead's (see `called`)."""
    keys: set[str] = set()
    for field in contact.get("custom_fields_values") or []:
        if isinstance(field, Mapping) and str(field.get("field_code") or "").upper() == "PHONE":
            for value in field.get("values") or []:
                raw = value.get("value") if isinstance(value, Mapping) else value
                keys.update(found.value for found in normalize_phones(str(raw or "")) if found.valid)
    return frozenset(keys)


def lead_ids(contact: Mapping[str, Any]) -> list[int]:
    """The contact's leads (GET /api/v4/contacts/{id}?with=leads), whose call notes may hold its number."""
    embedded = contact.get("_embedded")
    leads = embedded.get("leads") if isinstance(embedded, Mapping) else None
    return [int(lead["id"]) for lead in leads or []
            if isinstance(lead, Mapping) and str(lead.get("id") or "").isdigit()]


def called(note: Mapping[str, Any], phones: frozenset[str]) -> bool:
    """Whether a call note of a lead was a call to or from one of `phones`.

    A lead may have several people; only the erased one's calls are emptied,
    known by the number the call note keeps. A call without a number is
    nobody's in particular and stays.
    """
    params = note.get("params") if isinstance(note, Mapping) else None
    raw = str(params.get("phone") or "") if isinstance(params, Mapping) else ""
    return any(found.valid and found.value in phones for found in normalize_phones(raw))


def cleared_call(note: Mapping[str, Any]) -> dict[str, Any] | None:
    """The PATCH /api/v4/contacts/notes item that empties a call note's phone, result text and recording
    link, the other params sent as they are (amoCRM checks a call note's params whole); None when the
    note is no call or holds none of them."""
    if not isinstance(note, Mapping) or note.get("note_type") not in CALL_NOTES:
        return None
    raw = note.get("params")
    params: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    filled = [key for key in CLEARED_PARAMS if str(params.get(key) or "").strip()]
    if not filled or note.get("id") is None or note.get("entity_id") is None:
        return None
    return {"id": int(note["id"]), "entity_id": int(note["entity_id"]), "note_type": note["note_type"],
            "params": {**params, **{key: "" for key in filled}}}
