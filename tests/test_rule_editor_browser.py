"""Hub.RuleEditor (static/rule-builder.js), the rule editor the segment page and the workflow builder share.

On the segment page a marketer builds a nested rule (a group inside the
group, a NOT, a move out of the group) and sees the check's problem beside the
condition it is about. A second editor, mounted on the same page the way a
workflow's builder mounts one (its own path, a page's own value for dates),
keeps to its own paths: it places only problems about them, offers the page's
value beside the relative time and stores its code.
"""

from __future__ import annotations

import json
from typing import Any

from tests.browser import Browser
from tests.support.admin_browser import sign_in


def node(path: str) -> str:
    return f'#segment-builder [data-path="{path}"]'


def pick_field(browser: Browser, path: str, search: str, pattern: str) -> None:
    """Open the field picker, search, choose; a click that met a list being redrawn is made again."""
    button, option = f"{node(path)} .field-button", f'{node(path)} .field-option[data-pattern="{pattern}"]'

    def chosen() -> bool:
        if browser.find(button).get_attribute("data-field") == pattern:
            return True
        if not browser.exists(option):  # the picker closed without a choice: open it and search again
            browser.click(button)
            browser.fill(f"{node(path)} .field-search", search)
        browser.click(option)
        return False

    browser.wait(chosen, f"{pattern} to be chosen at {path}")


def test_the_segment_page_builds_a_nested_rule_and_places_problems(live: str, browser: Browser) -> None:
    sign_in(browser, live, "marketer", "/segments/new")
    browser.wait(lambda: browser.find("#check-result").get_attribute("data-state") == "ok", "the example to check")
    browser.find("#document").clear()
    browser.type("#document", "name: nested\nrule:\n  field: contact.city\n  op: eq\n  value: Тула\n")
    browser.wait(lambda: browser.exists(f"{node('rule')}.node-condition"), "a lone condition drawn")

    # A lone condition gains a sibling by becoming a group; a group inside it takes the other kind
    browser.click(f"{node('rule')} > .node-moves .add-condition")
    browser.wait(lambda: browser.exists(node("rule.all[1]")), "the rule turned into a group of two")
    browser.click(f"{node('rule')} > .node-body > .builder-add .add-group")
    browser.wait(lambda: browser.exists(f"{node('rule.all[2]')}.node-any"), "an ИЛИ group inside the И group")
    pick_field(browser, "rule.all[2].any[0]", "город", "contact.city")
    browser.fill(f"{node('rule.all[2].any[0]')} .value-input", "Орёл")
    browser.click(f"{node('rule.all[2].any[0]')} > .node-moves .wrap-not")
    browser.wait(lambda: browser.exists(f"{node('rule.all[2].any[0]')}.node-not"), "the condition under NOT")

    # The empty condition at rule.all[1] is what the check complains about, beside it and not elsewhere
    browser.wait(lambda: browser.text(f"{node('rule.all[1]')} > .node-problems"), "the problem beside rule.all[1]")
    assert "has-problem" in browser.find(node("rule.all[1]")).get_attribute("class")
    assert browser.text(f"{node('rule.all[0]')} > .node-problems") == ""
    assert "rule.all[1]" in browser.text("#check-result")

    # Removing it leaves a rule the check accepts, and the text follows the tree
    browser.click(f"{node('rule.all[1]')} > .node-moves .remove")
    browser.wait(lambda: browser.find("#check-result").get_attribute("data-state") == "ok", "the rule to check")
    text = browser.find("#document").get_attribute("value")
    assert "any:\n    - not:\n        field: contact.city" in text and "value: Орёл" in text, text
    assert not browser.exists("#segment-builder .has-problem")

    # Out of NOT, then out of the inner group: every condition kept
    browser.click(f"{node('rule.all[1].any[0]')} > .node-moves .unwrap-not")
    browser.wait(lambda: browser.exists(f"{node('rule.all[1].any[0]')}.node-condition"), "the NOT removed")
    browser.click(f"{node('rule.all[1].any[0]')} > .node-moves .move-out")
    browser.wait(lambda: browser.exists(f"{node('rule.all[2]')}.node-condition"), "the condition moved out")
    assert browser.find(f"{node('rule.all[2]')} .value-input").get_attribute("value") == "Орёл"
    browser.wait(lambda: "any: []" in browser.find("#document").get_attribute("value"), "the text to follow")

