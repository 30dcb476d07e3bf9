"""The end of `hub demo` (this plugin's register_showcases): the whole reactivation campaign on the demo's base.

The demo's CRMs are emulators, so nobody in them ever agreed to anything; the
demo records email and SMS consent for a sample of the customers it synced
from them, marked `source: demo`, the way a shop's checkout form would have,
and says so. Then it switches reactivation_90d on and runs it in-process:
codes issued, letters written as .eml files into the demo's outbox folder
(the file channel), nothing sent anywhere.

The campaign's second half happens a week later, so the demo moves its own
clock (``hub.db``'s clock, which the whole engine reads; the computer's clock
is not touched) past the wait and on through each moment a run is due again
(quiet hours may hold an SMS until the morning): whoever has not bought gets
an SMS (.txt files in the outbox) and their manager a call task in the CRM
emulator that holds them, which are still running. The sample is small
enough for the emulators' request limits to let every task through in a few
seconds, as they would on a real portal.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from sqlalchemy import Engine, select

# not in hub.api on purpose: only the demo moves the clock the whole engine reads
from hub import db as hub_db
from hub.api import (ContactIdentity, ExternalRef, Message, Settings, format_moment, format_number, format_phone,
                     gettext, ngettext, record_consent, translated_title, utcnow)
from workflows import store, ticks, triggers
from workflows.models import PromoCode, StepResult, WorkflowRun

WORKFLOW = "reactivation_90d"
SHOWN = 3
# How many CRM customers the demo records as having agreed: a sample spread over the whole base.
CONSENTING = 80
# The demo's clock stops looking for due runs this long after they started (the wait is 7 days).
HORIZON = dt.timedelta(days=10)


def _sample(ids: list[int], size: int) -> list[int]:
    """`size` ids spread evenly over `ids` (all of them when there are fewer)."""
    if len(ids) <= size:
        return ids
    step = len(ids) / size
    return [ids[int(i * step)] for i in range(size)]


def _grant_demo_consent(conn: Any) -> tuple[list[int], int]:
    """Email consent for the sample of CRM customers with an email; SMS consent for those of them with a phone."""
    with_email = sorted(set(conn.execute(select(ExternalRef.contact_id).join(
        ContactIdentity, ContactIdentity.contact_id == ExternalRef.contact_id)
        .where(ContactIdentity.kind == "email", ContactIdentity.valid)).scalars()))
    people = _sample(with_email, CONSENTING)
    with_phone = set(conn.execute(select(ContactIdentity.contact_id).where(
        ContactIdentity.kind == "phone", ContactIdentity.valid, ContactIdentity.contact_id.in_(people))).scalars())
    # Hub's own words, kept as written in the shop's language of the day, like a note staff would type.
    evidence = {"note": gettext("demo: the emulated CRM customers' consent given at checkout")}
    for contact_id in people:
        record_consent(conn, contact_id, "email", "marketing", "granted", source="demo", evidence=evidence)
        if contact_id in with_phone:
            record_consent(conn, contact_id, "sms", "marketing", "granted", source="demo", evidence=evidence)
    return people, len(with_phone)


def _fixed(moment: dt.datetime) -> dt.datetime:
    return moment


def _later_half(engine: Engine, settings: Settings, workflow_id: int, started_at: dt.datetime) -> dt.datetime:
    """Move the demo's clock to each moment a run is due until the runs are done or the horizon is passed."""
    runs = WorkflowRun.__table__.c
    moment = started_at
    while True:
        with engine.connect() as conn:
            due = conn.execute(select(runs.next_at).where(
                runs.workflow_id == workflow_id, runs.status.in_(("running", "waiting")), runs.next_at > moment)
                .order_by(runs.next_at).limit(1)).scalar_one_or_none()
        if due is None:
            return moment
        if due.tzinfo is None:
            due = due.replace(tzinfo=dt.timezone.utc)
        if due > started_at + HORIZON:
            return moment
        moment = due
        hub_db.set_clock(functools.partial(_fixed, moment))
        ticks.advance_due(engine, settings, now=moment, workflow_id=workflow_id)


