"""Reading methods (profile, list, get, fields, statuses) and what tests read from Python."""

from __future__ import annotations

import datetime as dt
from typing import Any

from plugins.bitrix24.sandbox import data
from plugins.bitrix24.sandbox.credentials import _Call
from plugins.bitrix24.sandbox.protocol import PAGE_SIZE, ApiError, _Answer, _as_list, php_intval
from plugins.bitrix24.sandbox.state import PortalState
from plugins.bitrix24.sandbox.tables import _Table


class Reading(PortalState):
    """The read-only REST methods and the Python views of the portal's state (part of `Portal`)."""

    @property
    def contact_count(self) -> int:
        with self._lock:
            return len(self._contacts.rows)

    @property
    def deal_count(self) -> int:
        with self._lock:
            return len(self._deals.rows)

    @property
    def company_count(self) -> int:
        with self._lock:
            return len(self._companies.rows)

    @property
    def activity_count(self) -> int:
        with self._lock:
            return len(self._activity_rows.rows)

    def company(self, company_id: int) -> dict[str, Any]:
        """The company as crm.company.get returns it; KeyError if there is none."""
        with self._lock:
            return self._companies.render(self._companies.rows[company_id])

    def logged_activity(self, activity_id: int) -> dict[str, Any]:
        """An activity as crm.activity.get returns it; KeyError if there is none."""
        with self._lock:
            return self._activity_rows.render(self._activity_rows.rows[activity_id])

    def company_inn(self, company_id: int) -> str | None:
        """The INN of the company's first requisite that has one."""
        with self._lock:
            return next((row["RQ_INN"] for row in self._requisites.rows.values()
                         if row["ENTITY_TYPE_ID"] == 4 and row["ENTITY_ID"] == company_id and row.get("RQ_INN")),
                        None)

    def contact_ids(self) -> list[int]:
        with self._lock:
            return list(self._contacts.ids)

    def deal_ids(self) -> list[int]:
        with self._lock:
            return list(self._deals.ids)

    def contact(self, contact_id: int) -> dict[str, Any]:
        """The contact as crm.contact.get returns it; KeyError if there is none."""
        with self._lock:
            return self._contacts.render(self._contacts.rows[contact_id])

    def deal(self, deal_id: int) -> dict[str, Any]:
        """The deal as crm.deal.get returns it; KeyError if there is none."""
        with self._lock:
            return self._deals.render(self._deals.rows[deal_id])

    def timeline_comments(self, entity_type: str | None = None, entity_id: int | None = None) -> list[dict[str, Any]]:
        """Comments added through crm.timeline.comment.add, oldest first."""
        with self._lock:
            return [dict(item) for item in self._comments
                    if (entity_type is None or item["ENTITY_TYPE"] == entity_type)
                    and (entity_id is None or item["ENTITY_ID"] == entity_id)]

    def activities(self, owner_type_id: int | None = None, owner_id: int | None = None) -> list[dict[str, Any]]:
        """To-dos added through crm.activity.todo.add, oldest first."""
        with self._lock:
            return [dict(item) for item in self._activities
                    if (owner_type_id is None or item["ownerTypeId"] == owner_type_id)
                    and (owner_id is None or item["ownerId"] == owner_id)]
    # ------------------------------------------------------------------ methods

    def _m_profile(self, call: _Call, params: dict[str, Any]) -> dict[str, Any]:
        user = data.USERS.get(call.user_id, {"NAME": "", "LAST_NAME": "", "ADMIN": False, "PERSONAL_GENDER": ""})
        return {"ID": str(call.user_id), "ADMIN": user["ADMIN"], "NAME": user["NAME"],
                "LAST_NAME": user["LAST_NAME"], "PERSONAL_GENDER": user["PERSONAL_GENDER"], "TIME_ZONE": ""}

    def _m_list(self, call: _Call, table: _Table, params: dict[str, Any]) -> _Answer:
        start = php_intval(params.get("START", 0))
        with self._lock:
            select = table.expand_select(params.get("SELECT"))
            page, total = table.find(params.get("FILTER"), params.get("ORDER"), start)
            result = [table.render(row, select) for row in page]
        if total is None:
            return _Answer(result, total=0)  # start=-1: no count, no next
        offset = (start // PAGE_SIZE) * PAGE_SIZE if start > 0 else 0
        following = offset + PAGE_SIZE if offset + PAGE_SIZE < total else None
        return _Answer(result, total=total, next=following, cost=total * self.count_cost_per_row)

    @staticmethod
    def _id_param(params: dict[str, Any]) -> int:
        row_id = php_intval(params.get("ID"))
        if row_id <= 0:
            raise ApiError(400, "", "ID is not defined or invalid.")
        return row_id

    def _m_get(self, call: _Call, table: _Table, params: dict[str, Any]) -> dict[str, Any]:
        row_id = self._id_param(params)
        with self._lock:
            row = table.rows.get(row_id)
            if row is None:
                raise ApiError(400, "", "Not found")
            return table.render(row)

    @staticmethod
    def _m_fields(table: _Table) -> dict[str, Any]:
        described: dict[str, Any] = {}
        for name, kind, required, read_only, multiple, title, status_type in table.specs:
            item: dict[str, Any] = {"type": kind, "isRequired": required, "isReadOnly": read_only,
                                    "isImmutable": False, "isMultiple": multiple,
                                    "isDynamic": name.startswith("UF_"), "title": title}
            if status_type:
                item["statusType"] = status_type
            if name in data.USER_FIELD_LABELS:
                label = data.USER_FIELD_LABELS[name]
                item.update(listLabel=label, formLabel=label, filterLabel=label)
            if name in data.USER_FIELD_ITEMS:
                item["items"] = [{"ID": str(key), "VALUE": value} for key, value in data.USER_FIELD_ITEMS[name]]
            described[name] = item
        return described

    def _m_status_list(self, call: _Call, params: dict[str, Any]) -> _Answer:
        rows = data.statuses()
        wanted = params["FILTER"] if isinstance(params.get("FILTER"), dict) else {}
        for key, value in wanted.items():
            rows = [row for row in rows if str(row.get(str(key).upper())) == str(value)]
        rows.sort(key=lambda row: (row["ENTITY_ID"], int(row["SORT"])))
        return _Answer(rows, total=len(rows))


    def _m_category_list(self, call: _Call, params: dict[str, Any]) -> _Answer:
        """Deal funnels (entityTypeId 2); the general one is id 0 and isDefault."""
        if php_intval(params.get("entityTypeId")) != 2:
            raise ApiError(400, "NOT_FOUND", "Smart process not found")
        rows = [{"id": category, "name": name, "sort": 100 * (category + 1), "entityTypeId": 2,
                 "isDefault": "Y" if category == 0 else "N"} for category, name in data.CATEGORIES.items()]
        return _Answer({"categories": rows}, total=len(rows))

    def _m_item_list(self, call: _Call, params: dict[str, Any]) -> _Answer:
        """crm.item.list for contacts (entityTypeId 3): id and companyIds, filtered by id ("@id", ">id"...)."""
        if php_intval(params.get("entityTypeId")) != 3:
            raise ApiError(400, "NOT_FOUND", "Smart process not found")
        raw = params.get("filter")
        renamed = {str(key).replace("id", "ID") if str(key).lstrip("@!<>=") == "id" else "_unknown": value
                   for key, value in raw.items()} if isinstance(raw, dict) else raw
        start = php_intval(params.get("start", 0))
        select = {str(name) for name in _as_list(params.get("select"))} or {"*"}
        with self._lock:
            page, total = self._contacts.find(renamed, {"ID": "ASC"}, start)
            items = []
            for row in page:
                item: dict[str, Any] = {"id": row["ID"]}
                if select & {"*", "companyIds"}:
                    item["companyIds"] = list(row.get("COMPANY_IDS") or ([row["COMPANY_ID"]]
                                                                         if row.get("COMPANY_ID") else []))
                items.append(item)
        if total is None:
            return _Answer({"items": items}, total=0)
        offset = (start // PAGE_SIZE) * PAGE_SIZE if start > 0 else 0
        following = offset + PAGE_SIZE if offset + PAGE_SIZE < total else None
        return _Answer({"items": items}, total=total, next=following)

    _HISTORY_NAMES = ("ID", "OWNER_ID", "CREATED_TIME", "CATEGORY_ID", "STAGE_SEMANTIC_ID", "STAGE_ID", "TYPE_ID")

    def _m_stagehistory_list(self, call: _Call, params: dict[str, Any]) -> _Answer:
        """Deals' stage history: filter by OWNER_ID (one or a list) and >ID, order by ID, 50 a page."""
        if php_intval(params.get("entityTypeId")) != 2:
            raise ApiError(400, "", "entityTypeId is not supported")
        raw: dict[str, Any] = params["filter"] if isinstance(params.get("filter"), dict) else {}
        owners = raw.get("OWNER_ID")
        wanted = None if owners in (None, "") else {php_intval(o) for o in (owners if isinstance(owners, list)
                                                                            else [owners])}
        after = php_intval(raw.get(">ID", 0))
        order: dict[str, Any] = params["order"] if isinstance(params.get("order"), dict) else {}
        descending = str(order.get("ID", "ASC")).upper() == "DESC"
        select = [str(name).upper() for name in params.get("select") or ()] or list(self._HISTORY_NAMES)
        start = php_intval(params.get("start", 0))
        with self._lock:
            rows = [entry for entry in self._stage_history
                    if entry[0] > after and (wanted is None or entry[1] in wanted)]
        if descending:
            rows.reverse()
        offset = max(start, 0)
        page = rows[offset:offset + PAGE_SIZE]
        items = []
        for entry in page:
            full = dict(zip(self._HISTORY_NAMES, entry, strict=True))
            full["CREATED_TIME"] = dt.datetime.fromtimestamp(entry[2], self.tz).isoformat()
            items.append({name: full[name] for name in select if name in full})
        if start < 0:
            return _Answer({"items": items}, total=0)
        following = offset + PAGE_SIZE if offset + PAGE_SIZE < len(rows) else None
        return _Answer({"items": items}, total=len(rows), next=following)
