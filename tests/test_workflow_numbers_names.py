"""Step numbers people read on runs, messages and webhooks; who waits at a wait step; the trial's holdout and
names."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import threading
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, update

from hub.db import utcnow
from hub.models import Message
from tests.conftest import HubDB
from tests.support.admin import AdminEnv, admin_env  # noqa: F401
from tests.support.cli import cli
from tests.support.shop import Person, make_shop, runs_of, start, use_workflows
from workflows import measure, runner, store, trial, triggers
from workflows.models import WorkflowRun

pytestmark = pytest.mark.both_databases


class Receiver:
    """A real HTTP server on loopback that answers webhooks from a script and keeps what it got."""

    def __init__(self) -> None:
        self.got: list[dict[str, Any]] = []
        self.answers: list[int] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers["Content-Length"])
                receiver.got.append(json.loads(self.rfile.read(size)))
                self.send_response(receiver.answers.pop(0) if receiver.answers else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def numbered(url: str) -> dict[str, Any]:
    """An if/then/else early on: the hidden jump after `then` is instruction 3, so index + 1 skips a number."""
    return {"name": "numbered", "title": "Numbered", "trigger": {"segment": "dormant_90d"}, "holdout": "0%",
            "steps": [{"promo_code": {"discount": "5%", "valid_for": "14d"}},                      # 1 (index 0)
                      {"if": {"field": "orders.last_at", "op": "after", "value": "run.started_at"},  # 2 (1)
                       "then": "exit",                                                          # 3 (2); jump (3)
                       "else": {"send": {"channel": "email", "template": "reactivation_email",
                                         "purpose": "marketing"}}},                             # 4 (4)
                      {"webhook": {"url": url}},                                                # 5 (5)
                      {"wait": "2d"},                                                           # 6 (6)
                      {"send": {"channel": "sms", "template": "reactivation_sms", "purpose": "marketing"}}]}


@pytest.fixture
def wf(hub_db: HubDB, plugin_manager: Any, monkeypatch: pytest.MonkeyPatch) -> HubDB:
    return use_workflows(hub_db, plugin_manager, monkeypatch)


def a_morning() -> dt.datetime:
    return (utcnow() - dt.timedelta(days=30)).replace(hour=8, minute=0, second=0, microsecond=0)


def test_runs_messages_and_webhooks_carry_the_number_people_read(wf: HubDB) -> None:
    receiver = Receiver()
    t0 = a_morning()
    ids = make_shop(wf, [Person("anna", "Анна", "+74951110001", "anna@example.ru"),
                         Person("gleb", "Глеб", "+74951110004", "gleb@example.ru")], now=t0)
    with wf.engine.begin() as conn:
        store.install_library(conn)
        workflow, _ = store.add(conn, wf.settings, numbered(receiver.url), by="cli")
    assert [workflow.number(i.index) for i in workflow.steps()] == [1, 2, 3, 4, 5, 6, 7]
    jump = workflow.instruction(3)
    assert jump is not None and not jump.recorded  # the hidden jump
    receiver.answers = [200, 400]  # the first run's webhook goes through; the second's is refused for good
    start(wf, "numbered", t0)
    try:
        got = receiver.got
        assert [p["step"] for p in got] == [5, 5]  # the webhook is step 5 (its index + 1 would say 6)
    finally:
        receiver.server.shutdown()
    with wf.engine.connect() as conn:
        email = conn.execute(select(Message.meta).where(Message.channel == "email")).scalars().all()
    assert [m["step"] for m in email] == [4, 4]  # the letter is step 4, the message log says «шаг 4»
    runs = {r.contact_id: r for r in runs_of(wf, "numbered")}
    parked_id = next(cid for cid, r in runs.items() if r.status == "parked")
    with wf.engine.connect() as conn:
        (parked,) = runner.parked(conn, wf.settings, "numbered")
        mine = runner.runs_for_contact(conn, wf.settings, parked_id)
    assert parked["step"] == 5 and parked["index"] == 5 + 0 and parked["contact_id"] == parked_id
    assert mine[0]["step"] == 5
    out = CliRunner().invoke(cli, ["workflows", "parked", "numbered"])
    assert out.exit_code == 0 and "5" in out.output and "6)" not in out.output
    assert json.loads(CliRunner().invoke(cli, ["workflows", "parked", "--json"]).output)[0]["step"] == 5
    # The waiting run stands at the SMS (index 7) with its wait's end ahead: the funnel counts it at the wait.
    waiting = next(r for r in runs.values() if r.status == "waiting")
    assert waiting.step == 7 and waiting.next_at == t0 + dt.timedelta(days=2)
    with wf.engine.connect() as conn:
        (run,) = runner.runs_for_contact(conn, wf.settings, waiting.contact_id)
    assert run["step"] == 7 and run["index"] == 7  # after the jump the numbers meet again
    report = measure.status(wf.engine, wf.settings, "numbered")
    rows = {s["step"]: s for s in report["steps"]}
    assert rows[6]["kind"] == "wait" and rows[6]["waiting"] == 1 == report["runs"]["waiting"]
    assert "waiting" not in rows[7] and rows[7]["queued"] == 0
    assert ids  # both people entered


def test_a_run_on_an_older_version_is_numbered_on_its_own_version(wf: HubDB) -> None:
    t0 = a_morning()
    make_shop(wf, [Person("anna", "Анна", "+74951110001", "anna@example.ru")], now=t0)
    first = {"name": "older", "trigger": {"segment": "dormant_90d"}, "holdout": "0%",
             "steps": [{"wait": "3d"}, {"tag": "later"}]}
    with wf.engine.begin() as conn:
        store.install_library(conn)
        store.add(conn, wf.settings, first, by="cli")
    start(wf, "older", t0)
    (run,) = runs_of(wf, "older")
    assert run.status == "waiting" and run.step == 1 and run.version == 1
    # Version 2 puts an if/then/else in front: the run stays on version 1, at its step 2.
    second = dict(first, steps=[{"if": {"field": "orders.last_at", "op": "after", "value": "run.started_at"},
                                 "then": "exit", "else": {"tag": "checked"}}, *first["steps"]])
    with wf.engine.begin() as conn:
        newer, _ = store.add(conn, wf.settings, second, by="cli")
        assert store.row(conn, "older").version == 2
    assert newer.number(1 + 3) == 4  # the wait is step 4 in version 2 (index 4)
    with wf.engine.connect() as conn:
        (shown,) = runner.runs_for_contact(conn, wf.settings, run.contact_id)
        assert shown["step"] == 2
        # a version that no longer parses (a step kind whose plugin is gone) falls back to index + 1
        from workflows.models import WorkflowVersion

    with wf.engine.begin() as conn:
        conn.execute(update(WorkflowVersion.__table__).where(WorkflowVersion.version == 1).values(
            definition={**first, "steps": [{"wait": "3d"}, {"gone_plugin_step": {}}]}))
    with wf.engine.connect() as conn:
        (fallback,) = runner.runs_for_contact(conn, wf.settings, run.contact_id)
    assert fallback["step"] == 2
    # The funnel of version 2 counts the version-1 run at the wait numbered like its own (step 1 there, none
    # here): it is not attributed to a step it never saw.
    report = measure.status(wf.engine, wf.settings, "older")
    assert sum(s.get("waiting", 0) for s in report["steps"]) == 0 and report["runs"]["waiting"] == 1


def test_the_detail_page_and_the_contact_card_show_the_numbers(admin_env: AdminEnv) -> None:  # noqa: F811
    from tests.support.admin import client_as, plain, text

    t0 = utcnow() - dt.timedelta(hours=1)
    with admin_env.engine.begin() as conn:
        store.install_library(conn)
        workflow, _ = store.add(conn, admin_env.settings, numbered("http://127.0.0.1:9/hook"), by="cli")
        row = store.row(conn, "numbered")
        # a run parked at the webhook (index 5) and one waiting out the wait (standing at index 7)
        for cid, step, status, next_at in ((admin_env.ids["anna"], 5, "parked", None),
                                           (admin_env.ids["petrov_1"], 7, "waiting", t0 + dt.timedelta(days=2))):
            conn.execute(WorkflowRun.__table__.insert().values(
                workflow_id=row.id, version=row.version, contact_id=cid, cycle=1, status=status, holdout=False,
                step=step, next_at=next_at, attempts=0, error="refused" if status == "parked" else None,
                trigger="segment", context={}, started_at=t0, updated_at=t0))
    viewer = client_as(admin_env, "viewer")
    page = viewer.get("/workflows/numbered")
    assert page.status_code == 200
    html = text(page)
    parked = html[html.index('id="parked"'):]
    assert "<td>5</td>" in parked and "<td>6</td>" not in parked[:parked.index("</table>")]
    steps = html[html.index('id="steps"'):html.index("</table>", html.index('id="steps"'))]
    wait_row = next(r for r in steps.split("<tr>") if r.strip().startswith("<td>6."))
    assert 'title="Запуски, которые сейчас ждут на этом шаге">1<' in wait_row
    card = plain(viewer.get(f"/contacts/{admin_env.ids['anna']}"))
    assert "Numbered" in card or "numbered" in card
    runs = text(viewer.get(f"/contacts/{admin_env.ids['anna']}"))
    part = runs[runs.index("numbered"):]
    assert "<td>5</td>" in part[:part.index("</tr>")]


def test_the_holdout_trace_offers_what_the_others_get(wf: HubDB) -> None:
    now = utcnow().replace(hour=8, minute=0, second=0, microsecond=0)
    ids = make_shop(wf, [Person(f"p{i}", "Вера", f"+7964990{i:04d}", f"p{i}@example.ru") for i in range(30)],
                    now=now)
    held = next(k for k in ids if triggers.in_holdout_name("reactivation_90d", ids[k], 10))
    plain_report = trial.trial(wf.engine, wf.settings, "reactivation_90d", ids[held], now=now)
    assert plain_report["steps"] == [] and plain_report["as_treated"] is False
    shown = trial.trial(wf.engine, wf.settings, "reactivation_90d", ids[held], now=now, as_treated=True)
    assert shown["as_treated"] is True and shown["entry"]["holdout"]  # the entry still says the truth
    steps = {s["step"]: s for s in shown["steps"] if s.get("step")}
    assert steps[2]["outcome"] == "sent" and steps[2]["address"] == f"{held}@example.ru"
    # The SMS goes to a phone written as people read it, not +7964990…
    assert steps[6]["outcome"] == "sent" and steps[6]["address"].startswith("+7964990")
    assert "+7 964 990-" in steps[6]["text"] and steps[6]["address"] not in steps[6]["text"]
    treated = next(k for k in ids if not triggers.in_holdout_name("reactivation_90d", ids[k], 10))
    assert trial.trial(wf.engine, wf.settings, "reactivation_90d", ids[treated], now=now,
                       as_treated=True)["as_treated"] is False  # only a holdout person is shown "as if"


def test_the_try_page_for_a_holdout_person_and_the_search_by_patronymic(admin_env: AdminEnv) -> None:  # noqa: F811
    from tests.support.admin import client_as, plain, post, text
    from hub.models import Contact

    with admin_env.engine.begin() as conn:
        conn.execute(update(Contact.__table__).where(Contact.id == admin_env.ids["anna"])
                     .values(middle_name="Владимировна"))
    viewer = client_as(admin_env, "viewer")
    found = viewer.get("/workflows/reactivation_90d/try", query_string={"q": "Владимир"})
    assert found.status_code == 200
    listed = plain(found)
    assert "Владимировна" in listed  # the patronymic that matched is shown
    one = viewer.get("/workflows/reactivation_90d/try", query_string={"q": "anna@"})
    assert "anna@example.ru" in plain(one)
    # A copy of reactivation_90d under a name whose holdout draw (a hash of name and contact) takes Anna.
    name = next(f"winback_{i}" for i in range(1000) if triggers.in_holdout_name(f"winback_{i}", admin_env.ids["anna"],
                                                                                 10))
    with admin_env.engine.begin() as conn:
        store.install_library(conn)
        store.add(conn, admin_env.settings, dict(store.current(conn, admin_env.settings, "reactivation_90d")[1]
                                                 .document, name=name), by="cli")
    held = admin_env.ids["anna"]
    page = viewer.get(f"/workflows/{name}/try", query_string={"contact": held})
    assert page.status_code == 200 and 'id="try-holdout"' in text(page) and 'id="try-as-treated"' in text(page)
    assert "Показать, что получили бы остальные" in plain(page) and "trace-step" not in text(page)
    treated = viewer.get(f"/workflows/{name}/try", query_string={"contact": held, "as_treated": "1"})
    body = text(treated)
    assert treated.status_code == 200 and 'id="try-as-treated-note"' in body and 'data-outcome="sent"' in body
    assert "ничего из этого не получит" in plain(treated) and 'id="try-holdout-only"' in body
    frame = next(part.split('"')[0] for part in body.split('src="')[1:] if "/try/letter" in part)
    assert "as_treated=1" in frame
    letter = viewer.get(frame.replace("&amp;", "&"))
    assert letter.status_code == 200 and "Анна" in text(letter)
    assert viewer.get(frame.replace("&amp;", "&").replace("as_treated=1", "as_treated=0")).status_code == 404
    forged = viewer.get(f"/workflows/{name}/try", query_string={"contact": held, "as_treated": "<x>"})
    assert forged.status_code == 200 and 'id="try-as-treated-note"' not in text(forged)
    post(viewer, "/language", {"language": "en"})
    english = plain(viewer.get(f"/workflows/{name}/try", query_string={"contact": held, "as_treated": "1"}))
    assert "This person is in the holdout and gets none of it." in english
