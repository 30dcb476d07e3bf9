"""Links between entities: POST /api/v4/{entity_type}/{id}/link, /{entity_type}/link, their unlink, GET …/links.

As amoCRM documents them: a lead links to contacts and a company, a contact
to companies, a company to contacts and leads (customers and list elements
are not emulated, so not linkable here). The one-entity form takes an array
of `{to_entity_id, to_entity_type, metadata}`, the bulk form the same with
`entity_id`; both answer `_embedded.links` with what was linked, 400 with
the validation errors when any item is wrong (nothing is linked then).
`metadata.main_contact` makes a contact the lead's main one. A lead has at
most one company: linking another replaces it.

A link is a change of both records: their `updated_at` moves, so an
integration reading changed records sees the new membership.
"""

from __future__ import annotations

from typing import Any

from plugins.amocrm.sandbox.data import link
from plugins.amocrm.sandbox.protocol import Response, _error, _is_int, _json_response, _problem
from plugins.amocrm.sandbox.state import AccountState

LINKABLE = {"leads": ("contacts", "companies"), "contacts": ("companies",), "companies": ("contacts", "leads")}


class Links(AccountState):
    """The links API (part of `Account`)."""

    def _links_route(self, method: str, entity: str, entity_id: int | None, action: str, payload: Any,
                     base: str) -> Response:
        """`action` is "link", "unlink" or "links" (the list of one entity's links)."""
        if action == "links":
            if method != "GET" or entity_id is None:
                return _method_not_allowed()
            with self._lock:
                row = self._stores[entity].get(entity_id)
                if row is None:
                    return Response(204)
                found = self._links_of(entity, row)
            path = f"/api/v4/{entity}/{entity_id}/links"
            return _json_response(200, {"_total_items": len(found), "_links": link(base, path),
                                        "_embedded": {"links": found}})
        if method != "POST":
            return _method_not_allowed()
        refused = self._batch_refused(payload)
        if refused is not None:
            return refused
        with self._lock:
            refused = self._items_refused(payload, lambda item: self._link_errors(entity, entity_id, item))
            if refused is not None:
                return refused
            done = []
            touched: set[tuple[str, int]] = set()
            for item in payload:
                owner = entity_id if entity_id is not None else int(item["entity_id"])
                other, other_type = int(item["to_entity_id"]), item["to_entity_type"]
                main = bool((item.get("metadata") or {}).get("main_contact"))
                if action == "link":
                    self._join(entity, owner, other_type, other, main=main)
                else:
                    self._part(entity, owner, other_type, other)
                touched |= {(entity, owner), (other_type, other)}
                done.append({"entity_id": owner, "entity_type": entity, "to_entity_id": other,
                             "to_entity_type": other_type, "metadata": _metadata(entity, other_type, main)})
            now = self.now()
            for kind, row_id in touched:
                self._stores[kind][row_id].updated_at = now
                self._versions[kind] += 1
        path = f"/api/v4/{entity}/{entity_id}/{action}" if entity_id is not None else f"/api/v4/{entity}/{action}"
        if action == "unlink":
            return Response(204)
        return _json_response(200, {"_total_items": len(done), "_links": link(base, path),
                                    "_embedded": {"links": done}})

    def _link_errors(self, entity: str, entity_id: int | None, item: Any) -> list[dict[str, str]]:
        if not isinstance(item, dict):
            return [_error("InvalidType", "", "This value should be of type array.")]
        errors = []
        if entity_id is None:
            if "entity_id" not in item:
                errors.append(_error("FieldMissing", "entity_id", "This field is missing."))
            elif not _is_int(item["entity_id"]):
                errors.append(_error("InvalidType", "entity_id", "This value should be of type int."))
            elif item["entity_id"] not in self._stores[entity]:
                errors.append(_error("NotFound", "entity_id", "Entity not found."))
        elif entity_id not in self._stores[entity]:
            errors.append(_error("NotFound", "entity_id", "Entity not found."))
        kind = item.get("to_entity_type")
        if kind is None:
            errors.append(_error("FieldMissing", "to_entity_type", "This field is missing."))
        elif kind not in LINKABLE[entity]:
            errors.append(_error("NotSupportedChoice", "to_entity_type",
                                 "The value you selected is not a valid choice."))
        if "to_entity_id" not in item:
            errors.append(_error("FieldMissing", "to_entity_id", "This field is missing."))
        elif not _is_int(item["to_entity_id"]):
            errors.append(_error("InvalidType", "to_entity_id", "This value should be of type int."))
        elif kind in LINKABLE[entity] and item["to_entity_id"] not in self._stores[kind]:
            errors.append(_error("NotFound", "to_entity_id", "Entity not found."))
        metadata = item.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            errors.append(_error("InvalidType", "metadata", "This value should be of type array."))
        return errors

    def _join(self, entity: str, owner: int, other_type: str, other: int, *, main: bool) -> None:
        """Link two records both ways (a link is symmetric in amoCRM)."""
        if entity == "leads" or other_type == "leads":
            lead_id, kind, target = (owner, other_type, other) if entity == "leads" else (other, entity, owner)
            lead = self._stores["leads"][lead_id]
            if kind == "companies":
                for old in lead.company_ids:
                    company = self._stores["companies"].get(old)
                    if company is not None and lead_id in company.lead_ids:
                        company.lead_ids.remove(lead_id)
                lead.company_ids = [target]
                _add(self._stores["companies"][target].lead_ids, lead_id)
            else:
                ids = [i for i in lead.contact_ids if i != target]
                lead.contact_ids = [target, *ids] if main or not ids else [*ids, target]
                _add(self._stores["contacts"][target].lead_ids, lead_id)
            return
        contact_id, company_id = (owner, other) if entity == "contacts" else (other, owner)
        _add(self._stores["contacts"][contact_id].company_ids, company_id)
        _add(self._stores["companies"][company_id].contact_ids, contact_id)

    def _part(self, entity: str, owner: int, other_type: str, other: int) -> None:
        if entity == "leads" or other_type == "leads":
            lead_id, kind, target = (owner, other_type, other) if entity == "leads" else (other, entity, owner)
            lead = self._stores["leads"][lead_id]
            listed = lead.company_ids if kind == "companies" else lead.contact_ids
            _drop(listed, target)
            _drop(self._stores[kind][target].lead_ids, lead_id)
            return
        contact_id, company_id = (owner, other) if entity == "contacts" else (other, owner)
        _drop(self._stores["contacts"][contact_id].company_ids, company_id)
        _drop(self._stores["companies"][company_id].contact_ids, contact_id)

    def _links_of(self, entity: str, row: Any) -> list[dict[str, Any]]:
        found: list[tuple[str, int, bool]] = []
        if entity == "leads":
            found += [("contacts", i, n == 0) for n, i in enumerate(row.contact_ids)]
            found += [("companies", i, False) for i in row.company_ids]
        elif entity == "contacts":
            found += [("companies", i, False) for i in row.company_ids]
        else:
            found += [("contacts", i, False) for i in row.contact_ids]
            found += [("leads", i, False) for i in row.lead_ids]
        return [{"entity_id": row.id, "entity_type": entity, "to_entity_id": other, "to_entity_type": kind,
                 "metadata": _metadata(entity, kind, main)} for kind, other, main in found]


def _metadata(entity: str, other_type: str, main: bool) -> dict[str, Any] | None:
    return {"main_contact": main} if entity == "leads" and other_type == "contacts" else None


def _add(ids: list[int], value: int) -> None:
    if value not in ids:
        ids.append(value)


def _drop(ids: list[int], value: int) -> None:
    if value in ids:
        ids.remove(value)


def _method_not_allowed() -> Response:
    return _problem(405, "Method Not Allowed", "Unsupported method")
