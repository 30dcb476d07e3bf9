"""Bitrix24 as a Hub source: custom fields, companies, contacts, deals and activities in;
fields, comments, to-dos and erasures out.

Directories. Custom field definitions (crm.contact/company/deal.fields), deal
funnels (crm.category.list) and stage names (crm.status.list) come in one
batch request per run, cached on the source: the "fields" entity yields the
definitions and the record mappers type values and name stages with them.

Companies bring their INN from requisites (crm.requisite.list, ENTITY_TYPE_ID
4): each page of companies is followed by one paged read of the requisites of
that page's ID range, so 2,500 companies cost two requests, not 2,501.
Activities are those owned by a deal, a contact or a company (OWNER_TYPE_ID 2,
3 or 4), in the same crm.activity.list walk: a call logged on a deal card reaches
the person its BINDINGS name, else the deal's contact (hub.activities). Filtering
by owner rather than by BINDINGS keeps one row per activity: a BINDINGS filter
returns an activity bound to both a deal and a contact twice.

Cursors. A full read pages by ID, so its cursor is the last ID committed. An
incremental read asks for everything modified since the last run's start
(minus an overlap, because the portal stamps DATE_MODIFY when a change begins,
not when it commits) and pages by ID within that; its cursor carries both
the date and the last ID, so a run killed half-way resumes where it stopped
and the date moves on only when the run completes.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Callable, Iterator, Mapping, Sequence

from hub.api import (
    ActivityRecord,
    without_nul,
    CompanyRecord,
    ContactRecord,
    FieldDefinition,
    OrderRecord,
    Page,
    Settings,
    utcnow,
)
from plugins.bitrix24 import connection, fields, mapping
from plugins.bitrix24.client import MAX_BATCH, PAGE, Bitrix24Error, Client, command, portal_time

Record = ContactRecord | OrderRecord | CompanyRecord | ActivityRecord
METHODS = {"contacts": "crm.contact", "orders": "crm.deal", "companies": "crm.company", "activities": "crm.activity"}
MODIFIED = {"crm.activity": "LAST_UPDATED"}  # the list filter field of an incremental read; DATE_MODIFY elsewhere
OWNER_TYPE_CONTACT = 3  # crm.activity.todo.add ownerTypeId for contacts
OWNER_TYPE_COMPANY = 4
DEAL_TYPE = 2  # entityTypeId of deals (crm.category.list, crm.stagehistory.list)
DEFAULT_OVERLAP_S = 300
MAX_PROBLEMS = 100  # reported per run; more says nothing new
ENTITY_NAMES = {"contacts": "contact", "orders": "order", "companies": "company", "activities": "activity"}
HISTORY_CHUNK = 10  # deals per crm.stagehistory.list call: their latest entries fit one page of 50


class Bitrix24Source:
    name = "bitrix24"

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self.settings = settings
        self.options = connection.plugin_settings(settings)
        self._client = client
        self.overlap = dt.timedelta(seconds=int(self.options.get("overlap_s", DEFAULT_OVERLAP_S)))
        self.contact_fields: dict[str, str] = dict(self.options.get("contact_fields") or {})
        self.promo_field: str | None = self.options.get("promo_field")
        self._directory: dict[str, Any] | None = None
        self.problems: list[dict[str, str]] = []  # rows that could not be read: {"entity", "id", "error"}

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = connection.client(self.settings)
        return self._client

    # --- reading --------------------------------------------------------------------

    def entities(self) -> tuple[str, ...]:
        return ("fields", "companies", "contacts", "orders", "activities")

    def checkpoint(self, entity: str) -> str:
        return json.dumps({"since": utcnow().isoformat()})

    # --- directories: custom fields, funnels, stages (one request per run) ---------------

    def directory(self) -> dict[str, Any]:
        """Field definitions by entity and code, funnel and stage names; read once per source."""
        if self._directory is None:
            commands = {"contact": command("crm.contact.fields", {}), "company": command("crm.company.fields", {}),
                        "order": command("crm.deal.fields", {}),
                        "categories": command("crm.category.list", {"entityTypeId": DEAL_TYPE}),
                        "stages": command("crm.status.list", {})}
            answer = self.client.batch_all(commands)
            for key in ("contact", "company", "order"):
                if key in answer.errors:
                    raise Bitrix24Error(f"Bitrix24: {commands[key].split('?')[0]}: {answer.errors[key]}")
            known = {entity: {d.code: d for d in fields.definitions(entity, answer.result.get(entity) or {})}
                     for entity in ("contact", "company", "order")}
            found = answer.result.get("categories")
            rows = found.get("categories") if isinstance(found, dict) else found
            pipelines = {str(c.get("id")): str(c.get("name")) for c in rows or () if isinstance(c, dict)}
            stages = {str(s.get("STATUS_ID")): str(s.get("NAME")) for s in answer.result.get("stages") or ()
                      if isinstance(s, dict) and str(s.get("ENTITY_ID") or "").startswith("DEAL_STAGE")}
            texts = [*pipelines.values(), *stages.values(), *self.contact_fields, *self.contact_fields.values()]
            texts += [str(value) for entity in known.values() for d in entity.values()
                      for value in (d.code, d.name, *(o.get("value") for o in d.options))]
            self._directory = {"fields": known, "pipelines": pipelines, "stages": stages,
                               "holds_nul": any("\x00" in text for text in texts)}
        return self._directory

    def _known(self, entity: str) -> dict[str, FieldDefinition]:
        return self.directory()["fields"].get(entity, {})

    def _attributes(self, entity: str) -> Callable[[Mapping[str, Any]], dict[str, object]]:
        """The reader of an entity's custom fields (fields.reader), made once with the directory."""
        readers = self.directory().setdefault("readers", {})
        if entity not in readers:
            readers[entity] = fields.reader(self._known(entity))
        return readers[entity]

    def _select(self, entity: str) -> list[str]:
        if entity == "contacts":
            return mapping.CONTACT_FIELDS + sorted(self.contact_fields) + self._custom_select("contact")
        if entity == "companies":
            return mapping.COMPANY_FIELDS + self._custom_select("company")
        if entity == "activities":
            return list(mapping.ACTIVITY_FIELDS)
        return mapping.DEAL_FIELDS + ([self.promo_field] if self.promo_field else []) + self._custom_select("order")

    def _custom_select(self, entity: str) -> list[str]:
        """"UF_*" and, by name, the multiple custom fields: the list methods document "UF_*" as
        "all custom fields (excluding multiple fields)"."""
        return ["UF_*"] + sorted(code for code, d in self._known(entity).items() if d.multiple)

    def _filter(self, entity: str) -> dict[str, Any]:
        if entity == "activities":
            # "@" is the documented IN; a bare list would be compared with "=" (exact match).
            return {"@OWNER_TYPE_ID": [DEAL_TYPE, OWNER_TYPE_CONTACT, OWNER_TYPE_COMPANY]}
        return {}

    def _records(self, entity: str, rows: list[dict[str, Any]]) -> list[Record]:
        """The page's rows as records; a row that cannot be read is reported (see `stats`) and skipped,
        so one odd record in the portal never stops the sync at its page.

        Records are scrubbed of NUL characters (without_nul) unless nothing they are made of can
        hold one: the page's answer (client.Rows), the directory's names and the settings.
        """
        scrub = getattr(rows, "holds_nul", True)
        rows = [r for r in rows if isinstance(r, dict)]
        if entity == "activities":  # made of the row alone
            return self._each(entity, rows, mapping.activity, scrub)
        scrub = scrub or self.directory().get("holds_nul", True)
        if entity == "contacts":
            custom = self._attributes("contact")
            self._add_companies(rows)
            return self._each(entity, rows, lambda r: mapping.contact(r, self.contact_fields, custom(r)), scrub)
        if entity == "companies":
            custom = self._attributes("company")
            inns = self._inns(rows)
            scrub = scrub or any("\x00" in inn for inn in inns.values())
            return self._each(entity, rows, lambda r: mapping.company(r, inns.get(str(r.get("ID"))), custom(r)),
                              scrub)
        custom, directory = self._attributes("order"), self.directory()
        entered = self._stage_entered([r for r in rows if not r.get("MOVED_TIME") and r.get("CLOSED") != "Y"])
        return self._each(entity, rows, lambda r: mapping.deal(
            r, self.promo_field, custom(r), pipelines=directory["pipelines"],
            stages=directory["stages"], entered=entered.get(str(r.get("ID"))) if entered else None), scrub)

    def _each(self, entity: str, rows: list[dict[str, Any]], make: Callable[[dict[str, Any]], Any],
              scrub: bool = True) -> list[Record]:
        out: list[Record] = []
        for row in rows:
            try:
                record = make(row)
            except Exception as exc:  # noqa: BLE001 - one odd record must not stop the page
                if len(self.problems) < MAX_PROBLEMS:
                    self.problems.append({"entity": ENTITY_NAMES.get(entity, entity), "id": str(row.get("ID")),
                                          "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
                continue
            if record is not None:
                out.append(without_nul(record) if scrub else record)
        return out

    def _add_companies(self, contacts: list[dict[str, Any]]) -> None:
        """Put every company of each contact into its row as COMPANY_IDS, in one batch request a page.

        crm.contact.list and crm.contact.get do not return COMPANY_IDS (the documented way to the
        companies is crm.contact.company.items.get, a call per contact); crm.item.list answers 50
        contacts' companyIds a call, so a page of 2,500 contacts costs one more request.
        """
        ids = list(dict.fromkeys(str(int(r["ID"])) for r in contacts if str(r.get("ID") or "").strip().isdigit()))
        if not ids:
            return
        parts = [ids[i:i + PAGE] for i in range(0, len(ids), PAGE)]
        # start=-1: up to 50 items without counting them all (settings/performance/huge-data.md); a
        # counted call spends the method's server time on every contact the filter matches.
        commands = {f"c{n}": command("crm.item.list", {"entityTypeId": OWNER_TYPE_CONTACT, "start": -1,
                                                        "select": ["id", "companyIds"], "filter": {"@id": part}})
                    for n, part in enumerate(parts)}
        answer = self.client.batch_all(commands)
        found: dict[str, list[str]] = {}
        for key in commands:
            if key in answer.errors:
                raise Bitrix24Error(f"Bitrix24: crm.item.list: {answer.errors[key]}")
            block = answer.result.get(key)
            items = block.get("items") if isinstance(block, dict) else block
            for item in items if isinstance(items, list) else ():
                if isinstance(item, dict) and isinstance(item.get("companyIds"), list):
                    found[str(item.get("id"))] = [str(c) for c in item["companyIds"]]
        for row in contacts:
            companies = found.get(str(row.get("ID") or "").strip())
            if companies:
                row["COMPANY_IDS"] = companies

    def _inns(self, companies: list[dict[str, Any]]) -> dict[str, str]:
        """Company ID -> INN of its first requisite that has one, for the companies of one page."""
        ids = [int(r["ID"]) for r in companies if str(r.get("ID") or "").strip().isdigit()]
        if not ids:
            return {}
        found: dict[str, str] = {}
        wanted = {str(i) for i in ids}
        filter_ = {"ENTITY_TYPE_ID": OWNER_TYPE_COMPANY, ">=ENTITY_ID": min(ids), "<=ENTITY_ID": max(ids)}
        for rows in self.client.pages("crm.requisite.list", select=["ID", "ENTITY_ID", "RQ_INN"], filter=filter_):
            for row in rows:
                owner, inn = str(row.get("ENTITY_ID")), str(row.get("RQ_INN") or "").strip()
                if owner in wanted and inn and owner not in found:
                    found[owner] = inn
        return found

    def _stage_entered(self, deals: list[dict[str, Any]]) -> dict[str, dt.datetime]:
        """When open deals without MOVED_TIME entered their current stage: their latest stage history entry."""
        ids = [int(r["ID"]) for r in deals if str(r.get("ID") or "").strip().isdigit()]
        if not ids:
            return {}
        current = {str(r.get("ID")): str(r.get("STAGE_ID") or "") for r in deals}
        parts = [ids[i:i + HISTORY_CHUNK] for i in range(0, len(ids), HISTORY_CHUNK)]
        found: dict[str, dt.datetime] = {}
        commands = {f"h{n}": command("crm.stagehistory.list", {
            "entityTypeId": DEAL_TYPE, "order": {"ID": "DESC"}, "filter": {"OWNER_ID": part},
            "select": ["ID", "OWNER_ID", "STAGE_ID", "CREATED_TIME"]}) for n, part in enumerate(parts)}
        answer = self.client.batch_all(commands)
        for key in commands:
            block = answer.result.get(key)
            items = block.get("items") if isinstance(block, dict) else block
            for item in items if isinstance(items, list) else ():
                if not isinstance(item, dict):
                    continue
                owner = str(item.get("OWNER_ID"))
                moment = mapping.parse_time(item.get("CREATED_TIME"))
                # Newest first: the first entry of a deal in its current stage is when it got there.
                if owner not in found and moment is not None and str(item.get("STAGE_ID")) == current.get(owner):
                    found[owner] = moment
        return found

    def read(self, entity: str, cursor: str | None, full: bool) -> Iterator[Page]:
        if entity == "fields":
            directory = self.directory()
            yield Page([d for known in directory["fields"].values() for d in known.values()], "read")
            return
        method = f"{METHODS[entity]}.list"
        select = self._select(entity)
        if full:
            for rows in self.client.pages(method, select=select, filter=self._filter(entity),
                                          after_id=int(cursor or 0)):
                yield Page(self._records(entity, rows), _last_id(rows, cursor))
            return
        state = json.loads(cursor) if cursor else {}
        since = dt.datetime.fromisoformat(state["since"]) if state.get("since") else None
        started = utcnow()
        filter_: dict[str, Any] = self._filter(entity)
        if since is not None:
            filter_[f">={MODIFIED.get(METHODS[entity], 'DATE_MODIFY')}"] = portal_time(since - self.overlap)
        # Small changes cost one request; big ones grow to full 50-call batches.
        for rows in self.client.pages(method, select=select, filter=filter_, after_id=int(state.get("id") or 0),
                                      chain=4, grow=4):
            yield Page(self._records(entity, rows), json.dumps({**state, "id": _last_id(rows, state.get("id"))}))
        yield Page([], json.dumps({"since": started.isoformat()}))

    def fetch(self, entity: str, ids: Sequence[str]) -> list[Record]:
        """The records with these ids (50 per call, 50 calls per request)."""
        method = f"{METHODS[entity]}.list"
        select = self._select(entity)
        wanted = [str(int(i)) for i in ids]
        parts = [wanted[i:i + PAGE] for i in range(0, len(wanted), PAGE)]
        rows: list[dict[str, Any]] = []
        for start in range(0, len(parts), MAX_BATCH):
            commands = {f"f{n}": command(method, {"filter": {**self._filter(entity), "@ID": part}, "select": select,
                                                  "start": -1})
                        for n, part in enumerate(parts[start:start + MAX_BATCH])}
            answer = self.client.batch(commands)
            for key in commands:
                if key in answer.errors:
                    raise Bitrix24Error(f"Bitrix24: {method}: {answer.errors[key]}")
                rows += answer.result.get(key) or []
        return self._records(entity, rows)

    def live_ids(self, entity: str) -> Iterator[list[str]]:
        for rows in self.client.pages(f"{METHODS[entity]}.list", select=["ID"], filter=self._filter(entity)):
            yield [str(r["ID"]) for r in rows]

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"requests": 0, "rate_limited": 0}
        if self._client is not None:
            out = dict(self._client.stats.as_dict())
        if self.problems:
            out["problems"] = list(self.problems)
        return out

    # --- writing back ---------------------------------------------------------------

    def set_field(self, external_id: str, name: str, value: Any) -> str | None:
        """Set a contact field; logical names map through `[bitrix24] fields` (e.g. promo_code = "UF_CRM_PROMO")."""
        portal_field = (self.options.get("fields") or {}).get(name) or name
        if not (portal_field.isupper() or portal_field.startswith("UF_")):
            raise Bitrix24Error(f"Bitrix24: no portal field configured for {name!r}; add it under [bitrix24] fields "
                                f"in hub.toml, e.g. {name} = \"UF_CRM_{name.upper()}\"")
        self.client.call("crm.contact.update", {"id": external_id, "fields": {portal_field: value}})
        return None

    def add_comment(self, external_id: str, text: str) -> str | None:
        body = self.client.call("crm.timeline.comment.add",
                                {"fields": {"ENTITY_ID": int(external_id), "ENTITY_TYPE": "contact", "COMMENT": text}})
        return str(body.get("result")) if body.get("result") is not None else None

    def pushes(self, name: str) -> bool:
        """Whether `hub crm push` should read `name` ("lead_score", "lifecycle") for this portal at all.

        Only what `[bitrix24] fields` maps to a portal field: a shop that pushes nothing costs no query.
        """
        return bool((self.options.get("fields") or {}).get(name))

    def set_fields(self, values: Sequence[tuple[str, str, Any]]) -> list[str]:
        """Many contacts' fields in few requests: one crm.contact.update per contact, 50 in a batch.

        Logical names map through `[bitrix24] fields` (lead_score = "UF_CRM_SCORE"); a name mapped to
        no portal field is skipped. A contact deleted in the portal meanwhile is left out of the answer;
        any other refusal stops the write with the portal's reason, a Bitrix24Error whose `written`
        lists the contacts already written (the caller marks those pushed and resends the rest).
        """
        mapped = dict(self.options.get("fields") or {})
        changes: dict[str, dict[str, Any]] = {}
        for external_id, name, value in values:
            portal_field = mapped.get(name)
            if not portal_field or not str(external_id).strip().isdigit():  # not a portal contact id
                continue
            changes.setdefault(str(int(external_id)), {})[portal_field] = "" if value is None else value
        written: list[str] = []
        pending = list(changes.items())
        for start in range(0, len(pending), MAX_BATCH):
            part = pending[start:start + MAX_BATCH]
            commands = {f"u{external_id}": command("crm.contact.update", {"id": external_id, "fields": changed})
                        for external_id, changed in part}
            try:
                answer = self.client.batch_all(commands)
            except Bitrix24Error as exc:
                exc.written = list(written)
                raise
            refused: Bitrix24Error | None = None
            for key in commands:
                if key in answer.errors:
                    if not _not_found(answer.errors[key]) and refused is None:
                        refused = Bitrix24Error(f"Bitrix24: crm.contact.update {key[1:]}: {answer.errors[key]}")
                    continue
                written.append(key[1:])
            if refused is not None:
                # What went through (this batch's others and every batch before) is not sent again.
                refused.written = list(written)
                raise refused
        return written

    def erase_contact(self, external_id: str) -> str:
        """Delete the person in the portal (crm.contact.delete); one already gone counts as deleted."""
        if not str(external_id).strip().isdigit():
            raise Bitrix24Error(f"Bitrix24: {external_id!r} is not a contact id")
        try:
            self.client.call("crm.contact.delete", {"id": int(external_id)})
        except Bitrix24Error as exc:
            if not _not_found({"error": exc.code, "error_description": str(exc)}):
                raise
        return "deleted"

    def delete_contact(self, external_id: str) -> None:
        """The older name of `erase_contact`."""
        self.erase_contact(external_id)

    def add_task(self, external_id: str, title: str, *, due_at: dt.datetime, description: str = "",
                 responsible_id: str | None = None) -> str | None:
        """A to-do for the contact's responsible manager (the webhook's user when none is set).

        `responsible_id` is the manager as the last sync read it; only when it is unknown does this
        cost a crm.contact.get to find them.
        """
        params: dict[str, Any] = {"ownerTypeId": OWNER_TYPE_CONTACT, "ownerId": int(external_id),
                                  "deadline": due_at.astimezone(self.settings.tz).isoformat(timespec="seconds"),
                                  "title": title, "description": description}
        responsible = responsible_id or self._responsible(external_id)
        if responsible:
            params["responsibleId"] = int(responsible)
        body = self.client.call("crm.activity.todo.add", params)
        result = body.get("result")
        if isinstance(result, dict):
            return str(result.get("id") or result.get("ID") or "") or None
        return str(result) if result is not None else None

    def _responsible(self, external_id: str) -> str | None:
        body = self.client.call("crm.contact.get", {"id": external_id})
        result = body["result"] if isinstance(body.get("result"), dict) else {}
        return str(result.get("ASSIGNED_BY_ID") or "") or None


def _last_id(rows: list[dict[str, Any]], before: Any) -> str:
    """The cursor after a page: the last ID in it (a row without one does not move it)."""
    for row in reversed(rows):
        found = str(row.get("ID") or "").strip() if isinstance(row, dict) else ""
        if found.isdigit():
            return found
    return str(before or 0)


def _not_found(error: Any) -> bool:
    """Whether a portal error says the record does not exist (it was deleted there)."""
    if not isinstance(error, dict):
        return False
    code = str(error.get("error") or "").upper()
    text = str(error.get("error_description") or "").lower()
    return code == "NOT_FOUND" or "not found" in text
