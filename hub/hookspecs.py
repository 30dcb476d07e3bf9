"""Every hook Hub offers plugins.

Flat functions, one per thing a plugin can do, in the style of datasette and
llm. Registration hooks take a `register` callback; event hooks receive the
open database connection so a plugin's own writes commit (or roll back)
together with the change that triggered them. An implementation may accept
any subset of a hook's arguments. docs/plugins.md documents each one, and a
test fails when a hook here is missing there or has no test of its own.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Callable

import pluggy

if TYPE_CHECKING:  # annotations only: importing hub.hookspecs stays cheap and free of cycles
    from pathlib import Path

    import click
    from flask import Flask
    from sqlalchemy.engine import Connection

    from hub.admin.registry import AdminPage
    from hub.config import Settings
    from hub.identity import Prepared
    from hub.messaging import Outgoing, Verdict
    from hub.records import ActivityRecord, OrderRecord
    from hub.segments.fields import SegmentField, SegmentOperator
    from hub.webapi.endpoints import Endpoint as ApiEndpoint

hookspec = pluggy.HookspecMarker("hub")
hookimpl = pluggy.HookimplMarker("hub")


# --- contact sync -------------------------------------------------------------------------

@hookspec
def register_sources(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register data sources: call ``register(name, factory)``.

    ``factory(settings)`` returns an object with the ``hub.sync.Source``
    protocol; it is called only when that source is used.

    .. versionadded:: 0.1
    """


@hookspec
def refuse_records(conn: Connection, settings: Settings, records: list[Prepared]) -> Any:
    """Keep records out of the base: return the positions in ``records`` that must not be written.

    Called for every chunk of a sync or import before it is resolved, so a CRM
    that still holds a person erased on request cannot bring them back.
    ``records`` are ``hub.identity.Prepared`` (``.record`` is the
    ContactRecord, ``.keys`` its normalized (kind, value) identifiers).

    .. versionadded:: 0.1
    """


@hookspec
def refuse_orders(conn: Connection, settings: Settings, orders: list[OrderRecord]) -> Any:
    """Keep orders out of the base: return the positions in ``orders`` (OrderRecords) to skip.

    The order-side twin of ``refuse_records``: deals of a person erased on
    request must not come back either.

    .. versionadded:: 0.1
    """


@hookspec
def refuse_activities(conn: Connection, settings: Settings, activities: list[ActivityRecord]) -> Any:
    """Keep activities out of the base: return the positions in ``activities`` (ActivityRecords) to skip.

    The third twin, after ``refuse_records`` and ``refuse_orders``: the calls
    and meetings a CRM still logs for a person erased on request must not come
    back either (their subjects say who and what).

    .. versionadded:: 0.2
    """


@hookspec
def contact_synced(conn: Connection, settings: Settings, source: str, contact_ids: list[int],
                   created_ids: list[int]) -> None:
    """Contacts were written by a sync or import chunk (called once per committed chunk).

    .. versionadded:: 0.1
    """


