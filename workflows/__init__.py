"""Workflows: automated campaigns that run by themselves, safely and measurably.

Registered like any plugin, through the "hub" entry point group. The modules,
each with one job: definition (read and check a workflow file), steps (the
step API and small steps), send, promo, crm, webhook, conditions (the built-in
steps and `if`), store (saved workflows and versions), triggers (who starts a
run), runner (moving runs, exactly once), policy (the core's quiet hours and
frequency cap as a step plans with them), ticks (the tick `hub scheduler`
runs), jobs (what RQ runs), measure (status and uplift), forecast (dry runs),
nps (survey links and their page), config (settings), commands (the CLI), showcase
(the campaign at the end of `hub demo`); library/ holds the shipped
workflows and message_templates/ the messages only they use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from sqlalchemy import Connection, update

from hub.api import hookimpl

MESSAGE_TEMPLATES = Path(__file__).parent / "message_templates"
RUN_STATES = ("none", "running", "waiting", "done", "exited", "parked", "cancelled", "holdout")


@hookimpl
def register_workflow_steps(register: Callable[[str, Any], None]) -> None:
    from workflows import crm, promo, send, steps, webhook

    for step in (promo.PromoCodeStep, send.Send, steps.Wait, crm.CrmTask, crm.CrmComment, crm.CrmField,
                 steps.Tag, steps.Untag, webhook.Webhook):
        register(step.name, step)


@hookimpl
def register_translations(register: Callable[[Path], None]) -> None:
    """The plugin's messages in Russian (translations/ru), found like any plugin's."""
    register(Path(__file__).parent / "translations")


@hookimpl
def register_template_dirs(register: Callable[[Any], None]) -> None:
    register(MESSAGE_TEMPLATES)


@hookimpl
def register_template_variables(register: Callable[..., None], settings: Any) -> None:
    """The promo code a workflow's promo_code step issues, the NPS survey's links and the event that started a run."""
    import datetime as dt

    from hub.api import N_, local_time, utcnow
    from workflows import nps

    register("promo", {"code": "ANNA-7K2Q", "discount": 15,
                       "expires_at": local_time(settings, utcnow() + dt.timedelta(days=14))},
             {"promo.code": N_("the contact's personal promo code"),
              "promo.discount": N_("the discount, in per cent"),
              "promo.expires_at|date": N_("the last day the code works")}, title=N_("Promo code"))
    register("nps", nps.sample_links(settings),
             {'{% for link in nps.links %}<a href="{{ link.url }}">{{ link.score }}</a> {% endfor %}':
              N_("links to answer the survey: one for each score from 0 to 10")}, title=N_("NPS survey"))
    from workflows import event_data

    register("event", event_data.sample(), event_data.FIELDS, title=N_("Event from your website (API)"))


@hookimpl
def register_showcases(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """`hub demo` ends with the reactivation campaign run on the base it built."""
    from workflows import showcase

    register("reactivation", showcase.run_reactivation)


@hookimpl
def register_migrations(register: Callable[[str, Any], None]) -> None:
    """The plugin's tables (workflows.models) come from its own migrations."""
    register("workflows", Path(__file__).parent / "migrations" / "versions")


@hookimpl
def register_commands(cli: Any) -> None:
    from workflows import campaign_commands, commands

    from workflows import version_commands  # noqa: F401 - `hub workflows versions|diff|restore|move-runs`
    from workflows import trial_commands  # noqa: F401 - `hub workflows try`, and `enable` that asks first

    cli.add_command(commands.workflows_group)
    cli.add_command(commands.promo_group)
    cli.add_command(campaign_commands.campaigns_group)


@hookimpl
def register_schedules(register: Callable[[str, Any], None], settings: Any) -> None:
    import datetime as dt

    from hub.api import N_, Schedule
    from workflows import config, ticks

    every = dt.timedelta(seconds=config.load(settings).interval)
    register("workflows", Schedule(every, ticks.scheduled_tick,
                                   N_("start runs by the workflows' triggers and do the steps that are due")))


@hookimpl
def register_routes(app: Any) -> None:
    from workflows import nps

    app.register_blueprint(nps.bp)


@hookimpl
def register_api_endpoints(register: Callable[[Any], None]) -> None:
    """POST /api/v1/workflows/{name}/enroll: one contact into a workflow, by its rules (workflows.api)."""
    from workflows import api

    api.register(register)


@hookimpl
def register_admin_pages(register: Callable[[Any], None]) -> None:
    """The workflows' pages in the admin, and each contact's runs on their card; the one-off campaigns' pages."""
    from dataclasses import replace

    from workflows import campaign_admin
    from workflows import versions_admin  # noqa: F401 - its routes on the workflows blueprint
    from workflows import trial_admin  # noqa: F401 - try on a contact; switching on asks first
    from workflows import builder_admin  # noqa: F401 - the workflow builder (new, edit)
    from workflows import library_admin  # noqa: F401 - the library: shipped workflows to copy
    from workflows.admin import PAGE

    register(replace(PAGE, origin_links=_workflow_links))
    register(replace(campaign_admin.PAGE, origin_links=_campaign_links))


def _workflow_links(conn: Connection, names: Any) -> dict[str, tuple[str, str]]:
    """The message log's names for workflows: each one's title and page (not the rows that carry campaigns)."""
    from flask import url_for
    from sqlalchemy import select

    from hub.api import translated_title
    from workflows import store

    t = store.workflows_t.c
    rows = conn.execute(select(t.name, t.title).where(t.name.in_(list(names)), t.origin != store.CAMPAIGN_ORIGIN))
    found = {r.name: r.title for r in rows}
    found |= {n: d.get("title") for n, d in store.library_documents().items() if n in names and n not in found}
    return {n: (translated_title(title) if title else n, url_for("workflows.detail", name=n))
            for n, title in found.items()}