MOUNT = """
var data = JSON.parse(document.getElementById("segment-builder-data").textContent);
var box = document.createElement("div");
box.id = "mounted";
document.getElementById("segment-builder").appendChild(box);
window.ruleChanges = [];
window.mounted = new window.Hub.RuleEditor(box, {
  catalog: data.catalog, texts: data.texts, segments: ["dormant_90d"], path: "steps[3].if",
  extraValues: {date: [{value: "run.started_at", title: "момент входа в сценарий"}]},
  onChange: function (structural) { window.ruleChanges.push(structural); }
});
window.mounted.setRule(arguments[0]);
"""


def rule(browser: Browser) -> Any:
    return browser.script("return JSON.stringify(window.mounted.getRule() === undefined ? null : "
                          "window.mounted.getRule());")


def test_a_mounted_editor_keeps_to_its_path_and_offers_the_pages_values(live: str, browser: Browser) -> None:
    sign_in(browser, live, "marketer", "/segments/new")
    browser.wait(lambda: browser.find("#check-result").get_attribute("data-state") == "ok", "the example to check")
    browser.script(MOUNT, {"kind": "condition", "field": "orders.last_at", "op": "after", "value": "run.started_at"})
    at = '#mounted [data-path="steps[3].if"]'
    check = f'{at} input[type=radio][data-extra="run.started_at"]'
    typed = f'{at} input[type=radio][data-extra=""]'
    # A datetime field is offered the page's date value as a choice beside a typed one; the stored code shows
    # it chosen, the box hidden
    assert browser.find(check).is_selected() and not browser.find(typed).is_selected()
    assert not browser.find(f"{at} .value-input").is_displayed()
    assert "момент входа в сценарий" in browser.text(f"{at} .value-editor")

    browser.click(typed)
    assert not browser.find(check).is_selected()
    assert json.loads(rule(browser)) == {"kind": "condition", "field": "orders.last_at", "op": "after"}
    assert browser.find(f"{at} .value-input").is_displayed()
    browser.fill(f"{at} .value-input", "-7d")
    assert json.loads(rule(browser))["value"] == "-7d"
    browser.click(check)
    assert json.loads(rule(browser))["value"] == "run.started_at"
    assert browser.script("return window.ruleChanges.indexOf(true);") == -1  # values only: nothing structural

    # Only problems about its own paths are placed, the operator or value marked
    assert browser.script('return window.mounted.placeProblem("rule.all[0]: not mine");') is False
    assert browser.script('return window.mounted.placeProblem("steps[3].if.value: <b>too early</b>");') is True
    assert browser.text(f"{at} > .node-problems") == "<b>too early</b>"  # as text, never as HTML
    assert "invalid" in browser.find(f"{at} .value-editor").get_attribute("class")
    browser.script("window.mounted.clearProblems();")
    assert browser.text(f"{at} > .node-problems") == ""

    # A hint by path; within_last is a length, so the page's moment is not offered there
    browser.script('window.mounted.setHints({"steps[3].if.value": "с момента входа"});')
    assert browser.text(f"{at} .value-hint") == "с момента входа"
    browser.select(f"{at} select.op", "within_last")
    browser.wait(lambda: not browser.exists(check), "the page's value gone for a length")
    assert "value" not in json.loads(rule(browser))

    # Emptied, it offers to add; an addition is structural
    browser.script("window.mounted.setRule(undefined);")
    assert rule(browser) == "null"
    browser.click("#mounted .builder-add .add-group")
    assert json.loads(rule(browser)) == {"kind": "all", "items": [{"kind": "condition"}]}
    assert browser.script("return window.ruleChanges[window.ruleChanges.length - 1];") is True
    assert browser.exists('#mounted [data-path="steps[3].if.all[0]"]')