@hookspec
def register_sandboxes(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register a local emulator of a source, for ``hub demo`` and end-to-end tests.

    Call ``register(name, start)``. ``start(settings, *, people, first_person,
    seed)`` starts the emulator holding the sample people ``first_person + 1 ..
    first_person + people`` (from ``hub.sampledata.people``), stores the
    connection so that ``hub sync NAME`` reads from it, and returns a
    ``hub.sandbox.RunningSandbox``.

    .. versionadded:: 0.1
    """


@hookspec
def register_showcases(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Show what your plugin does at the end of ``hub demo``, on the base the demo built.

    Call ``register(name, show)``. ``show(settings, engine, workdir, console)``
    runs after the spreadsheets and the emulators are in: ``settings`` point at
    the demo's database, ``workdir`` is the demo's folder (write files there),
    ``console`` a ``rich.console.Console`` to print to. It returns a dict of
    numbers, kept under ``showcases[name]`` in the demo's summary.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def record_url(conn: Connection, settings: Settings, source: str, kind: str, external_id: str) -> str | None:
    """The address of a record in its source's own web interface, for "open in the CRM" links.

    ``source`` is the ``register_sources`` name the reference carries,
    ``kind`` what the record is (``"contact"``, ``"order"``), ``external_id``
    the source's id as Hub stored it. Answer only for your own source, from
    your own connection settings (read through ``conn``), and return None for
    anything else (another source, an unknown kind, an id that cannot be
    yours, no connection): the core asks every plugin, the first answer wins.

    .. versionadded:: 0.1
    """


@hookspec
def contact_card_facts(conn: Connection, contact_id: int) -> dict[str, Any] | None:
    """What you know about a contact, for their card: ``hub contacts show``, the admin card, ``contact_card``.

    Return a dict of JSON-ready values under keys of your own, or None. The
    core keeps a key it filled itself and takes yours only for a key it left
    empty: ``nps`` (``{"score", "comment", "at"}``, the latest survey answer)
    is one such key, filled by the plugin that runs the surveys. Read only:
    called inside a reading connection, once per card.

    .. versionadded:: 0.3
    """


@hookspec
def contact_merged(conn: Connection, settings: Settings, survivor_id: int, merged_id: int, merge_id: int,
                   reason: dict[str, Any]) -> None:
    """Two contacts became one: move what you keep about ``merged_id`` to ``survivor_id``.

    Called exactly once per merged contact, whichever way the merge came
    (sync, import, ``hub dedupe``, a merge by hand, a confirmed signup),
    inside the merge's transaction: the core's own rows (identities,
    references, orders, consent, messages) already point at the survivor, and
    ``merged_id`` still exists. It is deleted as soon as every implementation
    has returned, and rows still pointing at it are then deleted or cleared by
    their foreign keys, so a plugin that keeps contact ids must repoint here.
    ``merge_id`` is the merge's entry in contact_merges; a plugin that wants to
    give rows back on unmerge (``contact_unmerged``) remembers under it which
    rows it moved.

    .. versionadded:: 0.1
    .. versionchanged:: 0.1 added ``settings`` and ``merge_id``; called for every merge.
    """


@hookspec
def contact_unmerged(conn: Connection, settings: Settings, survivor_id: int, restored_id: int, merge_id: int,
                     snapshot: dict[str, Any]) -> None:
    """A merge was undone: give ``restored_id`` back what was its own before merge ``merge_id``.

    Called once per undone merge (``hub contacts unmerge``, the admin's
    undo), inside the unmerge's transaction, after the core has recreated
    ``restored_id`` (same id) from the merge's ``snapshot`` (what
    contact_merges kept: fields, provenance, tags, attributes, identities,
    external references, and for merges since 0.1 also survivor_identities,
    order_ids, consent_event_ids, note_ids) and moved its own rows back: the restored
    contact's identities, references, orders, consent events and notes already point
    at it, and values both held are on both, shared. ``survivor_id`` is the
    contact that holds the merged values today: the merge's survivor, or the
    contact it was merged into later. Rows a plugin moved in
    ``contact_merged`` for this ``merge_id`` should move back; rows the
    survivor gained since the merge stay with the survivor. The hook promises
    only ids and the snapshot: a plugin that needs to know which of its rows
    came from the restored contact must have recorded that when it repointed,
    or tell them by the restored contact's own addresses and references.

    .. versionadded:: 0.1
    .. versionchanged:: 0.1 called: merges can be undone.
    """


@hookspec
def contact_erased(conn: Connection, settings: Settings, contact_id: int) -> None:
    """A person is being erased (on request, or anonymized by retention): forget what you hold about them.

    Called inside the erasure's transaction before Hub removes its own data,
    so the contact's identities and external references can still be read.
    ``settings`` tell where a plugin keeps things outside the database (files).

    .. versionadded:: 0.1
    .. versionchanged:: 0.1 added ``settings``.
    """


# --- segmentation rules -------------------------------------------------------------------

@hookspec
def register_segment_fields(register: Callable[[str, SegmentField], None]) -> None:
    """Register fields segment rules can use: call ``register(name, field)``.

    ``field`` is a ``hub.segments.fields.SegmentField``; ``name`` is a fixed
    name (``messages.last_sent_at``) or a family with placeholders
    (``workflow.<name>.status``).

    .. versionadded:: 0.1
    """


@hookspec
def register_segment_operators(register: Callable[[str, SegmentOperator], None]) -> None:
    """Register operators segment rules can use: call ``register(name, operator)``.

    ``operator`` is a ``hub.segments.fields.SegmentOperator``.

    .. versionadded:: 0.1
    """


@hookspec
def segment_changed(conn: Connection, segment: str, entered: list[int], exited: list[int]) -> None:
    """A refresh recorded contacts entering and leaving a segment.

    Called inside the refresh's transaction, with at most 10,000 ids in each
    list per call (a larger change comes in several calls).

    .. versionadded:: 0.1
    """


# --- consent tracking ---------------------------------------------------------------------

@hookspec
def can_contact(conn: Connection, settings: Settings, contact_id: int, channel: str, purpose: str,
                address: str | None) -> str | None:
    """May this contact be reached on ``channel`` for ``purpose``?

    Return a reason (a short string) to refuse, or None to have no objection.
    Any plugin may refuse; the core's own implementation checks the consent
    ledger and suppressions.

    .. versionadded:: 0.1
    """


@hookspec
def consent_changed(conn: Connection, contact_id: int, channel: str, purpose: str, status: str, source: str,
                    evidence: dict[str, Any]) -> None:
    """A consent event was appended to the ledger.

    .. versionadded:: 0.1
    """


@hookspec
def preference_links(conn: Connection, settings: Settings, contact_id: int) -> list[dict[str, str]] | None:
    """Offer a person a way to subscribe elsewhere on their preference centre (the gdpr plugin's page).

    Return a list of ``{"title": ..., "url": ..., "text": ...}`` (``text``
    optional), already in the reader's language (the page's language is
    active), or None. Each becomes a link with its text under the page's
    choices: "Подключить Telegram" from the telegram plugin. Called for
    every view of the page: answer quickly, from the database or a cache.

    .. versionadded:: 0.3
    """


# --- outbound messaging -------------------------------------------------------------------

@hookspec
def register_channels(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register message channels: call ``register(name, factory)``.

    ``factory(settings)`` returns an object with the ``hub.messaging.Channel``
    protocol (``name``, ``open()``, ``close()``, ``send(message) -> Delivery``);
    it is called when a dispatch first needs that channel.

    .. versionadded:: 0.1
    """


