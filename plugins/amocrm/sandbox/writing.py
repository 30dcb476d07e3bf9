"""Adding, updating and deleting entities, through the API (validated like the real one) or from Python."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime, timezone
from typing import Any

from plugins.amocrm.sandbox.data import (
    ADMIN_USER,
    CITY,
    CUSTOM_FIELDS,
    EMAIL,
    LOST_STATUS_ID,
    PHONE,
    PIPELINES,
    PIPELINES_BY_ID,
    PROMO_CODE,
    WON_STATUS_ID,
    ContactRow,
    CustomField,
    FieldValues,
    LeadRow,
    TagRegistry,
    account_midnight,
    link,
)
from plugins.amocrm.sandbox.events import _Notification
from plugins.amocrm.sandbox.protocol import EVENT_ENTITY, Response, _error, _is_int, _json_response, _validation_failed
from plugins.amocrm.sandbox.state import AccountState

MAX_BATCH = 50


class Writing(AccountState):
    """POST/PATCH of entities and the Python mutation methods; both go through one core (part of `Account`)."""

    def _batch_refused(self, payload: Any, *, empty: str = "InvalidType") -> Response | None:
        """The answer to a body that is not a JSON array of 1..max_batch items (None: it is one).

        amoCRM names an empty array NotBlank on entity writes and InvalidType on notes and tasks.
        """
        if not isinstance(payload, list) or (not payload and empty == "InvalidType"):
            return _validation_failed([("0", [_error("InvalidType", "", "This value should be of type array.")])])
        if not payload:
            return _validation_failed([("0", [_error("NotBlank", "", "This value should not be blank.")])])
        if len(payload) > self.max_batch:
            return _validation_failed([("0", [_error(
                "TooManyElements", "", f"This collection should contain {self.max_batch} elements or less.")])])
        return None

    def _items_refused(self, payload: list[Any], errors_of: Callable[[Any], list[dict[str, str]]]) -> Response | None:
        """The answer naming every invalid item by its index (None: all are valid), before anything changes."""
        errors = [(str(index), found) for index, item in enumerate(payload) if (found := errors_of(item))]
        return _validation_failed(errors) if errors else None

    def _write(self, entity: str, payload: Any, base: str, *, update: bool) -> Response:
        """POST/PATCH /api/v4/{entity}: a JSON array, validated as a whole before anything changes."""
        refused = self._batch_refused(payload, empty="NotBlank")
        if refused is not None:
            return refused
        with self._lock:
            errors = []
            for index, item in enumerate(payload):
                request_id = str(item.get("request_id", index)) if isinstance(item, dict) else str(index)
                item_errors = self._validate(entity, item, update=update)
                if item_errors:
                    errors.append((request_id, item_errors))
            if errors:
                return _validation_failed(errors)
            self._writes.append({"entity": entity, "method": "PATCH" if update else "POST", "body": payload,
                                 "at": self.now()})
            results = []
            notifications: list[_Notification] = []
            for index, item in enumerate(payload):
                request_id = str(item.get("request_id", index))
                changes = self._changes_from_api(entity, item)
                if update:
                    row = self._stores[entity][item["id"]]
                    notifications += self._update_row(entity, row, changes)
                    results.append({"id": row.id, "name": row.name, "updated_at": row.updated_at,
                                    "request_id": request_id, "_links": link(base, f"/api/v4/{entity}/{row.id}")})
                else:
                    row, added = self._add_row(entity, changes)
                    notifications += added
                    results.append({"id": row.id, "request_id": request_id,
                                    "_links": link(base, f"/api/v4/{entity}/{row.id}")})
            self._notify(notifications)
        return _json_response(200, {"_links": link(base, f"/api/v4/{entity}"), "_embedded": {entity: results}})

    def _validate(self, entity: str, item: Any, *, update: bool) -> list[dict[str, str]]:
        if not isinstance(item, dict):
            return [_error("InvalidType", "", "This value should be of type array.")]
        allowed = _WRITABLE[entity]
        errors = [_error("FieldNotExpected", key, "This field was not expected.") for key in item if key not in allowed]
        if update:
            if "id" not in item:
                errors.append(_error("FieldMissing", "id", "This field is missing."))
            elif not _is_int(item["id"]):
                errors.append(_error("InvalidType", "id", "This value should be of type int."))
            elif item["id"] not in self._stores[entity]:
                errors.append(_error("NotFound", "id", "Entity not found."))
        for key, kind in _FIELD_TYPES.items():
            if key in item and key in allowed and key != "id" and not _of_kind(key, item[key], kind):
                errors.append(_error("InvalidType", key, f"This value should be of type {kind}."))
        if "custom_fields_values" in item:
            errors += _validate_custom_fields(item["custom_fields_values"], CUSTOM_FIELDS[entity])
        for key in ("tags_to_add", "tags_to_delete"):
            if key in item:
                errors += _validate_tags(item[key], key)
        embedded = item.get("_embedded")
        if embedded is not None:
            if not isinstance(embedded, dict):
                errors.append(_error("InvalidType", "_embedded", "This value should be of type array."))
            else:
                for key, value in embedded.items():
                    if key == "tags":
                        if value is not None:
                            errors += _validate_tags(value, "_embedded.tags")
                    elif key == "contacts" and entity == "leads":
                        errors += self._validate_links(value, "_embedded.contacts", "contacts")
                    elif key == "companies" and entity == "leads":
                        errors += self._validate_links(value, "_embedded.companies", "companies")
                    elif key != "companies":
                        errors.append(_error("FieldNotExpected", f"_embedded.{key}", "This field was not expected."))
        if entity == "leads":
            errors += self._validate_status(item, update=update)
        return errors

    def _validate_links(self, value: Any, path: str, entity: str) -> list[dict[str, str]]:
        if not isinstance(value, list):
            return [_error("InvalidType", path, "This value should be of type array.")]
        errors = []
        for index, linked in enumerate(value):
            if not isinstance(linked, dict) or not _is_int(linked.get("id")):
                errors.append(_error("FieldMissing", f"{path}.{index}.id", "This field is missing."))
            elif linked["id"] not in self._stores[entity]:
                errors.append(_error("NotFound", f"{path}.{index}.id", "Entity not found."))
        return errors

    def _validate_status(self, item: dict[str, Any], *, update: bool) -> list[dict[str, str]]:
        if "status_id" not in item and "pipeline_id" not in item:
            return []
        current = self._stores["leads"].get(item["id"]) if update and _is_int(item.get("id")) else None
        pipeline_id = item.get("pipeline_id", current.pipeline_id if current else PIPELINES[0].id)
        pipeline = PIPELINES_BY_ID.get(pipeline_id) if _is_int(pipeline_id) else None
        if pipeline is None:
            return [_error("NotSupportedChoice", "pipeline_id", "The value you selected is not a valid choice.")]
        status_id = item.get("status_id")
        if status_id is not None and status_id not in {status.id for status in pipeline.statuses}:
            return [_error("NotSupportedChoice", "status_id", "The value you selected is not a valid choice.")]
        return []

    def _changes_from_api(self, entity: str, item: dict[str, Any]) -> dict[str, Any]:
        tags = self._tags[entity]
        changes: dict[str, Any] = {
            key: item[key] for key in item
            if key not in ("id", "request_id", "custom_fields_values", "_embedded", "tags_to_add", "tags_to_delete")
        }
        if "custom_fields_values" in item:
            changes["fields"] = _fields_from_api(item["custom_fields_values"] or [], CUSTOM_FIELDS[entity])
        embedded = item.get("_embedded") or {}
        if "tags" in embedded:
            changes["tags"] = [_tag_id(tags, tag) for tag in embedded["tags"] or []]
        if "contacts" in embedded and entity == "leads":
            ordered = sorted(embedded["contacts"], key=lambda linked: not linked.get("is_main", False))
            changes["contact_ids"] = [linked["id"] for linked in ordered]
        if "companies" in embedded and entity == "leads":  # one company a lead: the first given
            changes["company_ids"] = [linked["id"] for linked in embedded["companies"]][:1]
        if item.get("tags_to_add"):
            changes["tags_add"] = [_tag_id(tags, tag) for tag in item["tags_to_add"]]
        if item.get("tags_to_delete"):
            changes["tags_delete"] = [
                tag["id"] if "id" in tag else tags.id_for(tag["name"]) for tag in item["tags_to_delete"]
            ]
        return changes

    # -- mutation core (API and Python share it) ------------------------------

    def _add_row(self, entity: str, changes: dict[str, Any]) -> tuple[Any, list[_Notification]]:
        now = self.now()
        row_id = self._next_ids[entity]
        self._next_ids[entity] += 1
        user = changes.get("responsible_user_id", ADMIN_USER)
        common: dict[str, Any] = {
            "id": row_id,
            "responsible_user_id": user,
            "created_by": changes.get("created_by", ADMIN_USER),
            "updated_by": changes.get("updated_by", ADMIN_USER),
            "created_at": changes.get("created_at", now),
            "updated_at": changes.get("updated_at", now),
            "fields": {field_id: values for field_id, values in changes.get("fields", {}).items() if values},
            "tags": list(dict.fromkeys(changes.get("tags", []) + changes.get("tags_add", []))),
        }
        if entity == "leads":
            pipeline = PIPELINES_BY_ID[changes.get("pipeline_id", PIPELINES[0].id)]
            status_id = changes.get("status_id", pipeline.working_status_ids[0])
            closed = status_id in (WON_STATUS_ID, LOST_STATUS_ID)
            row: Any = LeadRow(
                name=changes.get("name", f"Сделка #{row_id}"), price=changes.get("price", 0), status_id=status_id,
                pipeline_id=pipeline.id, closed_at=changes.get("closed_at", now if closed else None),
                contact_ids=list(changes.get("contact_ids", [])), company_ids=list(changes.get("company_ids", [])),
                **common,
            )
            for contact_id in row.contact_ids:
                self._stores["contacts"][contact_id].lead_ids.append(row.id)
            for company_id in row.company_ids:
                self._stores["companies"][company_id].lead_ids.append(row.id)
        else:
            first, last = changes.get("first_name", ""), changes.get("last_name", "")
            name = changes.get("name") or " ".join(part for part in (first, last) if part) or f"Контакт #{row_id}"
            row = ContactRow(name=name, first_name=first, last_name=last, **common)
        self._stores[entity][row.id] = row
        self._versions[entity] += 1
        self._event(f"{EVENT_ENTITY[entity]}_added", entity, row.id)
        setting = f"add_{EVENT_ENTITY[entity]}"
        return row, [_Notification(setting, _section(entity, "add"), self._webhook_fields(entity, row))]

    def _update_row(self, entity: str, row: Any, changes: dict[str, Any]) -> list[_Notification]:
        old_status, old_pipeline, old_name, old_price = (
            getattr(row, "status_id", None), getattr(row, "pipeline_id", None), row.name, getattr(row, "price", None)
        )
        for key in ("name", "first_name", "last_name", "responsible_user_id", "created_by", "created_at", "price",
                    "pipeline_id", "status_id", "closed_at"):
            if key in changes:
                setattr(row, key, changes[key])
        if entity != "leads" and ("first_name" in changes or "last_name" in changes) and "name" not in changes:
            row.name = " ".join(part for part in (row.first_name, row.last_name) if part) or row.name
        changed_fields = []
        for field_id, values in changes.get("fields", {}).items():
            if values:
                row.fields[field_id] = values
            else:
                row.fields.pop(field_id, None)
            changed_fields.append(field_id)
        tags_before = list(row.tags)
        if "tags" in changes:
            row.tags = list(dict.fromkeys(changes["tags"]))
        for tag_id in changes.get("tags_add", []):
            if tag_id not in row.tags:
                row.tags.append(tag_id)
        for tag_id in changes.get("tags_delete", []):
            if tag_id in row.tags:
                row.tags.remove(tag_id)
        if entity == "leads" and "contact_ids" in changes:
            for contact_id in row.contact_ids:
                contact = self._stores["contacts"].get(contact_id)
                if contact and row.id in contact.lead_ids:
                    contact.lead_ids.remove(row.id)
            row.contact_ids = list(dict.fromkeys(changes["contact_ids"]))
            for contact_id in row.contact_ids:
                self._stores["contacts"][contact_id].lead_ids.append(row.id)
        if entity == "leads" and "company_ids" in changes:
            for company_id in row.company_ids:
                company = self._stores["companies"].get(company_id)
                if company and row.id in company.lead_ids:
                    company.lead_ids.remove(row.id)
            row.company_ids = list(changes["company_ids"])
            for company_id in row.company_ids:
                self._stores["companies"][company_id].lead_ids.append(row.id)
        status_changed = entity == "leads" and (row.status_id != old_status or row.pipeline_id != old_pipeline)
        if status_changed and "closed_at" not in changes:
            row.closed_at = self.now() if row.status_id in (WON_STATUS_ID, LOST_STATUS_ID) else None
        row.updated_by = changes.get("updated_by", ADMIN_USER)
        row.updated_at = changes.get("updated_at", self.now())
        self._versions[entity] += 1

        noun = EVENT_ENTITY[entity]
        if row.name != old_name:
            self._event("name_field_changed", entity, row.id, [{"name_field_value": {"name": old_name}}],
                        [{"name_field_value": {"name": row.name}}])
        for field_id in changed_fields:
            self._event(f"custom_field_{field_id}_value_changed", entity, row.id, [], [{"custom_field_value": {
                "field_id": field_id, "field_type": CUSTOM_FIELDS[entity][field_id].type}}])
        for tag_id in row.tags:
            if tag_id not in tags_before:
                self._event("entity_tag_added", entity, row.id, [],
                            [{"tag": {"name": self._tags[entity].name(tag_id)}}])
        for tag_id in tags_before:
            if tag_id not in row.tags:
                self._event("entity_tag_deleted", entity, row.id,
                            [{"tag": {"name": self._tags[entity].name(tag_id)}}], [])
        if entity == "leads" and row.price != old_price:
            self._event("sale_field_changed", entity, row.id, [{"sale_field_value": {"sale": old_price}}],
                        [{"sale_field_value": {"sale": row.price}}])
        fields = self._webhook_fields(entity, row)
        notifications = [_Notification(f"update_{noun}", _section(entity, "update"), fields)]
        if status_changed:
            self._event("lead_status_changed", entity, row.id,
                        [{"lead_status": {"id": old_status, "pipeline_id": old_pipeline}}],
                        [{"lead_status": {"id": row.status_id, "pipeline_id": row.pipeline_id}}])
            extra = [("old_status_id", str(old_status)), ("old_pipeline_id", str(old_pipeline))]
            notifications.append(_Notification("status_lead", "leads[status]", fields + extra))
        return notifications

    def _delete_row(self, entity: str, row_id: int) -> list[_Notification]:
        row = self._stores[entity].pop(row_id, None)
        if row is None:
            raise KeyError(f"{entity} {row_id} does not exist")
        self._versions[entity] += 1
        if entity == "leads":
            for contact_id in row.contact_ids:
                contact = self._stores["contacts"].get(contact_id)
                if contact and row.id in contact.lead_ids:
                    contact.lead_ids.remove(row.id)
            for company_id in row.company_ids:
                company = self._stores["companies"].get(company_id)
                if company and row.id in company.lead_ids:
                    company.lead_ids.remove(row.id)
            pairs = [("id", str(row.id)), ("status_id", str(row.status_id)), ("pipeline_id", str(row.pipeline_id))]
        else:
            # A person or a company leaves the leads and the companies (or people) linked to it.
            mine, theirs, other = (("contact_ids", "company_ids", "companies") if entity == "contacts"
                                   else ("company_ids", "contact_ids", "contacts"))
            for lead_id in row.lead_ids:
                lead = self._stores["leads"].get(lead_id)
                if lead and row.id in getattr(lead, mine):
                    getattr(lead, mine).remove(row.id)
            for other_id in getattr(row, theirs):
                peer = self._stores[other].get(other_id)
                if peer and row.id in getattr(peer, mine):
                    getattr(peer, mine).remove(row.id)
            pairs = [("id", str(row.id)), ("type", EVENT_ENTITY[entity])]
        self._drop_notes_and_tasks(entity, row.id)
        self._event(f"{EVENT_ENTITY[entity]}_deleted", entity, row.id)
        return [_Notification(f"delete_{EVENT_ENTITY[entity]}", _section(entity, "delete"), pairs)]

    def _drop_notes_and_tasks(self, entity: str, row_id: int) -> None:
        """A note or task belongs to one contact, company or lead (entity_type, entity_id) and goes with it."""
        calls = self._calls.get(entity)
        if calls and any(call.entity_id == row_id for call in calls):
            self._calls[entity] = [call for call in calls if call.entity_id != row_id]
            self._call_time_cache.pop(entity, None)
        self._notes[:] = [n for n in self._notes if not (n["entity_type"] == entity and n["entity_id"] == row_id)]
        for tasks in (self._seeded_tasks, self._tasks):
            tasks[:] = [t for t in tasks if not (t["entity_type"] == entity and t["entity_id"] == row_id)]

    # -- Python mutation API ------------------------------------------------

    def add_contact(
        self,
        *,
        name: str | None = None,
        first_name: str = "",
        last_name: str = "",
        phones: Iterable[str | tuple[str, str]] = (),
        emails: Iterable[str | tuple[str, str]] = (),
        city: str | None = None,
        tags: Iterable[str] = (),
        responsible_user_id: int = ADMIN_USER,
    ) -> int:
        """Create a contact as a manager would in the UI; fires contact_added and webhooks. Returns the id."""
        return self._add("contacts", _python_changes(
            self._tags["contacts"], name=name, first_name=first_name, last_name=last_name, phones=phones,
            emails=emails, city=city, tags=tags, responsible_user_id=responsible_user_id,
        ))

    def update_contact(
        self,
        contact_id: int,
        *,
        name: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        phones: Iterable[str | tuple[str, str]] | None = None,
        emails: Iterable[str | tuple[str, str]] | None = None,
        city: str | None = None,
        tags: Iterable[str] | None = None,
        responsible_user_id: int | None = None,
    ) -> None:
        """Change a contact (only the arguments given); bumps updated_at and fires update webhooks."""
        self._update("contacts", contact_id, _python_changes(
            self._tags["contacts"], name=name, first_name=first_name, last_name=last_name, phones=phones,
            emails=emails, city=city, tags=tags, responsible_user_id=responsible_user_id,
        ))

    def delete_contact(self, contact_id: int) -> None:
        """Delete a contact: a contact_deleted event and a delete webhook, as in the UI."""
        self._delete("contacts", contact_id)

    def add_company(self, *, name: str, phones: Iterable[str | tuple[str, str]] = (),
                    emails: Iterable[str | tuple[str, str]] = (), tags: Iterable[str] = ()) -> int:
        """Create a company; its webhooks arrive under contacts[...] with type=company."""
        return self._add("companies", _python_changes(self._tags["companies"], name=name, phones=phones,
                                                      emails=emails, tags=tags))

    def update_company(self, company_id: int, *, name: str | None = None, tags: Iterable[str] | None = None) -> None:
        self._update("companies", company_id, _python_changes(self._tags["companies"], name=name, tags=tags))

    def delete_company(self, company_id: int) -> None:
        self._delete("companies", company_id)

    def add_lead(
        self,
        *,
        name: str | None = None,
        price: int = 0,
        contact_id: int | None = None,
        pipeline_id: int | None = None,
        status_id: int | None = None,
        promo_code: str | None = None,
        tags: Iterable[str] = (),
        responsible_user_id: int = ADMIN_USER,
    ) -> int:
        """Create a deal, linked to `contact_id` as its main contact. Returns the id."""
        changes: dict[str, Any] = {"price": price, "responsible_user_id": responsible_user_id,
                                   "tags": [self._tags["leads"].id_for(tag) for tag in tags]}
        if name is not None:
            changes["name"] = name
        if contact_id is not None:
            if contact_id not in self._stores["contacts"]:
                raise KeyError(f"contacts {contact_id} does not exist")
            changes["contact_ids"] = [contact_id]
        if pipeline_id is not None:
            changes["pipeline_id"] = pipeline_id
        if status_id is not None:
            changes["status_id"] = status_id
        if promo_code:
            changes["fields"] = {PROMO_CODE.id: [(promo_code, None)]}
        return self._add("leads", changes)

    def update_lead(
        self,
        lead_id: int,
        *,
        name: str | None = None,
        price: int | None = None,
        pipeline_id: int | None = None,
        status_id: int | None = None,
        tags: Iterable[str] | None = None,
        responsible_user_id: int | None = None,
    ) -> None:
        """Change a deal; a new status fires lead_status_changed and the status webhook too."""
        changes: dict[str, Any] = {
            key: value for key, value in (("name", name), ("price", price), ("pipeline_id", pipeline_id),
                                          ("status_id", status_id), ("responsible_user_id", responsible_user_id))
            if value is not None
        }
        if tags is not None:
            changes["tags"] = [self._tags["leads"].id_for(tag) for tag in tags]
        self._update("leads", lead_id, changes)

    def delete_lead(self, lead_id: int) -> None:
        self._delete("leads", lead_id)

    def _add(self, entity: str, changes: dict[str, Any]) -> int:
        with self._lock:
            row, notifications = self._add_row(entity, changes)
            self._notify(notifications)
            return row.id

    def _update(self, entity: str, row_id: int, changes: dict[str, Any]) -> None:
        with self._lock:
            row = self._stores[entity].get(row_id)
            if row is None:
                raise KeyError(f"{entity} {row_id} does not exist")
            self._notify(self._update_row(entity, row, changes))

    def _delete(self, entity: str, row_id: int) -> None:
        with self._lock:
            self._notify(self._delete_row(entity, row_id))


_COMMON_WRITABLE = {"id", "name", "responsible_user_id", "created_by", "updated_by", "created_at", "updated_at",
                    "custom_fields_values", "_embedded", "tags_to_add", "tags_to_delete", "request_id"}
_WRITABLE = {
    "contacts": _COMMON_WRITABLE | {"first_name", "last_name"},
    "companies": set(_COMMON_WRITABLE),
    "leads": _COMMON_WRITABLE | {"price", "status_id", "pipeline_id", "closed_at", "loss_reason_id"},
}
_FIELD_TYPES = {
    "id": "int", "name": "string", "first_name": "string", "last_name": "string", "responsible_user_id": "int",
    "created_by": "int", "updated_by": "int", "created_at": "int", "updated_at": "int", "price": "int",
    "status_id": "int", "pipeline_id": "int", "closed_at": "int", "loss_reason_id": "int",
}


_NULLABLE = frozenset({"closed_at", "loss_reason_id"})


def _of_kind(key: str, value: Any, kind: str) -> bool:
    if value is None:
        return key in _NULLABLE
    return _is_int(value) if kind == "int" else isinstance(value, str)


def _validate_tags(value: Any, path: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        return [_error("InvalidType", path, "This value should be of type array.")]
    errors = []
    for index, tag in enumerate(value):
        if not isinstance(tag, dict) or not (_is_int(tag.get("id")) or isinstance(tag.get("name"), str)):
            errors.append(_error("FieldMissing", f"{path}.{index}.name", "This field is missing."))
    return errors


def _validate_custom_fields(value: Any, definitions: dict[int, CustomField]) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list):
        return [_error("InvalidType", "custom_fields_values", "This value should be of type array.")]
    by_code = {d.code: d for d in definitions.values() if d.code}
    errors = []
    for index, entry in enumerate(value):
        path = f"custom_fields_values.{index}"
        if not isinstance(entry, dict):
            errors.append(_error("InvalidType", path, "This value should be of type array."))
            continue
        for key in entry:
            if key not in ("field_id", "field_code", "values"):
                errors.append(_error("FieldNotExpected", f"{path}.{key}", "This field was not expected."))
        definition = None
        if "field_id" in entry:
            definition = definitions.get(entry["field_id"]) if _is_int(entry["field_id"]) else None
            if definition is None:
                errors.append(_error("NotSupportedChoice", f"{path}.field_id",
                                     "The value you selected is not a valid choice."))
        elif "field_code" in entry:
            definition = by_code.get(entry["field_code"])
            if definition is None:
                errors.append(_error("NotSupportedChoice", f"{path}.field_code",
                                     "The value you selected is not a valid choice."))
        else:
            errors.append(_error("FieldMissing", f"{path}.field_id", "This field is missing."))
        values = entry.get("values")
        if values is None:
            continue
        if not isinstance(values, list):
            errors.append(_error("InvalidType", f"{path}.values", "This value should be of type array."))
            continue
        for position, item in enumerate(values):
            item_path = f"{path}.values.{position}"
            if not isinstance(item, dict):
                errors.append(_error("InvalidType", item_path, "This value should be of type array."))
                continue
            listed = definition is None or definition.has_enum_codes or definition.has_options
            allowed = ("value", "enum_id", "enum_code") if listed else ("value",)
            for key in item:
                if key not in allowed:
                    errors.append(_error("FieldNotExpected", f"{item_path}.{key}", "This field was not expected."))
            if "value" not in item:
                if not (definition is not None and definition.has_options and "enum_id" in item):
                    errors.append(_error("FieldMissing", f"{item_path}.value", "This field is missing."))
            elif not isinstance(item["value"], (str, int, float)) or isinstance(item["value"], bool):
                errors.append(_error("InvalidType", f"{item_path}.value", "This value should be of type string."))
            elif definition is not None and definition.holds_dates and _date_value(item["value"]) is None:
                errors.append(_error("InvalidType", f"{item_path}.value",
                                     "This value should be a unix timestamp or a date in ISO 8601."))
            elif (definition is not None and definition.has_options and "enum_id" not in item
                  and definition.enum_id(str(item["value"])) is None):
                errors.append(_error("NotSupportedChoice", f"{item_path}.value",
                                     "The value you selected is not a valid choice."))
            if definition is not None and definition.has_options and "enum_id" in item:
                if definition.enum_code(item["enum_id"]) is None:
                    errors.append(_error("NotSupportedChoice", f"{item_path}.enum_id",
                                         "The value you selected is not a valid choice."))
            if definition is not None and definition.has_enum_codes:
                if "enum_code" in item and definition.enum_id(str(item["enum_code"])) is None:
                    errors.append(_error("NotSupportedChoice", f"{item_path}.enum_code",
                                         "The value you selected is not a valid choice."))
                if "enum_id" in item and definition.enum_code(item["enum_id"]) is None:
                    errors.append(_error("NotSupportedChoice", f"{item_path}.enum_id",
                                         "The value you selected is not a valid choice."))
    return errors


def _fields_from_api(entries: list[dict[str, Any]], definitions: dict[int, CustomField]) -> dict[int, list[Any]]:
    """Validated `custom_fields_values` -> {field id: [(value, enum id)]}; an empty list clears a field."""
    by_code = {d.code: d for d in definitions.values() if d.code}
    result: dict[int, list[Any]] = {}
    for entry in entries:
        definition = definitions[entry["field_id"]] if "field_id" in entry else by_code[entry["field_code"]]
        values: list[tuple[str | int, int | None]] = []
        for item in entry.get("values") or []:
            if definition.has_enum_codes:
                enum_id = item.get("enum_id") or definition.enum_id(item.get("enum_code", "WORK"))
                values.append((str(item["value"]), enum_id))
            elif definition.has_options:
                enum_id = item.get("enum_id") or definition.enum_id(str(item.get("value")))
                values.append((definition.enum_code(enum_id) or str(item.get("value")), enum_id))
            elif definition.holds_dates:
                values.append((_date_value(item["value"]) or 0, None))
            else:
                values.append((str(item["value"]), None))
        result[definition.id] = values
    return result


def _date_value(value: Any) -> int | None:
    """A date field's value as sent (unix seconds, or ISO 8601) as stored: unix seconds; None if neither.

    A bare date means midnight in the account's zone, as the interface stores it.
    """
    if _is_int(value) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        return int(value)
    if not isinstance(value, str):
        return None
    try:
        if len(value.strip()) == 10:
            return account_midnight(date.fromisoformat(value.strip()))
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return int(moment.timestamp() if moment.tzinfo else moment.replace(tzinfo=timezone.utc).timestamp())


def _tag_id(tags: TagRegistry, tag: dict[str, Any]) -> int:
    return tag["id"] if _is_int(tag.get("id")) else tags.id_for(tag["name"])


def _python_changes(registry: TagRegistry, **given: Any) -> dict[str, Any]:
    """Keyword arguments of the Python mutation methods -> the internal change set."""
    changes: dict[str, Any] = {}
    fields: FieldValues = {}
    for key, value in given.items():
        if value is None:
            continue
        if key in ("phones", "emails"):
            definition = PHONE if key == "phones" else EMAIL
            entries = [(item, "WORK") if isinstance(item, str) else item for item in value]
            fields[definition.id] = [(raw, definition.enum_id(code)) for raw, code in entries]
        elif key == "city":
            fields[CITY.id] = [(value, None)] if value else []
        elif key == "tags":
            changes["tags"] = [registry.id_for(tag) for tag in value]
        else:
            changes[key] = value
    if fields:
        changes["fields"] = fields
    return changes


def _section(entity: str, action: str) -> str:
    """Webhook form sections: companies travel under contacts[...] with type=company."""
    return f"{'leads' if entity == 'leads' else 'contacts'}[{action}]"

