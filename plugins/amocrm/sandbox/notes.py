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
        """POST of notes (GET is `Reading._list_notes`, which also lists the seeded calls)."""
        if method != "POST":
            return _problem(405, "Method Not Allowed", "Unsupported method")
        refused = self._batch_refused(payload)
        if refused is not None:
            return refused
        with self._lock:
            errors = []
            for index, item in enumerate(payload):
                item_errors = self._validate_note(entity, entity_id, item)
                if item_errors:
                    errors.append((str(index), item_errors))
            if errors:
                return _validation_failed(errors)
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
            errors = []
            for index, item in enumerate(payload):
                item_errors = self._validate_task(item)
                if item_errors:
                    errors.append((str(index), item_errors))
            if errors:
                return _validation_failed(errors)
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