@hookspec
def register_template_dirs(register: Callable[[Any], None]) -> None:
    """Ship message templates: call ``register(path)`` with a folder of template folders.

    Searched after the database and HUB_TEMPLATES_DIR, in plugin order.

    .. versionadded:: 0.1
    """


@hookspec
def register_template_variables(register: Callable[..., None], settings: Settings) -> None:
    """Offer template variables: call ``register(name, sample, fields, title=None)``.

    ``name`` is the variable templates use (``promo``); ``sample`` its value in
    previews, checks and test letters; ``fields`` maps each expression the
    template editor offers (``"promo.code"``, or a whole ``{% for %}`` snippet)
    to what it means, a message of the plugin's catalog; ``title`` names the
    group in the editor. The plugin still puts the real value in the context
    of the messages it sends, unless it passes ``per_contact=value(settings,
    contact_id)``: then the outbox fills the value in for every message whose
    template uses the variable, whoever sends it (a personal link).

    .. versionadded:: 0.2
    """


@hookspec
def check_send(conn: Connection, settings: Settings, message: Outgoing, now: dt.datetime) -> Verdict | None:
    """A send rule: may ``message`` (a ``hub.messaging.Outgoing``) go to its channel at ``now``?

    Asked by the dispatcher for every message just before its channel is
    called, whoever dispatches (a workflow, ``hub messages dispatch``, a
    queue worker). Return None to let it go, ``Verdict.skip(reason)`` to
    suppress it for good, or ``Verdict.defer(until, reason)`` to hold it until
    a UTC time (``hub.messaging.Verdict``). Every rule is asked; one skip
    suppresses the message (all skipping reasons are recorded), else the
    latest ``until`` of the rules that defer holds it. The core's consent,
    quiet hours and frequency cap come this way (hub.outbox_hooks, hub.send_limits).

    .. versionadded:: 0.1
    """


@hookspec
def message_sent(conn: Connection, message: dict[str, Any]) -> None:
    """A channel accepted a message; ``message`` is its outbox row as a dict.

    Called inside the transaction that records the message as sent.

    .. versionadded:: 0.1
    """


