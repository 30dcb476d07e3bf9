"""The receiver for amoCRM's webhooks: POST /hooks/amocrm/<secret>.

amoCRM posts form-encoded events, `contacts[update][0][id]=...`,
`leads[status][0][id]=...&leads[status][0][status_id]=142`,
`account[subdomain]=...`; companies arrive under `contacts` with
`type=company`. It does not sign them, so the route's last segment is a
secret made at `hub connect amocrm`, compared in constant time. An event
carries little more than ids, and amoCRM gives up on a receiver that takes
longer than about two seconds, so the route only enqueues a targeted fetch of
those ids and answers at once. Events can be duplicated or lost; the fetch is
idempotent and the scheduled incremental sync catches what was missed.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections import defaultdict
from typing import Iterable

from flask import Blueprint, Response, request

# not in hub.api on purpose: the webhook queues the core's own job that re-reads records through hub.sync
from hub import jobs
from hub.api import current_settings, enqueue, get_engine
from plugins.amocrm import tokens

log = logging.getLogger(__name__)
bp = Blueprint("amocrm_webhooks", __name__)
_SECRET_IN_PATH = re.compile(r"(/hooks/amocrm/)[^\s/?\"]+")


class HideSecret(logging.Filter):
    """Keeps the path's secret out of access logs (werkzeug logs every request line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/hooks/amocrm/" in message:
            record.msg, record.args = _SECRET_IN_PATH.sub(r"\1…", message), ()
        return True


def install_log_filter() -> None:
    """Add HideSecret to the web server's access log once."""
    access_log = logging.getLogger("werkzeug")
    if not any(isinstance(f, HideSecret) for f in access_log.filters):
        access_log.addFilter(HideSecret())

# contacts[update][0][id], leads[status][3][status_id], ...
_KEY = re.compile(r"^(contacts|leads|companies)\[([a-z_]+)\]\[(\d+)\]\[([a-z_]+)\]$")
ENTITIES = {"contacts": "contacts", "leads": "orders"}


def parse(form: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Hub entity -> ids to fetch again, from the posted fields (companies are not people; skipped)."""
    events: dict[tuple[str, str, str], dict[str, str]] = defaultdict(dict)
    for key, value in form:
        m = _KEY.match(key)
        if m:
            group, action, index, name = m.groups()
            events[(group, action, index)][name] = value
    ids: dict[str, list[str]] = {}
    for (group, _action, _index), fields in sorted(events.items()):
        entity = ENTITIES.get(group)
        event_id = (fields.get("id") or "").strip()
        if entity is None or not event_id.isdigit():
            continue
        if group == "contacts" and fields.get("type", "contact") != "contact":
            continue
        bucket = ids.setdefault(entity, [])
        if event_id not in bucket:
            bucket.append(event_id)
    return ids


@bp.post("/hooks/amocrm/<secret>")
def receive(secret: str) -> Response:
    settings = current_settings()
    try:
        data, _ = tokens.load(get_engine(settings.database_url), settings)
    except tokens.NotConnected:
        return Response("not found\n", status=404, mimetype="text/plain")
    expected = str(data.get("webhook_secret") or "")
    if not expected or not hmac.compare_digest(secret.encode(), expected.encode()):
        log.warning("amoCRM webhook refused: wrong secret in the path")
        return Response("not found\n", status=404, mimetype="text/plain")
    subdomain = request.form.get("account[subdomain]")
    known = (data.get("account") or {}).get("subdomain")
    if subdomain and known and subdomain != known:
        log.warning("amoCRM webhook for account %r ignored: Hub is connected to %r", subdomain, known)
        return Response("ignored\n", status=200, mimetype="text/plain")
    for entity, ids in parse(request.form.items(multi=True)).items():
        enqueue(settings, jobs.fetch_records, "amocrm", entity, ids, queue="high", background=True)
    return Response("ok\n", status=200, mimetype="text/plain")