def run_reactivation(settings: Settings, engine: Engine, workdir: Path, console: Console) -> dict[str, Any]:
    """Grant demo consent to a sample of CRM customers, run reactivation_90d through its week; returns the numbers."""
    outbox = workdir / "outbox"
    settings = replace(settings, extra={**settings.extra, "outbox_dir": str(outbox)})
    now = utcnow()
    with engine.begin() as conn:
        store.install_library(conn)
        people, with_phone = _grant_demo_consent(conn)
        row = store.set_enabled(conn, WORKFLOW, True, now=now)
        workflow = store.definition(conn, settings, row.id, row.version)
    started = triggers.fire(engine, settings, row, workflow, now=now, manual=True)
    ticks.advance_due(engine, settings, now=now, workflow_id=row.id)
    with engine.connect() as conn:
        sent = conn.execute(select(Message.id, Message.address, Message.subject, PromoCode.code)
                            .join(PromoCode, PromoCode.contact_id == Message.contact_id)
                            .where(Message.status == "sent", Message.template == "reactivation_email")
                            .order_by(Message.id)).all()
    letters = sorted(outbox.glob("*-email.eml")) if outbox.exists() else []
    title = translated_title(workflow.title) or WORKFLOW
    console.rule("[bold]" + gettext("%(title)s (%(name)s): a promo code by email, a week later an SMS and a call",
                                    title=title, name=WORKFLOW))
    console.print(ngettext(
        "For the demo, %(num)s CRM customer is recorded as having agreed to marketing email (%(sms)s of them to "
        "SMS too), marked source: demo, as a checkout form would record it: nobody in the emulators ever agreed "
        "to anything.",
        "For the demo, %(num)s CRM customers are recorded as having agreed to marketing email (%(sms)s of them to "
        "SMS too), marked source: demo, as a checkout form would record it: nobody in the emulators ever agreed "
        "to anything.", len(people), num=format_number(len(people)), sms=format_number(with_phone)))
    console.print(ngettext(
        "%(num)s of them has not bought for 90 days and entered the campaign; %(holdout)s of those are the 10%% "
        "control group that gets nothing, so the uplift can be measured.",
        "%(num)s of them have not bought for 90 days and entered the campaign; %(holdout)s of those are the 10%% "
        "control group that gets nothing, so the uplift can be measured.",
        started.started, num=format_number(started.started), holdout=format_number(started.holdout)))
    console.print("[bold]" + gettext("Now, %(moment)s:", moment=format_moment(now, settings.tz, zone=True))
                  + "[/bold] " + ngettext(
                      "%(num)s personal promo code and letter; %(files)s .eml file in %(outbox)s",
                      "%(num)s personal promo codes and letters; %(files)s .eml files in %(outbox)s",
                      len(sent), num=format_number(len(sent)), files=format_number(len(letters)), outbox=outbox))
    for _, address, subject, code in sent[:SHOWN]:
        console.print(f"  {address}: «{subject}» — {code}")

    week = _week_later(engine, settings, row.id, now)
    sms, tasks = _what_the_week_did(engine, row.id, now)
    sms_files = sorted(outbox.glob("*-sms.txt")) if outbox.exists() else []
    console.print(gettext("The demo moves its own clock a week forward, past the campaign's wait (the computer's "
                          "clock is not touched); whoever has not bought by then gets the rest of it."))
    console.print("[bold]" + gettext("A week later, %(moment)s:", moment=format_moment(week, settings.tz, zone=True))
                  + "[/bold] " + ngettext(
                      "%(num)s SMS with the code's reminder (%(files)s .txt file in the outbox):",
                      "%(num)s SMS with the code's reminder (%(files)s .txt files in the outbox):",
                      len(sms), num=format_number(len(sms)), files=format_number(len(sms_files))))
    for address, text in sms[:SHOWN]:
        console.print(f"  {format_phone(address)}: «{' '.join(text.split())}»")
    by_crm = Counter(source for source, *_ in tasks)
    console.print(ngettext(
        "%(num)s call task for the customer's manager, created in the CRM emulators (%(crms)s):",
        "%(num)s call tasks for the customers' managers, created in the CRM emulators (%(crms)s):",
        len(tasks), num=format_number(len(tasks)),
        crms=", ".join(f"{name} {format_number(n)}" for name, n in sorted(by_crm.items())) or "—"))
    for source, task_id, title_text, due in _from_each_crm(tasks):
        console.print("  " + gettext("%(crm)s, task #%(id)s: «%(title)s», due %(due)s", crm=source, id=task_id,
                                     title=title_text, due=format_moment(due, settings.tz, zone=True)))
    console.print(gettext("See the campaign's report:") +
                  f"\n  HUB_DATABASE_URL=sqlite:///{workdir / 'hub.db'} hub workflows status {WORKFLOW}")
    return {"consented": len(people), "sms_consented": with_phone, **started.as_dict(), "emails": len(sent),
            "files": len(letters), "sms": len(sms), "sms_files": len(sms_files), "tasks": len(tasks),
            "tasks_by_crm": dict(by_crm)}


def _from_each_crm(tasks: list[tuple[str, str, str, dt.datetime]]) -> list[tuple[str, str, str, dt.datetime]]:
    """A few tasks to show, the first of each CRM first."""
    firsts = list({task[0]: task for task in reversed(tasks)}.values())[::-1]
    return (firsts + [t for t in tasks if t not in firsts])[:SHOWN]


def _week_later(engine: Engine, settings: Settings, workflow_id: int, now: dt.datetime) -> dt.datetime:
    """The campaign's week on the demo's clock; the real clock is back when it returns."""
    try:
        return _later_half(engine, settings, workflow_id, now)
    finally:
        hub_db.set_clock(None)


def _what_the_week_did(engine: Engine, workflow_id: int, started_at: dt.datetime
                       ) -> tuple[list[tuple[str, str]], list[tuple[str, str, str, dt.datetime]]]:
    """The SMS sent and the CRM tasks created (source, the CRM's task id, title, due) by the campaign's runs."""
    runs, results = WorkflowRun.__table__.c, StepResult.__table__.c
    with engine.connect() as conn:
        sms = [(address or "", text or "") for address, text in conn.execute(
            select(Message.address, Message.body_text).where(
                Message.status == "sent", Message.channel == "sms", Message.template == "reactivation_sms")
            .order_by(Message.id))]
        tasks = []
        for (result,) in conn.execute(
                select(results.result).join(WorkflowRun.__table__, runs.id == results.run_id)
                .where(runs.workflow_id == workflow_id, results.kind == "crm_task", results.status == "done")
                .order_by(results.id)):
            due = dt.datetime.fromisoformat(result["due_at"]) if result.get("due_at") else started_at
            for written in result.get("crm", []):
                tasks.append((written["source"], str(written.get("id") or "?"), str(result.get("title", "")), due))
    return sms, tasks
