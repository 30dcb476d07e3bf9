"""What people call the engine's states, goals and forecast counts, in the reader's language.

Reports and JSON keep the technical keys ("exited", "skipped_no_consent");
the admin and the command line show these names first.
"""

from __future__ import annotations

from typing import Any

from hub.api import N_, gettext, translated_title

STATE_TITLES = {
    "none": N_("never entered"), "running": N_("running"), "waiting": N_("waiting"), "done": N_("done"),
    "exited": N_("left early"), "parked": N_("parked"), "cancelled": N_("cancelled"), "holdout": N_("holdout"),
    "on": N_("switched on"), "off": N_("switched off"),
}
GOAL_TITLES = {"order.created": N_("an order"), "order.won": N_("a won deal"),
               "promo.redeemed": N_("the promo code used")}
COUNTER_TITLES = {
    "count": N_("would happen"), "email": N_("emails"), "sms": N_("SMS"),
    "skipped_no_address": N_("no address"), "skipped_no_consent": N_("no consent"),
    "deferred_quiet_hours": N_("held by quiet hours"), "skipped_frequency_cap": N_("skipped: frequency cap"),
    "deferred_frequency_cap": N_("held by the frequency cap"), "after_horizon": N_("later than the forecast"),
    "exit": N_("leave"), "then": N_("rule holds"), "else": N_("rule does not hold"),
}


def state_title(value: str) -> str:
    """A run's state ("left early" for exited); an unknown one as it is."""
    return gettext(STATE_TITLES[value]) if value in STATE_TITLES else str(value)


def goal_title(event: str) -> str:
    """A goal event as people call it ("a won deal" for order.won)."""
    return gettext(GOAL_TITLES[event]) if event in GOAL_TITLES else str(event)


def counter_title(key: str) -> str:
    """A forecast's count or a step kind's name ("no consent" for skipped_no_consent)."""
    return gettext(COUNTER_TITLES[key]) if key in COUNTER_TITLES else str(key)


def add_titles(report: dict[str, Any], workflow: Any, conn: Any = None, settings: Any = None) -> None:
    """A status or forecast report gets the workflow's, its trigger's and each step's names for people.

    Each step gets its kind's title and summary, `text` (the step as people read it:
    «Промокод 15 % на 14 дней») and `kind` (its technical name); the report gets
    `trigger_text` (with the segment's title when `conn` and `settings` are given),
    `goal_within` («30 дней») and `kind_titles` (step kind → title, for a forecast's columns).
    """
    from workflows.steps import kind_summary, kind_title

    kinds = {workflow.number(i.index): i.step for i in workflow.steps()}
    report["title"] = translated_title(report.get("title") or workflow.title)
    report["description"] = translated_title(workflow.description)
    report["trigger_title"] = workflow.trigger.title()
    if conn is not None and settings is not None:
        from workflows.triggers import trigger_text

        report["trigger_text"] = trigger_text(conn, settings, workflow)
    else:
        report["trigger_text"] = workflow.trigger.text()
    if workflow.goal is not None:
        report["goal_within"] = workflow.goal.within_text()
    report["kind_titles"] = {i.kind: kind_title(i.step) for i in workflow.steps()}
    for step in report["steps"]:
        kind = kinds.get(step["step"])
        if kind is not None:
            step["title"], step["summary"] = kind_title(kind), kind_summary(kind)
            step["text"], step["kind"] = kind.phrase(), kind.name
    for contact in report.get("contacts", []):  # a forecast's plan for some of the people
        for action in contact["actions"]:
            kind = kinds.get(action["step"])
            if kind is not None:
                action["title"], action["text"], action["kind"] = kind_title(kind), kind.phrase(), kind.name