@hookspec
def register_workflow_steps(register: Callable[[str, Any], None]) -> None:
    """Register kinds of workflow step: call ``register(name, step_class)``.

    ``step_class`` subclasses ``workflows.steps.Step``; a workflow file uses
    it as ``{name: options}``. Hub's own steps (send, wait, promo_code, …)
    come this way too.

    .. versionadded:: 0.1
    """


# --- recurring work ----------------------------------------------------------------------

@hookspec
def register_schedules(register: Callable[[str, Any], None], settings: Settings) -> None:
    """Register work that recurs: call ``register(name, schedule)``.

    ``schedule`` is a ``hub.schedule.Schedule(every, job, description, title)``;
    ``hub scheduler`` calls ``job(run)`` (a ``hub.schedule.ScheduledRun``) every
    ``every``, in one process at a time. The job should be quick and hand
    long work to ``hub.queue.enqueue``. Read intervals from ``settings`` so
    users can change them; an interval of zero turns the schedule off.

    .. versionadded:: 0.1
    """


# --- tables -------------------------------------------------------------------------------

@hookspec
def register_migrations(register: Callable[[str, Any], None]) -> None:
    """Ship the plugin's own tables: call ``register(name, versions)``.

    ``versions`` is a folder of Alembic revision files (a ``pathlib.Path``
    or string), a chain of the plugin's own whose position is kept in the
    table ``alembic_version_<name>``; ``name`` is lowercase letters, digits
    and ``_``. ``hub init`` runs the core's migrations first, then every
    registered chain to its newest revision, so a revision may refer to core
    tables (``contacts.id``) but never to another plugin's.

    .. versionadded:: 0.1
    """


# --- language -----------------------------------------------------------------------------

@hookspec
def register_translations(register: Callable[[Path], None]) -> None:
    """Ship the plugin's translations: call ``register(folder)``.

    ``folder`` holds gettext catalogs as ``<language>/LC_MESSAGES/<name>.po``
    (``ru/LC_MESSAGES/myplugin.po``) for the messages the plugin marks with
    ``hub.api.gettext`` / ``_`` in code and ``{{ _("...") }}`` or ``{% trans %}``
    in templates. Hub merges every registered catalog, so the plugin's pages,
    flash messages and command output speak the reader's language. Write the
    messages in English; ``make translations`` (or ``pybabel extract``) finds them.

    .. versionadded:: 0.2
    """


# --- shell and web ------------------------------------------------------------------------

@hookspec
def register_commands(cli: click.Group) -> None:
    """Add commands to the ``hub`` command line: ``cli`` is the root click group.

    .. versionadded:: 0.1
    """


@hookspec
def register_routes(app: Flask) -> None:
    """Add web routes: ``app`` is the Flask application; register blueprints on it.

    Webhook receivers, unsubscribe links and other public pages come this way.
    A route must answer quickly: enqueue work (``hub.queue.enqueue(...,
    background=True)``) rather than doing it inside the request.

    .. versionadded:: 0.1
    """


@hookspec
def register_api_endpoints(register: Callable[[ApiEndpoint], None]) -> None:
    """Add routes to the HTTP API: call ``register(endpoint)`` with a ``hub.api.ApiEndpoint``.

    The endpoint declares its method, path (under /api/v1), the scope a key
    needs, and the JSON Schemas of its parameters, body and answer. The core
    checks the key, scope, rate limit and body against those schemas before
    the view runs, keeps the answer for an ``Idempotency-Key``, runs the view
    in one transaction (``call.conn``), answers errors as problem+json, and
    lists the endpoint in /api/v1/openapi.json. The view takes a
    ``hub.api.ApiCall`` and returns the JSON answer, or raises
    ``hub.api.ApiError``.

    .. versionadded:: 0.2
    """


@hookspec
def register_admin_pages(register: Callable[[AdminPage], None]) -> None:
    """Add pages to the admin: call ``register(page)`` with a ``hub.api.AdminPage``.

    Unlike ``register_routes``, these are the signed-in admin's pages: the core
    registers the page's blueprint and wraps it in sign-in, role checks (the
    page's ``read_role``/``write_role`` and each view's ``@allow(...)``), the
    CSRF check and the security headers, and lists it in the menu. The core's
    own pages come through this hook too.

    .. versionadded:: 0.1
    """
