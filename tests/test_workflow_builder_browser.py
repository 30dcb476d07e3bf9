"""The workflow builder in headless Chromium, as a marketer: a reactivation workflow built by clicking only.

Promo code 15 % for 14 days → email → wait 7 days → «Купил(а) после входа»:
then leave / else an SMS and a call task in the CRM. Before that, a template
of the wrong channel is reported next to its step before anything is saved,
and a save that the server refuses keeps what was built. The YAML beside the
builder follows every click; the saved definition is exactly the document meant.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from tests.browser import Browser
from tests.support.admin import AdminEnv
from tests.support.admin_browser import sign_in
from workflows.models import WorkflowRow

pytestmark = pytest.mark.both_databases

EXPECTED = {
    "name": "comeback_clicks", "title": "Возвращаем уснувших", "trigger": {"segment": "dormant_90d"},
    "reentry": "never", "holdout": "10%", "goal": {"event": "order.created", "within": "30d"},
    "steps": [
        {"promo_code": {"discount": "15%", "valid_for": "14d", "prefix": "BACK"}},
        {"send": {"channel": "email", "template": "reactivation_email", "purpose": "marketing"}},
        {"wait": "7d"},
        {"if": {"field": "orders.last_at", "op": "after", "value": "run.started_at"}, "then": "exit",
         "else": [{"send": {"channel": "sms", "template": "reactivation_sms", "purpose": "marketing"}},
                  {"crm_task": {"title": "Позвонить {{ contact.first_name }}", "due_in": "2d"}}]},
    ],
}


def step(path: str) -> str:
    return f'.wf-step[data-path="{path}"]'


def add(browser: Browser, at: str, kind: str) -> None:
    browser.click(f'.wf-add[data-at="{at}"]')
    browser.click(f'.wf-add[data-at="{at}"] ~ .wf-menu button[data-add-kind="{kind}"]')
    browser.wait(lambda: browser.exists(f'{step(at)}[data-kind="{kind}"]'), f"a {kind} step at {at}")


def option(path: str, key: str, control: str = "input") -> str:
    return f'{step(path)} > .wf-body > [data-option="{key}"] {control}'


def saved(env: AdminEnv, name: str) -> Any:
    with env.engine.connect() as conn:
        return conn.execute(select(WorkflowRow.definition).where(WorkflowRow.name == name)).scalar()


def test_a_marketer_builds_the_reactivation_workflow_by_clicking(admin_env: AdminEnv, live: str,
                                                                 browser: Browser) -> None:
    sign_in(browser, live, "marketer", "/workflows/new")
    browser.wait(lambda: browser.exists("#wf-title") and browser.exists('.wf-add[data-at="steps[0]"]'),
                 "the builder to draw an empty workflow")
    browser.fill("#wf-name", "comeback_clicks")  # typed by hand: the title does not change it
    browser.fill("#wf-title", "Возвращаем уснувших")
    browser.select("#wf-trigger-kind", "segment")
    browser.select("#workflow-builder [data-part=segment] select", "dormant_90d")

    add(browser, "steps[0]", "promo_code")
    browser.fill(option("steps[0]", "discount"), "15")
    browser.fill(option("steps[0]", "valid_for", "input[type=number]"), "14")
    browser.select(option("steps[0]", "valid_for", "select"), "d")
    browser.fill(option("steps[0]", "prefix"), "BACK")

    add(browser, "steps[1]", "send")
    assert not browser.find(option("steps[1]", "template", "select")).is_enabled()  # no channel yet
    assert "сначала выберите канал" in browser.text(option("steps[1]", "template", "select"))
    # a text template on the email channel: the mistake is shown next to the step before saving
    browser.select(option("steps[1]", "channel", "select"), "sms")
    browser.select(option("steps[1]", "template", "select"), "reactivation_sms")
    browser.select(option("steps[1]", "channel", "select"), "email")
    browser.select(option("steps[1]", "purpose", "select"), "marketing")
    problem = browser.wait_text(f"{step('steps[1]')} > .node-problems", "reactivation_sms")
    assert "email" in problem
    browser.wait(lambda: "template: reactivation_sms" in browser.find("#workflow-document").get_attribute("value"),
                 "the text to follow the clicks")
    browser.click("#wf-save")
    browser.wait_text("#wf-problems", "Шаг 2 «Отправить сообщение», поле «Шаблон»: ")
    assert saved(admin_env, "comeback_clicks") is None  # refused: nothing saved
    browser.wait(lambda: browser.exists(f"{step('steps[1]')}.has-problem"), "the problem placed after the refusal")
    browser.select(option("steps[1]", "template", "select"), "reactivation_email")

    add(browser, "steps[2]", "wait")
    browser.fill(option("steps[2]", "for", "input[type=number]"), "7")
    browser.select(option("steps[2]", "for", "select"), "d")

    add(browser, "steps[3]", "if")
    browser.wait(lambda: browser.find(f"{step('steps[3]')} > .node-problems").text, "the empty condition named")
    browser.click(f"{step('steps[3]')} button.wf-preset-bought-since")
    browser.wait(lambda: browser.exists(f'{step("steps[3]")} [data-extra="run.started_at"]'), "the preset drawn")
    assert browser.exists(f'{step("steps[3]")} .wf-branch[data-branch=then] {step("steps[3].then")}[data-kind=exit]')

    add(browser, "steps[3].else[0]", "send")
    browser.select(option("steps[3].else[0]", "channel", "select"), "sms")
    browser.select(option("steps[3].else[0]", "template", "select"), "reactivation_sms")
    browser.select(option("steps[3].else[0]", "purpose", "select"), "marketing")
    add(browser, "steps[3].else[1]", "crm_task")
    browser.fill(option("steps[3].else[1]", "title"), "Позвонить {{ contact.first_name }}")
    browser.fill(option("steps[3].else[1]", "due_in", "input[type=number]"), "2")

    browser.select("#wf-goal-event", "order.created")
    browser.wait(lambda: browser.exists("#wf-goal-within input[type=number]"), "the goal's window")
    browser.fill("#wf-holdout", "10")
    browser.select("#wf-reentry", "never")
    browser.wait(lambda: "crm_task" in browser.find("#workflow-document").get_attribute("value")
                 and "holdout: 10%" in browser.find("#workflow-document").get_attribute("value"),
                 "the text to hold every click")
    browser.wait(lambda: browser.find("#wf-problems").get_attribute("data-state") == "ok", "no problems left")
    browser.click("#wf-save")
    browser.wait(lambda: browser.url.endswith("/workflows/comeback_clicks"), "the workflow's page after saving")
    assert saved(admin_env, "comeback_clicks") == EXPECTED


def test_a_new_workflow_starts_empty_names_itself_from_the_title_and_speaks_plainly(admin_env: AdminEnv, live: str,
                                                                                   browser: Browser) -> None:
    from selenium.webdriver.common.keys import Keys

    sign_in(browser, live, "marketer", "/workflows/new")
    browser.wait(lambda: browser.exists("#wf-title"), "the builder")
    assert browser.find("#wf-title").get_attribute("value") == "" and browser.find("#wf-title").get_attribute(
        "placeholder")
    assert not browser.exists(step("steps[0]"))  # no example step nobody asked for
    problems = browser.wait_text("#wf-problems", "Шаги: добавьте хотя бы один шаг")
    assert browser.text("#wf-problems > p") == "Чтобы сохранить, осталось:"  # a to-do list, not errors
    assert "Запуск: выберите сегмент" in problems and "steps" not in problems

    def document() -> str:
        return str(browser.find("#workflow-document").get_attribute("value"))

    browser.fill("#wf-title", "Весенний возврат")
    browser.wait(lambda: browser.find("#wf-name").get_attribute("value") == "vesenniy_vozvrat", "the name made")
    browser.wait(lambda: "name: vesenniy_vozvrat" in document() and "title: Весенний возврат" in document(),
                 "the text to hold the title and the name")
    title = browser.find("#wf-title")
    title.send_keys(Keys.CONTROL, "a")
    title.send_keys(Keys.BACKSPACE)
    browser.wait(lambda: "title:" not in document() and "name:" not in document(), "a cleared title leaves the text")
    browser.fill("#wf-name", "весна")  # typed in Cyrillic: the message offers the Latin spelling
    browser.wait_text("#wf-problems", "Имя: имя латиницей, например vesna")
    browser.fill("#wf-name", "spring_back")
    browser.fill("#wf-title", "Другое название")  # a name typed by hand stays
    browser.wait(lambda: "title: Другое название" in document(), "the new title in the text")
    assert browser.find("#wf-name").get_attribute("value") == "spring_back"

    add(browser, "steps[0]", "wait")
    browser.wait_text("#wf-problems", "Шаг 1 «Подождать»: укажите, сколько ждать, или до какого времени")
    browser.wait_text(f"{step('steps[0]')} > .node-problems", "Укажите, сколько ждать")

    add(browser, "steps[1]", "crm_task")
    browser.type(option("steps[1]", "title"), "Позвонить ")
    browser.select(f'{step("steps[1]")} [data-option="title"] select.wf-insert', "{{ contact.first_name }}")
    assert browser.find(option("steps[1]", "title")).get_attribute("value") == "Позвонить {{ contact.first_name }}"
    browser.wait(lambda: "Позвонить {{ contact.first_name }}" in document(), "the variable in the text")

    add(browser, "steps[2]", "if")
    browser.wait_text("#wf-problems", "Условие в шаге 3: выберите поле условия")
    head = f"{step('steps[2]')} > .wf-head"
    assert "последний выигранный заказ позже момента входа в сценарий" in browser.text(head)
    browser.click(f"{head} button.wf-preset-bought-since")
    moment = f'{step("steps[2]")} input[type=radio][data-extra="run.started_at"]'
    browser.wait(lambda: browser.exists(moment) and browser.find(moment).is_selected(), "the preset's moment chosen")
    browser.wait(lambda: "value: run.started_at" in document(), "the moment in the text")
    browser.click(f'{step("steps[2]")} input[type=radio][data-extra=""]')  # a date of one's own instead
    assert browser.find(f'{step("steps[2]")} .value-input').is_displayed()
    browser.wait(lambda: "run.started_at" not in document(), "the moment gone from the text")
    browser.wait_text("#wf-problems", "Условие в шаге 3: укажите значение")

    assert browser.text("#workflow-builder .wf-settings > h2") == "Цель и ограничения"
    assert not browser.exists("#workflow-builder .wf-settings.wf-card")
