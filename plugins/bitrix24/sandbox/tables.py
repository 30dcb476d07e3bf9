"""The portal's records: a table of contacts or deals, its fields, filters, ordering and pages."""

from __future__ import annotations

import collections
import datetime as dt
import re
from bisect import bisect_left
from typing import Any

from plugins.bitrix24.sandbox import data
from plugins.bitrix24.sandbox.protocol import _KIND_BY_TYPE, PAGE_SIZE, ApiError, _as_list, _typed

_FILTER_KEY = re.compile(r"^(>=|<=|!=|!@|!%|=%|%=|>|<|@|%|=|!)?(.+)$")


class _Table:
    """One CRM entity's records with the list query engine (filter, order, paging, counting)."""

    def __init__(self, name: str, specs: tuple[data.FieldSpec, ...], rows: dict[int, dict[str, Any]],
                 tz: dt.tzinfo) -> None:
        self.name = name
        self.specs = specs
        self.tz = tz
        self.kinds = {spec[0]: _KIND_BY_TYPE.get(spec[1], "str") for spec in specs}
        self.fields = [spec[0] for spec in specs]
        self.multi = [name for name in self.fields if self.kinds[name] == "multi"]
        # Multiple fields that are not multifields (COMPANY_IDS, a multiple list): Python lists of values.
        self.multiple = {spec[0] for spec in specs if spec[4] and self.kinds[spec[0]] != "multi"}
        self.plain = [name for name in self.fields if self.kinds[name] != "multi" and not name.startswith("UF_")
                      and name not in data.SELECTED_BY_NAME]
        # What "UF_*" selects: custom fields "excluding multiple fields", which are selected by name.
        self.user_fields = [spec[0] for spec in specs if spec[0].startswith("UF_") and not spec[4]]
        # Written through add/update but never returned by list/get (contacts' COMPANY_IDS: the docs send
        # readers to crm.contact.company.items.get; crm.item.list has them as companyIds).
        self.write_only = {"COMPANY_IDS"} if name == "contact" else set()
        self.rows = rows
        self.ids = sorted(rows)
        self.next_id = (self.ids[-1] + 1) if self.ids else 1
        self.version = 0
        self._cache: collections.OrderedDict[tuple[Any, ...], list[int]] = collections.OrderedDict()

    # ---- values

    def value(self, row: dict[str, Any], name: str) -> Any:
        if name == "HAS_PHONE":
            return "Y" if row.get("PHONE") else "N"
        if name == "HAS_EMAIL":
            return "Y" if row.get("EMAIL") else "N"
        value = row.get(name)
        if name == "COMMUNICATIONS" and value is None:  # the contacts the activity is bound to
            return [{"ID": str(row["ID"] * 10 + n), "TYPE": "", "VALUE": "", "ENTITY_ID": str(item["OWNER_ID"]),
                     "ENTITY_TYPE_ID": "3"}
                    for n, item in enumerate(row.get("BINDINGS") or ()) if str(item.get("OWNER_TYPE_ID")) == "3"]
        if value is None and name in data.CHAR_DEFAULTS:
            return data.CHAR_DEFAULTS[name]
        return value

    def render_value(self, row: dict[str, Any], name: str) -> Any:
        kind = self.kinds[name]
        value = self.value(row, name)
        if kind == "multi":
            return [{"ID": str(item[0]), "VALUE_TYPE": item[1], "VALUE": item[2], "TYPE_ID": name}
                    for item in value or ()]
        if name == "OPPORTUNITY" or name == "TAX_VALUE":
            return f"{value or 0:.2f}"
        if name in self.multiple:
            return [self._scalar(kind, item) for item in value or ()]
        return self._scalar(kind, value)

    def _scalar(self, kind: str, value: Any) -> Any:
        if kind == "object":
            return value if value else []  # PHP's empty array
        if kind == "bool":
            return None if value is None else ("1" if value else "0")
        if value is None:
            return "" if kind == "date" else None
        if kind == "int":
            return str(value)
        if kind == "datetime":
            return dt.datetime.fromtimestamp(value, self.tz).isoformat()
        if kind == "date":
            # Date fields come back as UTC midnight in the portal's zone, e.g. 2001-11-11T03:00:00+03:00.
            midnight = dt.datetime(value.year, value.month, value.day, tzinfo=dt.timezone.utc)
            return midnight.astimezone(self.tz).isoformat()
        if kind == "float":
            return str(value)
        return value

    def render(self, row: dict[str, Any], select: list[str] | None = None) -> dict[str, Any]:
        """The record as the portal returns it; multifields only when selected and non-empty."""
        names = self.fields if select is None else select
        out: dict[str, Any] = {}
        for name in names:
            if name in self.write_only:
                continue
            if self.kinds[name] == "multi":
                if row.get(name):
                    out[name] = self.render_value(row, name)
            else:
                out[name] = self.render_value(row, name)
        return out

    def expand_select(self, select: Any) -> list[str]:
        """'*' is every plain field, 'UF_*' every custom field; multifields only by name; ID always."""
        wanted = [str(item).strip().upper() for item in _as_list(select) if str(item).strip()]
        if not wanted:
            wanted = ["*", "UF_*"]
        chosen = {"ID"}
        for item in wanted:
            if item == "*":
                chosen.update(self.plain)
            elif item == "UF_*":
                chosen.update(self.user_fields)
            elif item in self.kinds:
                chosen.add(item)
        return [name for name in self.fields if name in chosen]

    # ---- changes

    def insert(self, row: dict[str, Any]) -> int:
        row_id = self.next_id
        self.next_id += 1
        row["ID"] = row_id
        self.rows[row_id] = row
        self.ids.append(row_id)
        self.version += 1
        return row_id

    def touched(self) -> None:
        self.version += 1

    def delete(self, row_id: int) -> None:
        del self.rows[row_id]
        index = bisect_left(self.ids, row_id)
        if index < len(self.ids) and self.ids[index] == row_id:
            del self.ids[index]
        self.version += 1

    # ---- queries

    def compile_filter(self, raw: Any) -> list[tuple[str, str, Any]]:
        if raw is None or raw == "" or isinstance(raw, list):
            return []
        if not isinstance(raw, dict):
            raise ApiError(400, "", "Parameter 'filter' must be array.")
        conditions: list[tuple[str, str, Any]] = []
        for key, value in raw.items():
            match = _FILTER_KEY.match(str(key))
            if not match:
                continue
            op, name = match.group(1) or "=", match.group(2).upper()
            if name not in self.kinds and name not in ("HAS_PHONE", "HAS_EMAIL"):
                continue  # the portal ignores fields it does not know
            kind = self.kinds.get(name, "str")
            if op in ("@", "!@"):
                values = [_typed("str" if kind == "multi" else kind, item, self.tz) for item in _as_list(value)]
                conditions.append((name, "!in" if op == "!@" else "in", values))
                continue
            if isinstance(value, (list, dict)):
                # Only "@" is IN (an array is passed as the value); with "=", the documented default,
                # an array is an exact match that no value equals, and "not equal" to it holds for all.
                if op == "=":
                    conditions.append((name, "in", []))
                continue
            if op in ("%", "=%", "%=", "!%"):
                text = "" if value is None else str(value)
                if op in ("=%", "%="):
                    pattern = "".join(".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in text)
                    conditions.append((name, "like", re.compile(pattern, re.IGNORECASE | re.DOTALL)))
                else:
                    conditions.append((name, "!contains" if op == "!%" else "contains", text.casefold()))
                continue
            typed = _typed("str" if kind == "multi" else kind, value, self.tz)
            if kind in ("datetime", "date") and typed is None and value not in (None, ""):
                continue  # an unreadable date does not restrict the list
            conditions.append((name, {"=": "eq", "!": "ne", "!=": "ne"}.get(op, op), typed))
        return conditions

    def _matches(self, row: dict[str, Any], conditions: list[tuple[str, str, Any]]) -> bool:
        for name, op, wanted in conditions:
            actual = self.value(row, name)
            if self.kinds.get(name) == "multi":
                values = [item[2].strip().casefold() for item in actual or ()]
                if op in ("eq", "in"):
                    targets = wanted if op == "in" else [wanted]
                    if not any(str(target).strip().casefold() in values for target in targets if target is not None):
                        return False
                elif op in ("ne", "!in"):
                    targets = wanted if op == "!in" else [wanted]
                    if any(str(target).strip().casefold() in values for target in targets if target is not None):
                        return False
                elif op == "contains":
                    if not any(wanted in value for value in values):
                        return False
                elif op == "!contains":
                    if any(wanted in value for value in values):
                        return False
                elif op == "like":
                    if not any(wanted.fullmatch(value) for value in values):
                        return False
                else:
                    return False
                continue
            if isinstance(actual, str):
                actual_cmp: Any = actual.casefold()
                wanted_cmp: Any = wanted.casefold() if isinstance(wanted, str) else wanted
                if op in ("in", "!in"):
                    wanted_cmp = [item.casefold() if isinstance(item, str) else item for item in wanted]
            else:
                actual_cmp, wanted_cmp = actual, wanted
            if op == "eq":
                if wanted_cmp in ("", None):
                    if actual_cmp not in ("", None):
                        return False
                elif actual_cmp != wanted_cmp:
                    return False
            elif op == "ne":
                if wanted_cmp in ("", None):
                    if actual_cmp in ("", None):
                        return False
                elif actual_cmp == wanted_cmp:
                    return False
            elif op == "in":
                if actual_cmp not in wanted_cmp:
                    return False
            elif op == "!in":
                if actual_cmp in wanted_cmp:
                    return False
            elif op == "contains":
                if actual_cmp is None or wanted not in str(actual_cmp):
                    return False
            elif op == "!contains":
                if actual_cmp is not None and wanted in str(actual_cmp):
                    return False
            elif op == "like":
                if actual is None or not wanted.fullmatch(str(actual)):
                    return False
            else:
                if actual_cmp is None or wanted_cmp is None:
                    return False
                try:
                    if op == ">" and not actual_cmp > wanted_cmp:
                        return False
                    if op == ">=" and not actual_cmp >= wanted_cmp:
                        return False
                    if op == "<" and not actual_cmp < wanted_cmp:
                        return False
                    if op == "<=" and not actual_cmp <= wanted_cmp:
                        return False
                except TypeError:
                    return False
        return True

    def compile_order(self, raw: Any) -> list[tuple[str, bool]]:
        if raw is None or raw == "" or isinstance(raw, list):
            return []
        if not isinstance(raw, dict):
            raise ApiError(400, "", "Parameter 'order' must be array.")
        order = []
        for key, direction in raw.items():
            name = str(key).upper()
            if name in self.kinds and self.kinds[name] != "multi":
                order.append((name, str(direction).strip().upper() == "DESC"))
        return order

    def _id_range(self, conditions: list[tuple[str, str, Any]]) -> tuple[int, int]:
        """Index bounds into self.ids implied by ID conditions, so paging by ID never scans the whole table."""
        low, high = 0, len(self.ids)
        for name, op, wanted in conditions:
            if name == "ID" and op == "in" and isinstance(wanted, list):
                # An ID IN list ("@ID") lies between its least and greatest id, as an index finds it:
                # scanned whole, each call of a sync that asks for 50 contacts by id cost the emulated
                # portal server time in proportion to all its contacts.
                if wanted and all(isinstance(value, int) for value in wanted):
                    low = max(low, bisect_left(self.ids, min(wanted)))
                    high = min(high, bisect_left(self.ids, max(wanted) + 1))
                continue
            if name != "ID" or not isinstance(wanted, int):
                continue
            if op == ">":
                low = max(low, bisect_left(self.ids, wanted + 1))
            elif op == ">=":
                low = max(low, bisect_left(self.ids, wanted))
            elif op == "<":
                high = min(high, bisect_left(self.ids, wanted))
            elif op == "<=":
                high = min(high, bisect_left(self.ids, wanted + 1))
            elif op == "eq":
                low = max(low, bisect_left(self.ids, wanted))
                high = min(high, bisect_left(self.ids, wanted + 1))
        return low, high

    def _sort(self, ids: list[int], order: list[tuple[str, bool]]) -> list[int]:
        for name, descending in reversed(order):
            def key(row_id: int, name: str = name) -> tuple[bool, Any]:
                value = self.value(self.rows[row_id], name)
                if isinstance(value, str):
                    value = value.casefold()
                return (value is not None, value if value is not None else 0)
            ids = sorted(ids, key=key, reverse=descending)
        return ids

    def find(self, raw_filter: Any, raw_order: Any, start: int) -> tuple[list[dict[str, Any]], int | None]:
        """One page of matching records and, unless start < 0, the number of all matches."""
        conditions = self.compile_filter(raw_filter)
        order = self.compile_order(raw_order) or [("ID", False)]
        by_id = len(order) == 1 and order[0][0] == "ID"
        low, high = self._id_range(conditions)
        if start < 0 and by_id:
            page: list[dict[str, Any]] = []
            indexes = range(high - 1, low - 1, -1) if order[0][1] else range(low, high)
            for index in indexes:
                row = self.rows[self.ids[index]]
                if self._matches(row, conditions):
                    page.append(row)
                    if len(page) == PAGE_SIZE:
                        break
            return page, None
        key = (repr(conditions), repr(order), self.version)
        matched = self._cache.get(key)
        if matched is None:
            matched = [self.ids[index] for index in range(low, high)
                       if self._matches(self.rows[self.ids[index]], conditions)]
            if by_id:
                if order[0][1]:
                    matched.reverse()
            else:
                matched = self._sort(matched, order)
            self._cache[key] = matched
            while len(self._cache) > 8:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        offset = 0 if start < 0 else (start // PAGE_SIZE) * PAGE_SIZE
        page = [self.rows[row_id] for row_id in matched[offset:offset + PAGE_SIZE]]
        return page, (None if start < 0 else len(matched))

