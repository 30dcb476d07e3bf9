"""Adding, updating and deleting records, comments and to-dos, one call at a time or in a batch."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Mapping
from typing import Any

from plugins.bitrix24.sandbox import data
from plugins.bitrix24.sandbox.credentials import _Call
from plugins.bitrix24.sandbox.protocol import (
    ApiError,
    _Answer,
    _as_list,
    _parse_date,
    _parse_moment,
    _typed,
    parse_query,
    php_intval,
    php_json,
    php_truthy,
)
from plugins.bitrix24.sandbox.state import PortalState
from plugins.bitrix24.sandbox.tables import _Table

MAX_BATCH = 50
OWNER_TYPES = {2: "deal", 3: "contact"}  # CRM entity type ids used by crm.activity.todo.add


class Writing(PortalState):
    """The writing REST methods, batch, and the Python-side changes; both go through one core (part of `Portal`)."""

    # ------------------------------------------------------------------ Python-side changes

    def add_contact(self, fields: Mapping[str, Any], *, user_id: int = 1) -> int:
        """Create a contact from REST-style fields; fires ONCRMCONTACTADD."""
        return self._add(self._contacts, dict(fields), user_id, None)

    def update_contact(self, contact_id: int, fields: Mapping[str, Any], *, user_id: int = 1) -> None:
        """Change a contact (multifields as crm.contact.update treats them).

        Bumps DATE_MODIFY and fires ONCRMCONTACTUPDATE.
        """
        self._update(self._contacts, contact_id, dict(fields), user_id, None)

    def delete_contact(self, contact_id: int) -> None:
        """Delete a contact; fires ONCRMCONTACTDELETE."""
        self._delete(self._contacts, contact_id, None)

    def add_deal(self, fields: Mapping[str, Any], *, user_id: int = 1) -> int:
        """Create a deal from REST-style fields; fires ONCRMDEALADD."""
        return self._add(self._deals, dict(fields), user_id, None)

    def update_deal(self, deal_id: int, fields: Mapping[str, Any], *, user_id: int = 1) -> None:
        """Change a deal; bumps DATE_MODIFY, fires ONCRMDEALUPDATE."""
        self._update(self._deals, deal_id, dict(fields), user_id, None)

    def delete_deal(self, deal_id: int) -> None:
        """Delete a deal; fires ONCRMDEALDELETE."""
        self._delete(self._deals, deal_id, None)

    def add_company(self, fields: Mapping[str, Any], *, user_id: int = 1, inn: str | None = None) -> int:
        """Create a company from REST-style fields, with a requisite holding `inn`; fires ONCRMCOMPANYADD."""
        company_id = self._add(self._companies, dict(fields), user_id, None)
        if inn:
            with self._lock:
                now = int(self.clock())
                self._requisites.insert({"ENTITY_TYPE_ID": 4, "ENTITY_ID": company_id, "PRESET_ID": 1,
                                         "NAME": "Организация", "RQ_INN": inn, "DATE_CREATE": now, "DATE_MODIFY": now})
        return company_id

    def add_activity(self, fields: Mapping[str, Any], *, user_id: int = 1) -> int:
        """Log an activity (a call, meeting, e-mail or task) from REST-style fields, as a manager or the
        telephony does; stamps CREATED and LAST_UPDATED and fires ONCRMACTIVITYADD."""
        with self._lock:
            now = int(self.clock())
            row = self._clean_fields(self._activity_rows, dict(fields))
            row.update(CREATED=now, LAST_UPDATED=now, AUTHOR_ID=user_id)
            row.setdefault("RESPONSIBLE_ID", user_id)
            row.setdefault("START_TIME", now)
            row["BINDINGS"] = self._bindings(row.get("OWNER_TYPE_ID"), row.get("OWNER_ID"))
            activity_id = self._activity_rows.insert(row)
            self._raise_event("activity", "add", activity_id, None)
            return activity_id

    def _m_add(self, call: _Call, table: _Table, params: dict[str, Any]) -> int:
        fields = params.get("FIELDS")
        if not isinstance(fields, dict):
            raise ApiError(400, "", "Parameter 'fields' must be array.")
        return self._add(table, fields, call.user_id, call)

    def _m_update(self, call: _Call, table: _Table, params: dict[str, Any]) -> bool:
        row_id = self._id_param(params)
        fields = params.get("FIELDS")
        if not isinstance(fields, dict):
            raise ApiError(400, "", "Parameter 'fields' must be array.")
        self._update(table, row_id, fields, call.user_id, call)
        return True

    def _m_delete(self, call: _Call, table: _Table, params: dict[str, Any]) -> bool:
        self._delete(table, self._id_param(params), call)
        return True

    # ---- timeline and activities

    def _m_comment_add(self, call: _Call, params: dict[str, Any]) -> int:
        fields = params.get("fields")  # only the lowercase key is accepted by current portals
        if not isinstance(fields, dict):
            raise ApiError(400, "100", "Required fields not provided")
        fields = {str(key).upper(): value for key, value in fields.items()}
        entity_type = str(fields.get("ENTITY_TYPE", "")).lower()
        entity_id = php_intval(fields.get("ENTITY_ID"))
        if not entity_type or entity_id <= 0:
            raise ApiError(400, "100", "Required fields not provided")
        comment = fields.get("COMMENT")
        if comment is None or str(comment).strip() == "":
            raise ApiError(400, "INVALID_ARG_VALUE", "Empty comment")
        with self._lock:
            table = {"contact": self._contacts, "deal": self._deals}.get(entity_type)
            if table is None or entity_id not in table.rows:
                raise ApiError(400, "NOT_FOUND", "Not found.")
            comment_id = len(self._comments) + 1
            self._comments.append({
                "ID": comment_id, "ENTITY_TYPE": entity_type, "ENTITY_ID": entity_id, "COMMENT": str(comment),
                "AUTHOR_ID": php_intval(fields.get("AUTHOR_ID")) or call.user_id, "CREATED": self.clock(),
            })
            return comment_id

    def _m_todo_add(self, call: _Call, params: dict[str, Any]) -> dict[str, int]:
        if any(params.get(name) in (None, "") for name in ("ownerTypeId", "ownerId", "deadline")):
            raise ApiError(400, "100", "Required fields are missing")
        owner_type = php_intval(params["ownerTypeId"])
        owner_id = php_intval(params["ownerId"])
        deadline = _parse_moment(params["deadline"], self.tz)
        if deadline is None:
            raise ApiError(400, "WRONG_DATETIME_FORMAT", "Wrong datetime format")
        with self._lock:
            table = {"contact": self._contacts, "deal": self._deals}.get(OWNER_TYPES.get(owner_type, ""))
            if table is None or owner_id not in table.rows:
                raise ApiError(400, "NOT_FOUND", "Not found.")
            activity_id = len(self._activities) + 1
            self._activities.append({
                "id": activity_id, "ownerTypeId": owner_type, "ownerId": owner_id,
                "deadline": deadline.isoformat(), "title": str(params.get("title") or ""),
                "description": str(params.get("description") or ""),
                "responsibleId": php_intval(params.get("responsibleId")) or call.user_id,
                "pingOffsets": [php_intval(item) for item in _as_list(params.get("pingOffsets"))],
                "colorId": params.get("colorId"), "authorId": call.user_id, "created": self.clock(),
            })
            # A to-do is an activity too: crm.activity.list shows it (CRM_TODO, TYPE_ID 6), open.
            now = int(self.clock())
            self._activity_rows.insert({
                "OWNER_TYPE_ID": owner_type, "OWNER_ID": owner_id, "TYPE_ID": 6, "PROVIDER_ID": "CRM_TODO",
                "PROVIDER_TYPE_ID": "TODO", "SUBJECT": str(params.get("title") or ""), "START_TIME": now,
                "END_TIME": int(deadline.timestamp()), "COMPLETED": "N", "DIRECTION": 0,
                "RESPONSIBLE_ID": php_intval(params.get("responsibleId")) or call.user_id, "AUTHOR_ID": call.user_id,
                "CREATED": now, "LAST_UPDATED": now, "BINDINGS": self._bindings(owner_type, owner_id)})
            return {"id": activity_id}

    # ---- writing records

    def _clean_fields(self, table: _Table, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Writable fields converted to stored values; unknown and read-only fields are ignored, as the portal does."""
        specs = {spec[0]: spec for spec in table.specs}
        clean: dict[str, Any] = {}
        for key, value in fields.items():
            name = str(key).upper()
            spec = specs.get(name)
            if spec is None or spec[3] or table.kinds[name] == "multi":
                continue
            kind = table.kinds[name]
            if name in table.multiple:
                items = [item for item in _as_list(value) if item not in (None, "")]
                clean[name] = [php_intval(item) if kind == "int" else str(item) for item in items] or None
            elif kind == "bool":
                clean[name] = 1 if php_truthy(value) and str(value).upper() not in ("N", "FALSE") else 0
            elif kind == "object":
                clean[name] = value if isinstance(value, dict) else None
            elif kind == "date":
                clean[name] = _parse_date(value, self.tz) if value not in (None, "") else None
            elif kind == "int":
                clean[name] = php_intval(value) if value not in (None, "") else None
            elif kind == "float":
                clean[name] = _typed("float", value, self.tz)
            elif kind == "datetime":
                moment = _parse_moment(value, self.tz)
                clean[name] = None if moment is None else int(moment.timestamp())
            elif spec[1] == "char":
                clean[name] = "Y" if php_truthy(value) and str(value).upper() not in ("N", "FALSE") else "N"
            else:
                clean[name] = None if value is None else str(value)
        if "CONTACT_IDS" in {str(key).upper() for key in fields} and table is self._deals:
            given = next(v for k, v in fields.items() if str(k).upper() == "CONTACT_IDS")
            ids = [php_intval(item) for item in _as_list(given)]
            clean["CONTACT_ID"] = ids[0] if ids else None
        return clean

    def _apply_multifields(self, table: _Table, row: dict[str, Any], fields: Mapping[str, Any]) -> None:
        """crm.contact.update's rules: with ID change or delete (DELETE=Y or empty VALUE), without ID add."""
        for key, value in fields.items():
            name = str(key).upper()
            if name not in table.multi or not isinstance(value, (list, dict)):
                continue
            current: list[list[Any]] = [list(item) for item in row.get(name) or ()]
            for item in _as_list(value):
                if not isinstance(item, dict):
                    continue
                item = {str(k).upper(): v for k, v in item.items()}
                item_id = php_intval(item.get("ID"))
                raw = item.get("VALUE")
                text = "" if raw is None else str(raw)
                if name == "EMAIL" and text.strip() and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text.strip()):
                    label = {"WORK": "Work e-mail", "HOME": "Personal e-mail"}.get(
                        str(item.get("VALUE_TYPE", "WORK")).upper(), "E-mail")
                    raise ApiError(400, "ERROR_CORE", f"The field `{label}` contains an invalid address")
                if item_id:
                    for position, existing in enumerate(current):
                        if existing[0] == item_id:
                            if str(item.get("DELETE", "")).upper() == "Y" or not text.strip():
                                del current[position]
                            else:
                                existing[2] = text
                                if item.get("VALUE_TYPE"):
                                    existing[1] = str(item["VALUE_TYPE"]).upper()
                            break
                elif text.strip():
                    current.append([self._next_multifield, str(item.get("VALUE_TYPE") or "WORK").upper(), text])
                    self._next_multifield += 1
            if current:
                row[name] = current
            else:
                row.pop(name, None)

    def _deal_stage(self, row: dict[str, Any], requested: Any, adding: bool, close_date_given: bool = False) -> None:
        """Keep STAGE_ID, CATEGORY_ID, STAGE_SEMANTIC_ID and CLOSED consistent, as the portal does."""
        category = php_intval(row.get("CATEGORY_ID") or 0)
        if category not in data.CATEGORIES:
            category = 0
        stage = str(requested) if requested not in (None, "") else None
        if stage is not None and data.category_of(stage) is None:
            stage = None  # an unknown stage is not written
        if stage is not None and data.category_of(stage) != category:
            if adding and row.get("CATEGORY_ID") is None:
                category = data.category_of(stage) or 0
            else:
                stage = None  # a stage of another funnel does not move the deal
        if stage is None:
            stage = row.get("STAGE_ID") if not adding else data.stage_id(category, "NEW")
        row["CATEGORY_ID"] = category
        assert stage is not None, "a deal always has a stage"
        semantic = data.stage_semantic(stage)
        if stage != row.get("STAGE_ID"):
            row["MOVED_TIME"] = int(self.clock())
        row["STAGE_ID"] = stage
        row["STAGE_SEMANTIC_ID"] = semantic
        closed = "N" if semantic == "P" else "Y"
        if closed == "Y" and row.get("CLOSED") != "Y" and not close_date_given:
            row["CLOSEDATE"] = dt.datetime.fromtimestamp(self.clock(), self.tz).date()  # closing dates the deal
        row["CLOSED"] = closed

    def _add(self, table: _Table, fields: dict[str, Any], user_id: int, call: _Call | None) -> int:
        with self._lock:
            now = int(self.clock())
            row = self._clean_fields(table, fields)
            row.update(DATE_CREATE=now, DATE_MODIFY=now, CREATED_BY_ID=user_id, MODIFY_BY_ID=user_id)
            row.setdefault("ASSIGNED_BY_ID", user_id)
            self._apply_multifields(table, row, fields)
            if table is self._deals:
                today = dt.datetime.fromtimestamp(now, self.tz).date()
                row.setdefault("CURRENCY_ID", "RUB")
                row.setdefault("OPPORTUNITY", 0.0)
                row.setdefault("TYPE_ID", "SALE")
                row["BEGINDATE"] = row.get("BEGINDATE") or today
                row["CLOSEDATE"] = row.get("CLOSEDATE") or today + dt.timedelta(days=7)
                row["MOVED_BY_ID"] = user_id
                self._deal_stage(row, row.pop("STAGE_ID", None), adding=True,
                                 close_date_given="CLOSEDATE" in {str(key).upper() for key in fields})
                row.setdefault("IS_NEW", "Y")
            row_id = table.insert(row)
            if table is self._deals and not row.get("TITLE"):
                row["TITLE"] = f"Сделка #{row_id}"
            if table is self._deals:
                self._stage_history.append((len(self._stage_history) + 1, row_id, now, row["CATEGORY_ID"],
                                            row["STAGE_SEMANTIC_ID"], row["STAGE_ID"], 1))
            self._raise_event(table.name, "add", row_id, call)
            return row_id

    def _update(self, table: _Table, row_id: int, fields: dict[str, Any], user_id: int, call: _Call | None) -> None:
        with self._lock:
            row = table.rows.get(row_id)
            if row is None:
                raise ApiError(400, "", f"{table.name.capitalize()} is not found")
            clean = self._clean_fields(table, fields)
            staged = clean.pop("STAGE_ID", None)
            clean.pop("CATEGORY_ID", None)  # the funnel is not changed by an update
            self._apply_multifields(table, row, fields)
            row.update(clean)
            if table is self._deals and staged is not None:
                previous = row.get("STAGE_ID")
                self._deal_stage(row, staged, adding=False,
                                 close_date_given="CLOSEDATE" in {str(key).upper() for key in fields})
                if row["STAGE_ID"] != previous:
                    row["MOVED_BY_ID"] = user_id
                    self._stage_history.append((len(self._stage_history) + 1, row_id, int(self.clock()),
                                                row["CATEGORY_ID"], row["STAGE_SEMANTIC_ID"], row["STAGE_ID"], 2))
            row["DATE_MODIFY"] = max(int(self.clock()), row.get("DATE_MODIFY") or 0)
            row["MODIFY_BY_ID"] = user_id
            table.touched()
            self._raise_event(table.name, "update", row_id, call)

    def _delete(self, table: _Table, row_id: int, call: _Call | None) -> None:
        with self._lock:
            if row_id not in table.rows:
                raise ApiError(400, "", f"{table.name.capitalize()} is not found")
            table.delete(row_id)
            if table is self._contacts:
                for deal in self._deals.rows.values():
                    if deal.get("CONTACT_ID") == row_id:
                        deal["CONTACT_ID"] = None
                self._deals.touched()
                self._drop_activities(3, row_id)
            if table is self._companies:
                for other in (self._contacts, self._deals):
                    for held in other.rows.values():
                        if held.get("COMPANY_ID") == row_id:
                            held["COMPANY_ID"] = None
                        if row_id in (held.get("COMPANY_IDS") or ()):
                            held["COMPANY_IDS"] = [i for i in held["COMPANY_IDS"] if i != row_id] or None
                    other.touched()
                for requisite_id in [i for i, r in self._requisites.rows.items()
                                     if r["ENTITY_TYPE_ID"] == 4 and r["ENTITY_ID"] == row_id]:
                    self._requisites.delete(requisite_id)
                self._drop_activities(4, row_id)
            if table is self._deals:
                self._drop_activities(2, row_id)
            self._raise_event(table.name, "delete", row_id, call)

    def _bindings(self, owner_type: Any, owner_id: Any) -> list[dict[str, str]]:
        """What an activity is bound to: its owner, and for a deal the deal's contact (whom the call was with)."""
        if not owner_type or not owner_id:
            return []
        out = [{"OWNER_TYPE_ID": str(owner_type), "OWNER_ID": str(owner_id)}]
        deal = self._deals.rows.get(owner_id) if owner_type == 2 else None
        if deal is not None and deal.get("CONTACT_ID"):
            out.append({"OWNER_TYPE_ID": "3", "OWNER_ID": str(deal["CONTACT_ID"])})
        return out

    def _drop_activities(self, owner_type: int, owner_id: int) -> None:
        """A deleted deal's, contact's or company's activities go with it, as on a portal (crm.deal.delete):
        one bound to nothing else is deleted; one also bound elsewhere only loses this binding, and
        when this was its owner, the next binding owns it."""
        this = {"OWNER_TYPE_ID": str(owner_type), "OWNER_ID": str(owner_id)}
        for activity_id, row in list(self._activity_rows.rows.items()):
            owned = row.get("OWNER_TYPE_ID") == owner_type and row.get("OWNER_ID") == owner_id
            bindings = row.get("BINDINGS") or ([{"OWNER_TYPE_ID": str(row.get("OWNER_TYPE_ID")),
                                                 "OWNER_ID": str(row.get("OWNER_ID"))}] if owned else [])
            if not owned and this not in bindings:
                continue
            left = [b for b in bindings if b != this]
            if not left:
                self._activity_rows.delete(activity_id)
                continue
            row["BINDINGS"] = left
            if owned:
                row["OWNER_TYPE_ID"], row["OWNER_ID"] = int(left[0]["OWNER_TYPE_ID"]), int(left[0]["OWNER_ID"])
        self._activity_rows.touched()

    # ---- batch

    _REFERENCE = re.compile(r"\$(result|result_error|result_total|result_next|result_time)((?:\[[^\]]*\])+)")

    def _m_batch(self, call: _Call, params: dict[str, Any]) -> _Answer:
        halt = php_truthy(params.get("halt", 0))
        commands = params.get("cmd")
        if isinstance(commands, list):
            commands = {str(index): item for index, item in enumerate(commands)}
        if not isinstance(commands, dict):
            commands = {}
        maps: dict[str, dict[str, Any]] = {name: {} for name in
                                           ("result", "result_error", "result_total", "result_next", "result_time")}
        modelled = 0.0  # inner server time that was accounted, not spent
        for position, (key, command) in enumerate(commands.items()):
            key = str(key)
            if position >= MAX_BATCH:
                maps["result_error"][key] = {"error": "ERROR_BATCH_LENGTH_EXCEEDED",
                                             "error_description": "Max batch length exceeded"}
                continue
            text = str(command)
            method, _, query = text.partition("?")
            method = method.strip().lower()
            started = time.perf_counter()
            try:
                inner = self._substitute(parse_query(query), maps)
                if method == "batch":
                    raise ApiError(405, "ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage")
                with self._lock:
                    self._stats["batch_commands"] += 1
                    self._stats["batch_methods"][method] += 1
                answer = self._invoke(call, method, inner)
            except ApiError as error:
                if error.code == "OPERATION_TIME_LIMIT":
                    with self._lock:
                        self._stats["operation_time_limit"] += 1
                maps["result_error"][key] = error.body()
                if halt:
                    break
                continue
            maps["result"][key] = answer.result
            if answer.total is not None:
                maps["result_total"][key] = answer.total
            if answer.next is not None:
                maps["result_next"][key] = answer.next
            maps["result_time"][key] = self._time_block(method, started, answer.cost, record=True)
            modelled += answer.cost
        with self._lock:
            self._stats["batches"] += 1
        return _Answer({name: php_json(values) for name, values in maps.items()}, cost=modelled)

    def _substitute(self, value: Any, maps: dict[str, dict[str, Any]]) -> Any:
        """Replace ``$result[key][0][ID]``-style references with earlier commands' answers."""
        if isinstance(value, dict):
            return {key: self._substitute(item, maps) for key, item in value.items()}
        if isinstance(value, list):
            return [self._substitute(item, maps) for item in value]
        if not isinstance(value, str) or "$result" not in value:
            return value
        whole = self._REFERENCE.fullmatch(value)
        if whole:
            found = self._resolve(whole, maps)
            return "" if found is None else found
        return self._REFERENCE.sub(lambda match: _scalar_text(self._resolve(match, maps)), value)

    @staticmethod
    def _resolve(match: re.Match[str], maps: dict[str, dict[str, Any]]) -> Any:
        node: Any = maps[match.group(1)]
        for segment in re.findall(r"\[([^\]]*)\]", match.group(2)):
            if isinstance(node, dict):
                node = node.get(segment)
            elif isinstance(node, list) and segment.lstrip("-").isdigit() and -len(node) <= int(segment) < len(node):
                node = node[int(segment)]
            else:
                return None
        return node


def _scalar_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else ""
    return str(value)
