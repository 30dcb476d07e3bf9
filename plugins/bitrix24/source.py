"""Bitrix24 as a Hub source: contacts and deals in, fields, comments and to-dos out.

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
from typing import Any, Iterator, Sequence

from hub.api import ContactRecord, OrderRecord, Page, Settings, utcnow
from plugins.bitrix24 import connection, mapping
from plugins.bitrix24.client import MAX_BATCH, PAGE, Bitrix24Error, Client, command

METHODS = {"contacts": "crm.contact", "orders": "crm.deal"}
OWNER_TYPE_CONTACT = 3  # crm.activity.todo.add ownerTypeId for contacts
DEFAULT_OVERLAP_S = 300


class Bitrix24Source:
    name = "bitrix24"

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self.settings = settings
        self.options = connection.plugin_settings(settings)
        self._client = client
        self.overlap = dt.timedelta(seconds=int(self.options.get("overlap_s", DEFAULT_OVERLAP_S)))
        self.contact_fields: dict[str, str] = dict(self.options.get("contact_fields") or {})
        self.promo_field: str | None = self.options.get("promo_field")

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = connection.client(self.settings)
        return self._client

    # --- reading --------------------------------------------------------------------

    def entities(self) -> tuple[str, ...]:
        return ("contacts", "orders")

    def checkpoint(self, entity: str) -> str:
        return json.dumps({"since": utcnow().isoformat()})

    def _select(self, entity: str) -> list[str]:
        if entity == "contacts":
            return mapping.CONTACT_FIELDS + sorted(self.contact_fields)
        return mapping.DEAL_FIELDS + ([self.promo_field] if self.promo_field else [])

    def _records(self, entity: str, rows: list[dict[str, Any]]) -> list[ContactRecord | OrderRecord]:
        if entity == "contacts":
            return [mapping.contact(r, self.contact_fields) for r in rows]
        return [mapping.deal(r, self.promo_field) for r in rows]

    def read(self, entity: str, cursor: str | None, full: bool) -> Iterator[Page]:
        method = f"{METHODS[entity]}.list"
        select = self._select(entity)
        if full:
            for rows in self.client.pages(method, select=select, after_id=int(cursor or 0)):
                yield Page(self._records(entity, rows), rows[-1]["ID"])
            return
        state = json.loads(cursor) if cursor else {}
        since = dt.datetime.fromisoformat(state["since"]) if state.get("since") else None
        started = utcnow()
        filter_: dict[str, Any] = {}
        if since is not None:
            filter_[">=DATE_MODIFY"] = (since - self.overlap).isoformat()
        # Small changes cost one request; big ones grow to full 50-call batches.
        for rows in self.client.pages(method, select=select, filter=filter_, after_id=int(state.get("id") or 0),
                                      chain=4, grow=4):
            yield Page(self._records(entity, rows), json.dumps({**state, "id": rows[-1]["ID"]}))
        yield Page([], json.dumps({"since": started.isoformat()}))

    def fetch(self, entity: str, ids: Sequence[str]) -> list[ContactRecord | OrderRecord]:
        """The records with these ids (50 per call, 50 calls per request)."""
        method = f"{METHODS[entity]}.list"
        select = self._select(entity)
        wanted = [str(int(i)) for i in ids]
        parts = [wanted[i:i + PAGE] for i in range(0, len(wanted), PAGE)]
        rows: list[dict[str, Any]] = []
        for start in range(0, len(parts), MAX_BATCH):
            commands = {f"f{n}": command(method, {"filter": {"ID": part}, "select": select, "start": -1})
                        for n, part in enumerate(parts[start:start + MAX_BATCH])}
            answer = self.client.batch(commands)
            for key in commands:
                if key in answer.errors:
                    raise Bitrix24Error(f"Bitrix24: {method}: {answer.errors[key]}")
                rows += answer.result.get(key) or []
        return self._records(entity, rows)

    def live_ids(self, entity: str) -> Iterator[list[str]]:
        for rows in self.client.pages(f"{METHODS[entity]}.list", select=["ID"]):
            yield [str(r["ID"]) for r in rows]

    def stats(self) -> dict[str, int | float]:
        if self._client is None:
            return {"requests": 0, "rate_limited": 0}
        return self._client.stats.as_dict()

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

    def add_task(self, external_id: str, title: str, *, due_at: dt.datetime, description: str = "") -> str | None:
        """A to-do for the contact's responsible manager (the webhook's user when none is set)."""
        params: dict[str, Any] = {"ownerTypeId": OWNER_TYPE_CONTACT, "ownerId": int(external_id),
                                  "deadline": due_at.astimezone(self.settings.tz).isoformat(timespec="seconds"),
                                  "title": title, "description": description}
        responsible = self._responsible(external_id)
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
