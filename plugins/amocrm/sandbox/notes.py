"""Notes and tasks: what a client leaves on a contact or lead besides its fields."""

from __future__ import annotations

from typing import Any

from plugins.amocrm.sandbox.data import (
    ACCOUNT_ID,
    ADMIN_USER,
    USERS,
    link,
)
from plugins.amocrm.sandbox.protocol import (
    Response,
    _error,
    _is_int,
    _json_response,
    _problem,
    _validation_failed,
)
from plugins.amocrm.sandbox.state import AccountState

NOTE_TYPES = frozenset({
    "common", "call_in", "call_out", "service_message", "extended_service_message",
    "message_cashier", "geolocation", "sms_in", "sms_out", "attachment",
})
TASK_ENTITY_TYPES = frozenset({"leads", "contacts", "companies", "customers"})


class Notes(AccountState):
    """Notes and tasks through the API, and what tests read of them (part of `Account`)."""

    def _notes_route(self, method: str, entity: str, entity_id: int | None, payload: Any, base: str) -> Response:
        """POST and PATCH of notes (GET is `Reading._list_notes`, which also lists the seeded calls)."""
        if method == "PATCH":
            return self._edit_notes(entity, entity_id, payload, base)
        if method != "POST":
            return _problem(405, "Method Not Allowed", "Unsupported method")
        refused = self._batch_refused(payload)
        if refused is not None:
            return refused
        with self._lock:
            refused = self._items_refused(payload, lambda item: self._validate_note(entity, entity_id, item))
            if refused is not None:
                return refused
            now = self.now()
            results = []
            for index, item in enumerate(payload):
                target = entity_id if entity_id is not None else item["entity_id"]
                note = {
                    "id": self._next_note_id,
                    "entity_id": target,
                    "entity_type": entity,
                    "created_by": item.get("created_by", ADMIN_USER),
                    "updated_by": item.get("created_by", ADMIN_USER),
                    "created_at": now,
                    "updated_at": now,
                    "responsible_user_id": item.get("responsible_user_id", ADMIN_USER),
                    "group_id": 0,
                    "note_type": item["note_type"],
                    "params": item.get("params", {}),
                    "account_id": ACCOUNT_ID,
                }
                self._next_note_id += 1
                self._notes.append(note)
                self._event(f"{item['note_type']}_note_added", entity, target, [], [{"note": {"id": note["id"]}}])
                results.append({"id": note["id"], "entity_id": target, "request_id": str(item.get("request_id", index)),
                                "_links": link(base, f"/api/v4/{entity}/{target}/notes/{note['id']}")})
        path = f"/api/v4/{entity}/{entity_id}/notes" if entity_id is not None else f"/api/v4/{entity}/notes"
        return _json_response(200, {"_links": link(base, path), "_embedded": {"notes": results}})

    def _edit_notes(self, entity: str, entity_id: int | None, payload: Any, base: str) -> Response:
        """PATCH /api/v4/{entity}/notes: a list of {id, entity_id, note_type, params}, each note's params
        replaced; validated as a whole (one bad item refuses the batch, as amoCRM does). A seeded call
        keeps its edit aside (`_call_edits`), shown whenever it is listed."""
        refused = self._batch_refused(payload)
        if refused is not None:
            return refused
        with self._lock:
            errors = []
            found: list[tuple[dict[str, Any], dict[str, Any] | None, Any]] = []  # (item, written note, seeded call)
            for index, item in enumerate(payload):
                item_errors, note, call = self._edit_errors(entity, entity_id, item)
                if item_errors:
                    errors.append((str(index), item_errors))
                else:
                    found.append((item, note, call))
            if errors:
                return _validation_failed(errors)
            now = self.now()
            results = []
            for index, (item, note, call) in enumerate(found):
                params = dict(item.get("params") or {})
                if note is not None:
                    note["params"] = {**note["params"], **params}
                    note["updated_at"] = now
                    number, target = note["id"], note["entity_id"]
                else:
                    self._call_edits[call.id] = {"params": params, "updated_at": now}
                    number, target = call.id, call.entity_id
                results.append({"id": number, "entity_id": target, "updated_at": now,
                                "request_id": str(item.get("request_id", index)),
                                "_links": link(base, f"/api/v4/{entity}/{target}/notes/{number}")})
        path = f"/api/v4/{entity}/{entity_id}/notes" if entity_id is not None else f"/api/v4/{entity}/notes"
        return _json_response(200, {"_links": link(base, path), "_embedded": {"notes": results}})

    def _edit_errors(self, entity: str, entity_id: int | None,
                     item: Any) -> tuple[list[dict[str, str]], dict[str, Any] | None, Any]:
        if not isinstance(item, dict):
            return [_error("InvalidType", "", "This value should be of type array.")], None, None
        allowed = {"id", "entity_id", "note_type", "params", "request_id", "responsible_user_id"}
        errors = [_error("FieldNotExpected", key, "This field was not expected.") for key in item if key not in allowed]
        number = item.get("id")
        if number is None:
            return errors + [_error("FieldMissing", "id", "This field is missing.")], None, None
        if not _is_int(number):
            return errors + [_error("InvalidType", "id", "This value should be of type int.")], None, None
        target = entity_id if entity_id is not None else item.get("entity_id")
        if target is None:
            errors.append(_error("FieldMissing", "entity_id", "This field is missing."))
        note = next((n for n in self._notes if n["id"] == number and n["entity_type"] == entity), None)
        call = next((c for c in self._calls.get(entity, []) if c.id == number), None) if note is None else None
        owner = note["entity_id"] if note is not None else call.entity_id if call is not None else None
        if owner is None or (target is not None and target != owner):
            errors.append(_error("NotFound", "id", "Note not found."))
            return errors, None, None
        kind = note["note_type"] if note is not None else call.note_type if call is not None else None
        if item.get("note_type") not in (None, kind):
            errors.append(_error("NotSupportedChoice", "note_type", "The note type cannot be changed."))
        if "params" in item and not isinstance(item["params"], dict):
            errors.append(_error("InvalidType", "params", "This value should be of type array."))
        if number in self._locked_notes:
            errors.append(_error("AccessDenied", "id", "Access denied."))
        return errors, note, call

    def lock_note(self, note_id: int) -> None:
        """Refuse edits of this note from now on, as amoCRM does for a user without the right to it."""
        with self._lock:
            self._locked_notes.add(note_id)

    def _validate_note(self, entity: str, entity_id: int | None, item: Any) -> list[dict[str, str]]:
        if not isinstance(item, dict):
            return [_error("InvalidType", "", "This value should be of type array.")]
        allowed = {"entity_id", "note_type", "params", "created_by", "responsible_user_id", "request_id",
                   "is_need_to_trigger_digital_pipeline"}
        errors = [_error("FieldNotExpected", key, "This field was not expected.") for key in item if key not in allowed]
        target = entity_id if entity_id is not None else item.get("entity_id")
        if target is None:
            errors.append(_error("FieldMissing", "entity_id", "This field is missing."))
        elif not _is_int(target) or target not in self._stores[entity]:
            errors.append(_error("NotFound", "entity_id", "Entity not found."))
        note_type = item.get("note_type")
        if note_type is None:
            errors.append(_error("FieldMissing", "note_type", "This field is missing."))
        elif note_type not in NOTE_TYPES:
            errors.append(_error("NotSupportedChoice", "note_type", "The value you selected is not a valid choice."))
        params = item.get("params")
        if note_type == "common":
            if not isinstance(params, dict) or "text" not in params:
                errors.append(_error("FieldMissing", "params.text", "This field is missing."))
            elif not isinstance(params["text"], str) or not params["text"].strip():
                errors.append(_error("NotBlank", "params.text", "This value should not be blank."))
        return errors

    def _add_tasks(self, payload: Any, base: str) -> Response:
        refused = self._batch_refused(payload)
        if refused is not None:
            return refused
        with self._lock:
            refused = self._items_refused(payload, self._validate_task)
            if refused is not None:
                return refused
            now = self.now()
            results = []
            for index, item in enumerate(payload):
                task = {
                    "id": self._next_task_id,
                    "created_by": item.get("created_by", ADMIN_USER),
                    "updated_by": item.get("created_by", ADMIN_USER),
                    "created_at": item.get("created_at", now),
                    "updated_at": item.get("updated_at", now),
                    "responsible_user_id": item.get("responsible_user_id", ADMIN_USER),
                    "group_id": 0,
                    "entity_id": item.get("entity_id"),
                    "entity_type": item.get("entity_type"),
                    "duration": item.get("duration", 0),
                    "is_completed": item.get("is_completed", False),
                    "task_type_id": item.get("task_type_id", 1),
                    "text": item["text"],
                    "result": item.get("result", []),
                    "complete_till": item["complete_till"],
                    "account_id": ACCOUNT_ID,
                }
                self._next_task_id += 1
                self._tasks.append(task)
                results.append({"id": task["id"], "request_id": str(item.get("request_id", index)),
                                "_links": link(base, f"/api/v4/tasks/{task['id']}")})
        return _json_response(200, {"_links": link(base, "/api/v4/tasks"), "_embedded": {"tasks": results}})

    def _validate_task(self, item: Any) -> list[dict[str, str]]:
        if not isinstance(item, dict):
            return [_error("InvalidType", "", "This value should be of type array.")]
        allowed = {"responsible_user_id", "entity_id", "entity_type", "is_completed", "task_type_id", "text",
                   "duration", "complete_till", "result", "created_by", "created_at", "updated_at", "updated_by",
                   "request_id"}
        errors = [_error("FieldNotExpected", key, "This field was not expected.") for key in item if key not in allowed]
        if not isinstance(item.get("text"), str) or not item.get("text", "").strip():
            errors.append(_error("FieldMissing" if "text" not in item else "NotBlank", "text",
                                 "This field is missing." if "text" not in item else "This value should not be blank."))
        if "complete_till" not in item:
            errors.append(_error("FieldMissing", "complete_till", "This field is missing."))
        elif not _is_int(item["complete_till"]):
            errors.append(_error("InvalidType", "complete_till", "This value should be of type int."))
        for key in ("responsible_user_id", "task_type_id", "entity_id", "duration"):
            if key in item and not _is_int(item[key]):
                errors.append(_error("InvalidType", key, "This value should be of type int."))
        responsible = item.get("responsible_user_id")
        if "responsible_user_id" in item and _is_int(responsible) and responsible not in USERS:
            errors.append(_error("NotSupportedChoice", "responsible_user_id",
                                 "The value you selected is not a valid choice."))
        entity_type = item.get("entity_type")
        if entity_type is not None and entity_type not in TASK_ENTITY_TYPES:
            errors.append(_error("NotSupportedChoice", "entity_type", "The value you selected is not a valid choice."))
        if "entity_id" in item and entity_type is None:
            errors.append(_error("FieldMissing", "entity_type", "This field is missing."))
        if (entity_type in self._stores and _is_int(item.get("entity_id"))
                and item["entity_id"] not in self._stores[entity_type]):
            errors.append(_error("NotFound", "entity_id", "Entity not found."))
        return errors