def _campaign_links(conn: Connection, names: Any) -> dict[str, tuple[str, str]]:
    """The message log's names for campaigns: a campaign's letters carry its workflow's name (campaign_<name>)."""
    from flask import url_for
    from sqlalchemy import select

    from workflows import campaigns
    from workflows.models import Campaign

    asked = [n.removeprefix(campaigns.WORKFLOW_PREFIX) for n in names if n.startswith(campaigns.WORKFLOW_PREFIX)]
    t = Campaign.__table__.c
    rows = conn.execute(select(t.name, t.title).where(t.name.in_(asked)))
    return {campaigns.workflow_name(r.name): (r.title or r.name, url_for("campaigns.detail", name=r.name))
            for r in rows}


def _workflow_names(settings: Any) -> list[str]:
    """Workflows a rule may name: the shipped ones and every saved one."""
    from sqlalchemy import select

    from hub.api import get_engine
    from workflows import store

    names = set(store.library_documents())
    try:
        with get_engine(settings.database_url).connect() as conn:
            names.update(conn.execute(select(store.workflows_t.c.name)).scalars())
    except Exception:  # noqa: BLE001 - no database yet: the shipped names are still right
        pass
    return sorted(names)


def _run_status(ctx: Any) -> Any:
    from sqlalchemy import func, select

    from workflows.models import WorkflowRow, WorkflowRun

    runs, workflows = WorkflowRun.__table__, WorkflowRow.__table__
    latest = (select(runs.c.status).join(workflows, workflows.c.id == runs.c.workflow_id)
              .where(runs.c.contact_id == ctx.contact_id, workflows.c.name == ctx.params["name"])
              .order_by(runs.c.id.desc()).limit(1).scalar_subquery())
    return func.coalesce(latest, "none")


@hookimpl
def contact_card_facts(conn: Connection, contact_id: int) -> dict[str, Any] | None:
    """The latest NPS answer on the card and in `hub contacts show` (workflows.nps.latest_answer)."""
    from workflows import nps

    return {"nps": nps.latest_answer(conn, contact_id)}


@hookimpl
def check_send(conn: Connection, settings: Any, message: Any, now: Any) -> Any:
    """A paused campaign's letters already in the outbox wait with it (workflows.campaigns.paused_verdict)."""
    if not (message.meta or {}).get("campaign"):  # asked of every letter: no import for those of no campaign
        return None
    from workflows import campaigns

    return campaigns.paused_verdict(conn, message, now)


@hookimpl
def register_segment_fields(register: Callable[[str, Any], None]) -> None:
    from hub.api import N_, SegmentField
    from workflows import names, nps

    register("workflow.<name>.status", SegmentField(
        "choice", _run_status, N_("state of the contact's latest run of a workflow (none: never entered)"),
        choices=RUN_STATES, params={"name": _workflow_names},
        choice_titles={state: names.STATE_TITLES[state] for state in RUN_STATES}))
    register("contact.nps", SegmentField("integer", nps.latest_score,
                                         N_("the latest NPS score (0-10) the contact gave in a survey")))


@hookimpl
def segment_changed(conn: Connection, segment: str, entered: list[int], exited: list[int]) -> None:
    """Contacts who entered (or left) a segment start the switched-on workflows it triggers, in the same transaction."""
    from workflows import triggers

    triggers.on_segment_changed(conn, segment, entered, exited)


@hookimpl
def contact_erased(conn: Connection, contact_id: int) -> None:
    """An erased person gets nothing more: runs under way are cancelled, survey answers deleted."""
    from hub.api import utcnow
    from workflows.models import Interaction, WorkflowRun

    runs = WorkflowRun.__table__
    conn.execute(update(runs).where(runs.c.contact_id == contact_id, runs.c.status.in_(("running", "waiting")))
                 .values(status="cancelled", next_at=None, finished_at=utcnow(), error="the person was erased"))
    conn.execute(Interaction.__table__.delete().where(Interaction.__table__.c.contact_id == contact_id))
    # What an event's sender said about them (a cart's address, a page's query) went into the context
    # of the runs it started; the erasure deletes the events, so their copies go too.
    from sqlalchemy import bindparam, select

    personal = ("properties",)
    rows = conn.execute(select(runs.c.id, runs.c.context).where(runs.c.contact_id == contact_id)).all()
    cleared = [{"_id": r.id, "_context": {k: v for k, v in (r.context or {}).items() if k not in personal}}
               for r in rows if any(k in (r.context or {}) for k in personal)]
    if cleared:
        conn.execute(update(runs).where(runs.c.id == bindparam("_id")).values(context=bindparam("_context")), cleared)


@hookimpl
def contact_merged(conn: Connection, survivor_id: int, merged_id: int) -> None:
    """A merged contact's runs, codes and answers belong to the survivor; runs keep distinct cycles."""
    from sqlalchemy import func, select

    from workflows.models import Interaction, PromoCode, WorkflowRun

    runs = WorkflowRun.__table__
    theirs = runs.alias("survivor_runs")
    shift = (select(func.coalesce(func.max(theirs.c.cycle), 0)).where(
        theirs.c.workflow_id == runs.c.workflow_id, theirs.c.contact_id == survivor_id).scalar_subquery())
    conn.execute(update(runs).where(runs.c.contact_id == merged_id)
                 .values(contact_id=survivor_id, cycle=runs.c.cycle + shift))
    for table in (PromoCode.__table__, Interaction.__table__):  # step results follow their runs
        conn.execute(update(table).where(table.c.contact_id == merged_id).values(contact_id=survivor_id))
