"""Webhooks out, end to end: real deliveries to a real local receiver that checks signatures as the docs say."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from click.testing import CliRunner
from redis import Redis
from sqlalchemy import select, update

import plugins.gdpr
from hub import consent, dedupe, queue, sync
from hub.db import set_clock, utcnow
from hub.plugins import get_pm
from hub.models import Webhook, WebhookAttempt, WebhookDelivery
from hub.records import ContactRecord
from hub.webhooks import EVENTS, deliver, publish, signing, store, targets
from plugins.gdpr import erasure
from tests.conftest import HubDB
from tests.support.cli import cli

DOCS = Path(__file__).resolve().parents[1] / "docs" / "webhooks.md"


def docs_verify() -> Callable[[str, str, bytes], bool]:
    """The `verify` function of docs/webhooks.md, as a reader would copy it."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Verifying the signature", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None, "docs/webhooks.md lost its Python example"
    assert len(code.group(1).strip().splitlines()) <= 10, "the example promises ten lines"
    scope: dict[str, Any] = {}
    exec(compile(code.group(1), str(DOCS), "exec"), scope)  # our own docs, proven here
    return scope["verify"]


class Receiver:
    """A local HTTP server that answers with the statuses it is given (then 200) and checks each signature."""

    def __init__(self, secret: str = "", answers: list[int] | None = None,
                 on_post: Callable[[], None] | None = None) -> None:
        self.secret = secret
        self.answers = list(answers or [])
        self.on_post = on_post
        self.got: list[dict[str, Any]] = []
        self.verify = docs_verify()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.got.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                     "valid": receiver.verify(receiver.secret, self.headers.get("Hub-Signature", ""),
                                                              body)})
                if receiver.on_post is not None:
                    receiver.on_post()
                code = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(code)
                self.end_headers()
                self.wfile.write(b"nope " * 1000 if code >= 300 else b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/hub?token=abc123secret"

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(g["body"]) for g in self.got]

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def private_allowed(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Receivers here listen on 127.0.0.1: allow loopback, as docs/webhooks.md tells a local receiver to."""
    if "hub_db" in request.fixturenames:
        db: HubDB = request.getfixturevalue("hub_db")
        monkeypatch.setenv("HUB_WEBHOOKS_ALLOW_PRIVATE", "1")
        db.settings = replace(db.settings, extra={**db.settings.extra, "webhooks_allow_private": "1"})


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


@pytest.fixture
def clock() -> Iterator[list[dt.datetime]]:
    now = [dt.datetime.now(dt.timezone.utc)]
    set_clock(lambda: now[0])
    try:
        yield now
    finally:
        set_clock(None)


def add_hook(db: HubDB, r: Receiver, events: list[str]) -> int:
    with db.engine.begin() as conn:
        hook_id, secret = store.add(conn, r.url, events, db.settings.require_secret_key(), actor="tests",
                                    allow_private=True)
    r.secret = secret
    return hook_id


def new_contact(db: HubDB, phone: str) -> int:
    with db.engine.begin() as conn:
        made = sync.write_contacts(conn, [ContactRecord(source="t", external_id=phone, phones=[phone],
                                                        first_name="Анна")], db.settings, sync.Counts())
    assert made.contact_ids[0] is not None
    return made.contact_ids[0]


def rows(db: HubDB, table: Any) -> list[Any]:
    with db.engine.connect() as conn:
        return list(conn.execute(select(table).order_by(table.c.id)))


deliveries_t, attempts_t, webhooks_t = WebhookDelivery.__table__, WebhookAttempt.__table__, Webhook.__table__


def run_cli(*args: str, code: int = 0, language: str | None = None) -> Any:
    result = CliRunner().invoke(cli, list(args), env={"HUB_LANGUAGE": language} if language else None)
    assert result.exit_code == code, result.output
    return result


# --- the docs' example ---------------------------------------------------------------------

def test_the_docs_example_accepts_hubs_signature_and_refuses_forgeries() -> None:
    verify = docs_verify()
    body = b'{"id":"evt_1"}'
    now = int(dt.datetime.now(dt.timezone.utc).timestamp())
    good = signing.sign("s3cret-s3cret-s3cret", now, body)
    assert verify("s3cret-s3cret-s3cret", good, body)
    assert not verify("another-secret-here", good, body)
    assert not verify("s3cret-s3cret-s3cret", good, body + b" ")
    assert not verify("s3cret-s3cret-s3cret", signing.sign("s3cret-s3cret-s3cret", now - 301, body), body)
    assert not verify("s3cret-s3cret-s3cret", "garbage", body)
    assert not verify("s3cret-s3cret-s3cret", "t=abc,v1=00", body)
    assert signing.verify("s3cret-s3cret-s3cret", good, body, now)


# --- the command line ----------------------------------------------------------------------

def test_cli_adds_lists_and_removes_with_the_url_redacted(hub_db: HubDB) -> None:
    url = "https://user:pass-word@shop.example/hooks/a1b2c3d4e5f6?token=topsecret"
    added = run_cli("webhooks", "add", url, "--events", "segment.entered,promo.redeemed", language="en")
    secret = re.search(r"whsec_\S+", added.output)
    assert secret is not None and "Added webhook 1" in added.output
    # The secret is random text: take it out before looking for the URL's parts, which it could hold by chance.
    shown = added.output.replace(secret.group(0), "whsec_…")
    assert "topsecret" not in shown and "a1b2c3d4e5f6" not in shown and "pass-word" not in shown
    listed = json.loads(run_cli("webhooks", "list", "--json").stdout)
    assert listed[0]["url"] == "https://***@shop.example/hooks/***?token=***"
    assert listed[0]["events"] == ["segment.entered", "promo.redeemed"] and listed[0]["enabled"] is True
    with hub_db.engine.connect() as conn:
        assert store.secret_of(conn, 1, hub_db.settings.require_secret_key()) == secret.group(0)
        assert secret.group(0).encode() not in conn.execute(select(webhooks_t.c.secret)).scalar_one()
    human = run_cli("webhooks", "list")
    assert "topsecret" not in human.output and "segment.entered" in human.output
    own = run_cli("webhooks", "add", "http://127.0.0.1:9/x", "--events", "message.sent", "--secret",
                  "my-own-secret-1234")  # loopback: allowed by HUB_WEBHOOKS_ALLOW_PRIVATE (private_allowed)
    assert "my-own-secret-1234" not in own.output
    assert "Вебхук 1 удалён" in run_cli("webhooks", "remove", "1").output
    assert [h["id"] for h in json.loads(run_cli("webhooks", "list", "--json").stdout)] == [2]
    run_cli("webhooks", "remove", "1", code=1)


@pytest.mark.parametrize("url, events, words", [
    ("ftp://shop.example/x", "message.sent", "http"),
    ("https:///nohost", "message.sent", "host"),
    ("https://shop.example/x", "message.sent,segment.enterd", "segment.enterd"),
    ("https://shop.example/x", ",", "choose"),
    ("https://shop.example/x y", "message.sent", "spaces"),
    ("https://shop.example:99999/x", "message.sent", "not a valid URL"),
])
def test_cli_refuses_bad_urls_and_events_naming_them(hub_db: HubDB, url: str, events: str, words: str) -> None:
    out = run_cli("webhooks", "add", url, "--events", events, code=1, language="en").output
    assert words in out and "Traceback" not in out
    if "enterd" in words:
        assert all(e in out for e in EVENTS)


def test_cli_refuses_a_short_secret_and_speaks_russian(hub_db: HubDB) -> None:
    out = run_cli("webhooks", "add", "https://shop.example/x", "--events", "message.sent", "--secret", "short",
                  code=1).output
    assert "секрет" in out.lower()
    assert "Вебхуков пока нет" in run_cli("webhooks", "list").output
    assert "Доставок пока нет" in run_cli("webhooks", "deliveries").output
    assert "Использование" in run_cli("webhooks", "add", "--help").output


# --- real deliveries -----------------------------------------------------------------------

def test_segment_changes_are_delivered_signed_in_chunks(hub_db: HubDB, receiver: Receiver) -> None:
    add_hook(hub_db, receiver, ["segment.entered", "segment.exited"])
    with hub_db.engine.begin() as conn:
        get_pm().hook.segment_changed(conn=conn, segment="vip", entered=list(range(1, 2501)), exited=[7])
    queue.drain(timeout=60)
    got = receiver.events()
    assert len(got) == 4 and all(g["valid"] for g in receiver.got)
    entered = [e for e in got if e["type"] == "segment.entered"]
    assert sorted(len(e["data"]["contact_ids"]) for e in entered) == [500, 1000, 1000]
    assert sorted(i for e in entered for i in e["data"]["contact_ids"]) == list(range(1, 2501))
    assert [e["data"] for e in got if e["type"] == "segment.exited"] == [{"segment": "vip", "contact_ids": [7]}]
    first = receiver.got[0]
    assert first["headers"]["Content-Type"] == "application/json"
    assert first["headers"]["Hub-Event-Id"] == json.loads(first["body"])["id"].strip()
    assert first["headers"]["Hub-Event-Type"] in ("segment.entered", "segment.exited")
    assert first["path"] == "/hooks/hub?token=abc123secret"
    assert {d.status for d in rows(hub_db, deliveries_t)} == {"delivered"}
    assert [a.status_code for a in rows(hub_db, attempts_t)] == [200] * 4


def test_a_rolled_back_change_sends_nothing_and_unsubscribed_events_are_not_written(
        hub_db: HubDB, receiver: Receiver) -> None:
    add_hook(hub_db, receiver, ["message.sent"])
    with pytest.raises(RuntimeError), hub_db.engine.begin() as conn:
        publish(conn, "message.sent", {"message_id": 1})
        raise RuntimeError("the change failed")
    with hub_db.engine.begin() as conn:
        assert publish(conn, "segment.entered", {"segment": "x", "contact_ids": [1]}) == 0
    queue.drain(timeout=60)
    assert receiver.got == [] and rows(hub_db, deliveries_t) == []
    with pytest.raises(ValueError):
        with hub_db.engine.begin() as conn:
            publish(conn, "no.such.event", {})


def test_consent_and_merge_events_carry_ids_not_personal_data(hub_db: HubDB, receiver: Receiver) -> None:
    add_hook(hub_db, receiver, ["consent.changed", "contact.merged"])
    a, b = new_contact(hub_db, "+79161234567"), new_contact(hub_db, "+79167654321")
    with hub_db.engine.begin() as conn:
        consent.record(conn, a, "sms", "marketing", "granted", source="form", evidence={"ip": "10.0.0.1"})
    dedupe.merge_by_hand(hub_db.engine, a, b, actor="tests", settings=hub_db.settings)
    queue.drain(timeout=60)
    by_type = {e["type"]: e for e in receiver.events()}
    assert by_type["consent.changed"]["data"] == {"contact_id": a, "channel": "sms", "purpose": "marketing",
                                                 "status": "granted", "source": "form"}
    assert by_type["contact.merged"]["data"]["survivor_id"] == a
    assert by_type["contact.merged"]["data"]["merged_id"] == b
    raw = b"".join(g["body"] for g in receiver.got)
    assert b"9161234567" not in raw and "Анна".encode() not in raw and b"10.0.0.1" not in raw
    assert all(g["valid"] for g in receiver.got)


def test_retries_with_back_off_until_the_receiver_answers(hub_db: HubDB, clock: list[dt.datetime]) -> None:
    with Receiver(answers=[500, 503]) as r:
        hook_id = add_hook(hub_db, r, ["message.sent"])
        with hub_db.engine.begin() as conn:
            publish(conn, "message.sent", {"message_id": 5, "contact_id": None})
        queue.drain(timeout=60)
        [d] = rows(hub_db, deliveries_t)
        assert d.status == "pending" and d.attempts == 1 and d.last_status_code == 500
        assert d.last_error == "HTTP 500"  # what a receiver inside the network answers is not kept
        wait = d.next_attempt_at - clock[0]
        assert dt.timedelta(seconds=15) <= wait <= dt.timedelta(seconds=45)
        assert rows(hub_db, webhooks_t)[0].failing_since == clock[0]
        assert deliver.sweep(hub_db.engine, hub_db.settings)["enqueued"] == 0  # not due yet
        clock[0] += dt.timedelta(minutes=1)
        assert deliver.sweep(hub_db.engine, hub_db.settings)["enqueued"] == 1
        queue.drain(timeout=60)
        clock[0] += dt.timedelta(minutes=5)
        deliver.sweep(hub_db.engine, hub_db.settings)
        queue.drain(timeout=60)
        [d] = rows(hub_db, deliveries_t)
        assert d.status == "delivered" and d.attempts == 3
        assert [a.status_code for a in rows(hub_db, attempts_t)] == [500, 503, 200]
        assert len(r.got) == 3 and all(g["valid"] for g in r.got)
        assert len({g["headers"]["Hub-Event-Id"] for g in r.got}) == 1  # the same event, retried
        assert rows(hub_db, webhooks_t)[0].failing_since is None  # a success resets it
        out = run_cli("webhooks", "deliveries", str(hook_id), "--json")
        [shown] = json.loads(out.stdout)
        assert [a["status_code"] for a in shown["attempt_log"]] == [500, 503, 200]
        assert "abc123secret" not in run_cli("webhooks", "deliveries").output


def test_no_answer_is_retried_and_the_error_names_no_url(hub_db: HubDB) -> None:
    with Receiver() as r:
        dead = f"http://127.0.0.1:{r.server.server_address[1]}/x?token=abc123secret"
    with hub_db.engine.begin() as conn:
        store.add(conn, dead, ["message.sent"], hub_db.settings.require_secret_key(), allow_private=True)
        publish(conn, "message.sent", {"message_id": 1})
    queue.drain(timeout=60)
    [a] = rows(hub_db, attempts_t)
    assert a.status_code is None and a.error == "connection failed"
    assert rows(hub_db, deliveries_t)[0].status == "pending"


@contextlib.contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A loopback HTTP server answering with `handler`, its base URL, stopped after the block."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_a_redirect_to_another_host_is_not_followed(hub_db: HubDB, receiver: Receiver) -> None:
    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("Location", receiver.url.replace("127.0.0.1", "localhost"))
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Redirect) as base:
        with hub_db.engine.begin() as conn:
            store.add(conn, base + "/r", ["message.sent"], hub_db.settings.require_secret_key(), allow_private=True)
            publish(conn, "message.sent", {"message_id": 1})
        queue.drain(timeout=60)
    assert receiver.got == []
    [a] = rows(hub_db, attempts_t)
    assert a.status_code == 307 and "redirect not followed" in a.error


def test_a_day_of_failures_switches_the_webhook_off_with_a_notice(hub_db: HubDB,
                                                                  clock: list[dt.datetime]) -> None:
    with Receiver(answers=[500] * 100) as r:
        hook_id = add_hook(hub_db, r, ["message.sent"])
        with hub_db.engine.begin() as conn:
            publish(conn, "message.sent", {"message_id": 1})
        queue.drain(timeout=60)
        for _hour in range(23):
            clock[0] += dt.timedelta(hours=1)
            deliver.sweep(hub_db.engine, hub_db.settings)
            queue.drain(timeout=60)
        assert rows(hub_db, webhooks_t)[0].enabled
        clock[0] += dt.timedelta(hours=1, minutes=1)
        done = deliver.sweep(hub_db.engine, hub_db.settings)
        queue.drain(timeout=60)
        assert done["switched_off"] == 1 and done["given_up"] == 1
        [hook] = rows(hub_db, webhooks_t)
        assert not hook.enabled and hook.disabled_at == clock[0] and hook.disabled_reason
        [d] = rows(hub_db, deliveries_t)
        assert d.status == "failed" and d.attempts >= 12  # about one a sweep here, hourly
        tried = len(r.got)
        with hub_db.engine.begin() as conn:  # switched off: nothing more is written or sent
            assert publish(conn, "message.sent", {"message_id": 2}) == 0
        clock[0] += dt.timedelta(hours=2)
        deliver.sweep(hub_db.engine, hub_db.settings)
        queue.drain(timeout=60)
        assert len(r.got) == tried
        listed = json.loads(run_cli("webhooks", "list", "--json").stdout)[0]
        assert listed["enabled"] is False and listed["disabled_reason"]
        human = run_cli("webhooks", "list", language="en").output
        assert "SWITCHED OFF" in human and f"hub webhooks enable {hook_id}" in human
        assert "ВЫКЛЮЧЕН" in run_cli("webhooks", "list").output
        run_cli("webhooks", "enable", str(hook_id))
        [hook] = rows(hub_db, webhooks_t)
        assert hook.enabled and hook.failing_since is None and hook.disabled_at is None


def test_a_success_within_the_day_keeps_the_webhook_on(hub_db: HubDB, clock: list[dt.datetime]) -> None:
    with Receiver(answers=[500] * 3) as r:
        add_hook(hub_db, r, ["message.sent"])
        with hub_db.engine.begin() as conn:
            publish(conn, "message.sent", {"message_id": 1})
        queue.drain(timeout=60)
        for _hour in range(20):
            clock[0] += dt.timedelta(hours=1)
            deliver.sweep(hub_db.engine, hub_db.settings)
            queue.drain(timeout=60)
        clock[0] += dt.timedelta(hours=10)
        assert deliver.sweep(hub_db.engine, hub_db.settings)["switched_off"] == 0
        assert rows(hub_db, webhooks_t)[0].enabled


def test_a_sweep_sends_what_was_never_enqueued(hub_db: HubDB, receiver: Receiver, monkeypatch: Any) -> None:
    add_hook(hub_db, receiver, ["message.sent"])
    with monkeypatch.context() as m:
        m.setattr(deliver, "enqueue_uids", lambda uids, settings=None: 0)  # the process died after the commit
        with hub_db.engine.begin() as conn:
            publish(conn, "message.sent", {"message_id": 1})
        queue.drain(timeout=60)
    assert receiver.got == []
    assert deliver.sweep(hub_db.engine, hub_db.settings)["enqueued"] == 1
    queue.drain(timeout=60)
    assert len(receiver.got) == 1 and receiver.got[0]["valid"]
    assert deliver.sweep(hub_db.engine, hub_db.settings)["enqueued"] == 0  # delivered: not again


def test_the_sweep_is_a_schedule(hub_db: HubDB) -> None:
    from hub import schedule

    assert schedule.schedules(hub_db.settings)["webhooks"].every == dt.timedelta(minutes=1)


def test_erasure_in_between_strips_pending_deliveries(hub_db: HubDB, plugin_manager: Any,
                                                      clock: list[dt.datetime]) -> None:
    plugin_manager.register(plugins.gdpr, name="gdpr")
    with Receiver(answers=[500, 500]) as r:
        add_hook(hub_db, r, ["message.sent", "consent.changed", "contact.merged", "contact.erased"])
        a, b = new_contact(hub_db, "+79161112233"), new_contact(hub_db, "+79164445566")
        with hub_db.engine.begin() as conn:
            publish(conn, "message.sent", {"message_id": 9, "contact_id": b, "template": "birthday",
                                           "channel": "sms"}, contact_id=b)
        queue.drain(timeout=60)  # one failed attempt: still pending
        dedupe.merge_by_hand(hub_db.engine, a, b, actor="tests", settings=hub_db.settings)
        queue.drain(timeout=60)  # the merge's event fails too
        erasure.erase(hub_db.engine, hub_db.settings, a, actor="tests")
        queue.drain(timeout=60)
        about = {d.event: d for d in rows(hub_db, deliveries_t)}
        assert about["message.sent"].payload["data"] == {"contact_id": b}  # moved to the survivor, stripped: b's
        assert about["contact.merged"].payload["data"] == {"contact_id": a}
        assert about["contact.erased"].payload["data"] == {"contact_id": a}
        clock[0] += dt.timedelta(minutes=5)
        deliver.sweep(hub_db.engine, hub_db.settings)
        queue.drain(timeout=60)
        sent = [e for e in r.events() if e["type"] == "message.sent"]
        assert sent[-1]["data"] == {"contact_id": b} and all(g["valid"] for g in r.got)
        assert b"birthday" not in r.got[-1]["body"]


def test_promo_redemption_is_published(hub_db: HubDB, receiver: Receiver, plugin_manager: Any) -> None:
    import workflows
    from workflows import promo
    from workflows.models import PromoCode

    plugin_manager.register(workflows, name="workflows")
    add_hook(hub_db, receiver, ["promo.redeemed"])
    contact = new_contact(hub_db, "+79160001122")
    with hub_db.engine.begin() as conn:
        conn.execute(PromoCode.__table__.insert().values(code="HUB-TEST1", discount=10, contact_id=contact,
                                                         created_at=utcnow(),
                                                         expires_at=utcnow() + dt.timedelta(days=3)))
    promo.redeem(hub_db.engine, "hub-test1")
    queue.drain(timeout=60)
    [event] = receiver.events()
    assert event["type"] == "promo.redeemed" and event["data"]["contact_id"] == contact
    assert event["data"]["code"] == "HUB-TEST1" and receiver.got[0]["valid"]


def test_a_bounce_is_published(hub_db: HubDB, receiver: Receiver) -> None:
    from hub.messaging.channels import Outgoing
    from hub.messaging.dispatcher import record_bounce

    add_hook(hub_db, receiver, ["message.bounced"])
    contact = new_contact(hub_db, "+79163334455")
    message = Outgoing(id=77, contact_id=contact, channel="email", address="anna@example.com", purpose="marketing",
                       subject="s", text="b", html=None, template=None, key="k")
    with hub_db.engine.begin() as conn:
        record_bounce(conn, hub_db.settings, message, "550 anna@example.com: no such user")
    queue.drain(timeout=60)
    [event] = receiver.events()
    assert event["data"] == {"message_id": 77, "contact_id": contact, "channel": "email", "reason": "bounce"}
    assert b"anna@" not in receiver.got[0]["body"]


# --- the RQ path ---------------------------------------------------------------------------

def test_deliveries_go_through_rq_workers(hub_db: HubDB, redis_url: str, receiver: Receiver,
                                          monkeypatch: Any) -> None:
    Redis.from_url(redis_url).flushdb()
    monkeypatch.setenv("HUB_REDIS_URL", redis_url)
    settings = replace(hub_db.settings, redis_url=redis_url)
    add_hook(hub_db, receiver, ["segment.entered"])
    with hub_db.engine.begin() as conn:
        publish(conn, "segment.entered", {"segment": "vip", "contact_ids": [1, 2]})
        publish(conn, "segment.entered", {"segment": "vip", "contact_ids": [3]})
    queue.drain(timeout=60)
    assert receiver.got == []  # enqueued on RQ after the commit, waiting for a worker
    waiting = queue.health(settings)["queues"]
    assert waiting["webhooks"]["queued"] == 1 and waiting["default"]["queued"] == 0  # one job, their own queue
    assert deliver.sweep(hub_db.engine, settings)["enqueued"] == 2  # the same batch, the same job id: not twice
    assert queue.health(settings)["queues"]["webhooks"]["queued"] == 1
    assert "webhooks" in queue.DEFAULT_QUEUES  # what `hub worker` listens to unless told otherwise
    queue.work(settings, queue.DEFAULT_QUEUES, burst=True, simple=True)
    assert len(receiver.got) == 2 and all(g["valid"] for g in receiver.got)
    assert {d.status for d in rows(hub_db, deliveries_t)} == {"delivered"}


def test_a_claimed_delivery_is_not_sent_twice(hub_db: HubDB, receiver: Receiver) -> None:
    add_hook(hub_db, receiver, ["message.sent"])
    with hub_db.engine.begin() as conn:
        publish(conn, "message.sent", {"message_id": 1})
    queue.drain(timeout=60)
    [d] = rows(hub_db, deliveries_t)
    with hub_db.engine.begin() as conn:
        conn.execute(update(deliveries_t).values(status="pending", next_attempt_at=utcnow()))
    assert deliver.attempt(hub_db.engine, hub_db.settings, d.uid) == "delivered"
    assert deliver.attempt(hub_db.engine, hub_db.settings, d.uid) == "delivered"  # already done: no POST
    assert deliver.attempt(hub_db.engine, hub_db.settings, "evt_missing") == "missing"
    assert len(receiver.got) == 2


@pytest.mark.both_databases
def test_a_webhook_removed_during_an_attempt_leaves_nothing_behind(hub_db: HubDB, monkeypatch: Any) -> None:
    def remove() -> None:
        with hub_db.engine.begin() as conn:
            store.remove(conn, 1)

    with Receiver(on_post=remove) as r:
        add_hook(hub_db, r, ["message.sent"])
        with monkeypatch.context() as m:
            m.setattr(deliver, "enqueue_uids", lambda uids, settings=None: 0)  # this test sends it itself
            with hub_db.engine.begin() as conn:
                publish(conn, "message.sent", {"message_id": 1})
        [d] = rows(hub_db, deliveries_t)
        assert deliver.attempt(hub_db.engine, hub_db.settings, d.uid) == "missing"
    assert len(r.got) == 1 and rows(hub_db, deliveries_t) == [] and rows(hub_db, attempts_t) == []


@pytest.mark.both_databases
def test_publish_and_deliver_on_both_databases(hub_db: HubDB, receiver: Receiver) -> None:
    add_hook(hub_db, receiver, ["contact.erased"])
    with hub_db.engine.begin() as conn:
        publish(conn, "contact.erased", {"contact_id": 5}, contact_id=5)
    queue.drain(timeout=60)
    assert receiver.events()[0]["data"] == {"contact_id": 5} and receiver.got[0]["valid"]
    [d] = rows(hub_db, deliveries_t)
    assert d.status == "delivered" and d.delivered_at is not None


def test_redaction_hides_tokens_but_keeps_the_host() -> None:
    assert store.redact("https://a.example/hooks/hub") == "https://a.example/hooks/hub"
    assert store.redact("https://a.example:8443/t/8f14e45fceea167a5a36dedd4bea2543") == "https://a.example:8443/t/***"
    assert store.redact("https://u:p@a.example/?k=v&flag") == "https://***@a.example/?k=***&***"
    assert store.redact("http://[::1]:9/x") == "http://[::1]:9/x"


# --- where webhooks may point ----------------------------------------------------------------

@pytest.mark.parametrize("address, allowed, with_setting", [
    ("169.254.169.254", False, False), ("fe80::1", False, False), ("0.0.0.0", False, False), ("::", False, False),
    ("224.0.0.1", False, False), ("240.0.0.1", False, False), ("255.255.255.255", False, False),
    ("::ffff:169.254.169.254", False, False),
    ("127.0.0.1", False, True), ("127.8.9.10", False, True), ("::1", False, True), ("10.1.2.3", False, True),
    ("172.16.0.1", False, True), ("192.168.1.1", False, True), ("100.64.0.1", False, True),
    ("fc00::1", False, True), ("::ffff:127.0.0.1", False, True),
    ("93.184.216.34", True, True), ("2a00:1450:4010:c05::64", True, True),
])
def test_which_addresses_a_webhook_may_reach(address: str, allowed: bool, with_setting: bool) -> None:
    assert (targets.refusal(address, False) is None) == allowed
    assert (targets.refusal(address, True) is None) == with_setting


@pytest.mark.parametrize("url, always", [
    ("http://169.254.169.254/latest/meta-data", True),
    ("http://[fe80::1]/x", True),
    ("http://0.0.0.0:8080/", True),
    ("http://224.0.0.1/", True),
    ("http://127.0.0.1:6379/", False),
    ("http://localhost:6379/", False),  # a name that resolves to loopback
    ("http://[::1]/x", False),
    ("http://10.0.0.5/admin", False),
    ("http://192.168.1.1/", False),
    ("http://100.64.0.1/", False),
])
def test_the_cli_refuses_internal_addresses_naming_the_setting(hub_db: HubDB, monkeypatch: pytest.MonkeyPatch,
                                                               url: str, always: bool) -> None:
    monkeypatch.delenv("HUB_WEBHOOKS_ALLOW_PRIVATE")
    out = run_cli("webhooks", "add", url, "--events", "message.sent", code=1, language="en").output
    assert "Traceback" not in out
    if always:
        assert "never go there" in out
    else:
        assert "webhooks_allow_private" in out and "HUB_WEBHOOKS_ALLOW_PRIVATE" in out
    monkeypatch.setenv("HUB_WEBHOOKS_ALLOW_PRIVATE", "1")
    again = run_cli("webhooks", "add", url, "--events", "message.sent", code=1 if always else 0, language="en")
    assert ("never go there" in again.output) == always
    assert len(rows(hub_db, webhooks_t)) == (0 if always else 1)


def test_the_refusal_speaks_russian(hub_db: HubDB, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HUB_WEBHOOKS_ALLOW_PRIVATE")
    out = run_cli("webhooks", "add", "http://127.0.0.1:6379/", "--events", "message.sent", code=1).output
    assert "webhooks_allow_private" in out and "внутри" in out


def test_a_delivery_to_an_address_now_refused_is_not_sent(hub_db: HubDB, receiver: Receiver) -> None:
    """The host resolved to a public address when added; at delivery it points inside (DNS rebinding)."""
    add_hook(hub_db, receiver, ["message.sent"])
    refusing = replace(hub_db.settings, extra={})
    with hub_db.engine.begin() as conn:
        publish(conn, "message.sent", {"message_id": 1})
    queue.drain(timeout=60)
    assert len(receiver.got) == 1  # allowed by the setting: sent
    with hub_db.engine.begin() as conn:
        conn.execute(update(deliveries_t).values(status="pending", next_attempt_at=utcnow()))
        uid = conn.execute(select(deliveries_t.c.uid)).scalar_one()
    assert deliver.attempt(hub_db.engine, refusing, uid) == "pending"
    assert len(receiver.got) == 1  # nothing more reached the receiver
    last = rows(hub_db, attempts_t)[-1]
    assert last.status_code is None and last.error == store.ADDRESS_REFUSED
    out = run_cli("webhooks", "deliveries", "--limit", "5", language="en").output
    assert "loopback, private or reserved" in out and "webhooks_allow_private" in out


def test_every_connection_is_checked_before_anything_is_sent(hub_db: HubDB) -> None:
    hits: list[str] = []

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hits.append(self.path)
            self.send_response(307)
            self.send_header("Location", "/again")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    with serving(Redirect) as base:
        url = base + "/r"
        code, error = deliver.post(url, b"{}", {}, allow_private=False)
        assert (code, error) == (None, store.ADDRESS_REFUSED) and hits == []
        assert deliver.post(url, b"{}", {}, allow_private=True) == (None, store.TOO_MANY_REDIRECTS)
        assert len(hits) == deliver.MAX_REDIRECTS + 1  # each hop connected again, and checked


# --- one deadline per attempt ----------------------------------------------------------------

class Trickler:
    """A receiver that answers a byte at a time, forever: per-read timeouts never fire."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.cut = threading.Event()
        trickler = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.wfile.write(b"HTTP/1.1 500 Slow\r\nContent-Length: 100000\r\n")
                if trickler.where == "body":
                    self.wfile.write(b"\r\n")
                drip = b"x" if trickler.where == "body" else b"X"  # a header name that never ends, or a body
                try:
                    for _ in range(600):  # at most a minute: the attempt ends long before
                        self.wfile.write(drip)
                        self.wfile.flush()
                        if trickler.cut.wait(0.1):
                            return
                except OSError:  # the attempt shut its socket
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/slow"

    def close(self) -> None:
        self.cut.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_trickling_receiver_cannot_outlast_the_attempt(hub_db: HubDB, monkeypatch: pytest.MonkeyPatch,
                                                         where: str) -> None:
    assert deliver.TOTAL_S < deliver.LEASE.total_seconds() / 2
    monkeypatch.setattr(deliver, "TOTAL_S", 1.0)  # the real deadline is 30 s; the rule is the same
    if where == "body":  # the snippet of an answer is read from public receivers only: be one
        monkeypatch.setattr(targets, "refusal", lambda address, allow_private: None)
    slow = Trickler(where)
    try:
        with hub_db.engine.begin() as conn:
            store.add(conn, slow.url, ["message.sent"], hub_db.settings.require_secret_key(), allow_private=True)
            publish(conn, "message.sent", {"message_id": 1})
        queue.drain(timeout=60)
    finally:
        slow.close()
    [d] = rows(hub_db, deliveries_t)
    [a] = rows(hub_db, attempts_t)
    assert a.status_code is None and a.error == store.TIMED_OUT and d.status == "pending"


def test_a_public_receivers_answer_is_kept_as_a_short_snippet(hub_db: HubDB, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(targets, "refusal", lambda address, allow_private: None)  # as if 127.0.0.1 were public
    with Receiver(answers=[500]) as r:
        add_hook(hub_db, r, ["message.sent"])
        with hub_db.engine.begin() as conn:
            publish(conn, "message.sent", {"message_id": 1})
        queue.drain(timeout=60)
    [d] = rows(hub_db, deliveries_t)
    assert d.last_error.startswith("nope") and len(d.last_error) <= deliver.SNIPPET


# --- merges and unmerges -----------------------------------------------------------------------

def test_an_unmerge_gives_pending_deliveries_back_and_erasure_strips_exactly_the_persons(
        hub_db: HubDB, plugin_manager: Any) -> None:
    from hub.unmerge import unmerge

    plugin_manager.register(plugins.gdpr, name="gdpr")
    with Receiver(answers=[500] * 50) as r:  # everything stays pending
        add_hook(hub_db, r, ["message.sent"])
        a, b, c = (new_contact(hub_db, p) for p in ("+79161112233", "+79164445566", "+79167778899"))
        with hub_db.engine.begin() as conn:
            for who in (a, b, c):
                publish(conn, "message.sent", {"message_id": who, "contact_id": who, "template": "birthday"},
                        contact_id=who)
        queue.drain(timeout=60)
        first = dedupe.merge_by_hand(hub_db.engine, a, b, actor="tests", settings=hub_db.settings)  # b into a
        second = dedupe.merge_by_hand(hub_db.engine, c, a, actor="tests", settings=hub_db.settings)  # a into c
        queue.drain(timeout=60)
        assert first["survivor"] == a and second["survivor"] == c

        def owner() -> dict[int, int]:
            return {d.payload["data"]["message_id"]: d.contact_id for d in rows(hub_db, deliveries_t)
                    if d.event == "message.sent" and "message_id" in d.payload["data"]}

        assert owner() == {a: c, b: c, c: c}
        with hub_db.engine.connect() as conn:
            merges = {m.merged_id: m.id for m in conn.execute(select(dedupe.identity.merges_t))}
        unmerge(hub_db.engine, hub_db.settings, merges[b], actor="tests")  # b back out of c (through a)
        assert owner() == {a: c, b: b, c: c}
        unmerge(hub_db.engine, hub_db.settings, merges[a], actor="tests")  # a back out of c
        assert owner() == {a: a, b: b, c: c}
        erasure.erase(hub_db.engine, hub_db.settings, b, actor="tests")
        data = {d.contact_id: d.payload["data"] for d in rows(hub_db, deliveries_t) if d.event == "message.sent"}
        assert data[b] == {"contact_id": b}  # stripped
        assert data[a]["template"] == "birthday" and data[c]["template"] == "birthday"  # untouched


def test_erasing_a_survivor_keeps_each_deliverys_own_id(hub_db: HubDB, plugin_manager: Any) -> None:
    plugin_manager.register(plugins.gdpr, name="gdpr")
    with Receiver(answers=[500] * 50) as r:
        add_hook(hub_db, r, ["message.sent"])
        a, b = new_contact(hub_db, "+79161112200"), new_contact(hub_db, "+79164445500")
        with hub_db.engine.begin() as conn:
            for who in (a, b):
                publish(conn, "message.sent", {"message_id": who, "contact_id": who, "template": "t"}, contact_id=who)
        queue.drain(timeout=60)
        dedupe.merge_by_hand(hub_db.engine, a, b, actor="tests", settings=hub_db.settings)
        erasure.erase(hub_db.engine, hub_db.settings, a, actor="tests")
        queue.drain(timeout=60)
    stripped = sorted(d.payload["data"]["contact_id"] for d in rows(hub_db, deliveries_t) if d.event == "message.sent")
    assert stripped == sorted([a, b])


# --- settings, lanes and batches -----------------------------------------------------------------

def test_an_app_with_its_own_settings_delivers_at_once_to_its_own_database(
        hub_db: HubDB, receiver: Receiver, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from hub.admin.app import create_app

    add_hook(hub_db, receiver, ["message.sent"])
    app = create_app(hub_db.settings)
    # This process's environment names another database and another key: the app's settings must win.
    monkeypatch.setenv("HUB_DATABASE_URL", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    monkeypatch.setenv("HUB_SECRET_KEY", "another-key-entirely-0123456789")
    with app.app_context(), hub_db.engine.begin() as conn:
        publish(conn, "message.sent", {"message_id": 1})
    queue.drain(timeout=60)
    assert len(receiver.got) == 1 and receiver.got[0]["valid"]  # at once, not by the sweep
    monkeypatch.setenv("HUB_SECRET_KEY", hub_db.settings.require_secret_key())
    with hub_db.engine.begin() as conn:  # outside an app: the database the connection belongs to
        publish(conn, "message.sent", {"message_id": 2})
    queue.drain(timeout=60)
    assert len(receiver.got) == 2 and {d.status for d in rows(hub_db, deliveries_t)} == {"delivered"}


def test_deliveries_have_a_lane_of_their_own(hub_db: HubDB, receiver: Receiver) -> None:
    """A job holding the ordinary background lane (a slow signup letter) does not hold up deliveries."""
    released = threading.Event()
    receiver.on_post = released.set
    add_hook(hub_db, receiver, ["message.sent"])
    outcome: list[bool] = []
    queue.enqueue(hub_db.settings, lambda: outcome.append(released.wait(60)), background=True)
    with hub_db.engine.begin() as conn:
        publish(conn, "message.sent", {"message_id": 1})
    queue.drain(timeout=120)
    assert outcome == [True] and len(receiver.got) == 1


def test_one_transactions_deliveries_go_out_as_one_job(hub_db: HubDB, receiver: Receiver,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    jobs: list[tuple[Any, ...]] = []
    real = queue.enqueue

    def counted(*args: Any, **kwargs: Any) -> Any:
        jobs.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(queue, "enqueue", counted)
    add_hook(hub_db, receiver, ["segment.entered"])
    with hub_db.engine.begin() as conn:
        for n in range(5):
            publish(conn, "segment.entered", {"segment": "vip", "contact_ids": [n]})
    queue.drain(timeout=60)
    assert len(jobs) == 1 and len(jobs[0][2]) == 5 and len(receiver.got) == 5


# --- who listens: cached, and asked before work nobody hears -----------------------------------

def test_publish_reads_who_listens_at_most_once_a_second(hub_db: HubDB, receiver: Receiver,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import hub.webhooks as webhooks

    statements: list[str] = []
    from sqlalchemy import event as sa_event

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM webhooks" in statement:
            statements.append(statement)

    sa_event.listen(hub_db.engine, "before_cursor_execute", seen)
    monkeypatch.setattr(webhooks, "SUBSCRIPTIONS_TTL_S", 3600.0)
    try:
        webhooks.forget_subscriptions()
        with hub_db.engine.begin() as conn:
            for n in range(100):
                assert publish(conn, "message.sent", {"message_id": n}) == 0
        assert len(statements) == 1  # nobody listens: asked once, not per event
        # A webhook another process adds (a row written behind this process's back) is heard once the cache expires.
        with hub_db.engine.begin() as conn:
            conn.execute(webhooks_t.insert().values(url=receiver.url, events=["message.sent"], secret=b"x",
                                                    created_by="elsewhere", enabled=True, created_at=utcnow()))
            assert publish(conn, "message.sent", {"message_id": 1}) == 0
        monkeypatch.setattr(webhooks, "SUBSCRIPTIONS_TTL_S", 0.0)  # as a second later
        with hub_db.engine.begin() as conn:
            assert publish(conn, "message.sent", {"message_id": 2}) == 1
            conn.execute(deliveries_t.delete())
        monkeypatch.setattr(webhooks, "SUBSCRIPTIONS_TTL_S", 3600.0)
        with hub_db.engine.begin() as conn:
            assert publish(conn, "segment.entered", {"segment": "vip", "contact_ids": [1]}) == 0
        add_hook(hub_db, receiver, ["segment.entered"])  # this process adds one: heard at once
        with hub_db.engine.begin() as conn:
            assert publish(conn, "segment.entered", {"segment": "vip", "contact_ids": [1]}) == 1
    finally:
        sa_event.remove(hub_db.engine, "before_cursor_execute", seen)
        webhooks.forget_subscriptions()


def test_a_segment_refresh_collects_ids_only_when_someone_listens(hub_db: HubDB, receiver: Receiver,
                                                                  plugin_manager: Any) -> None:
    import hub.webhooks as webhooks
    from hub.segments import membership

    def heard() -> bool:
        with hub_db.engine.connect() as conn:
            return membership._heard(conn, plugin_manager)

    webhooks.forget_subscriptions()
    assert not heard()  # only Hub's webhook plugin, and no webhook
    add_hook(hub_db, receiver, ["message.sent"])
    assert not heard()  # a webhook, but not for segments
    add_hook(hub_db, receiver, ["segment.exited"])
    assert heard()
    for hook in rows(hub_db, webhooks_t):
        with hub_db.engine.begin() as conn:
            store.remove(conn, hook.id)
    assert not heard()
    with hub_db.engine.connect() as conn:
        from hub.hookspecs import hookimpl

        class Plugin:
            @hookimpl
            def segment_changed(self, conn: Any, segment: str, entered: list[int], exited: list[int]) -> None:
                pass

        plugin_manager.register(Plugin(), name="listener")
        assert membership._heard(conn, plugin_manager)  # another plugin listens: the ids are collected


# --- growth ------------------------------------------------------------------------------------

def test_the_sweep_prunes_old_finished_deliveries_with_their_attempts(hub_db: HubDB, receiver: Receiver,
                                                                      clock: list[dt.datetime]) -> None:
    add_hook(hub_db, receiver, ["message.sent"])
    with hub_db.engine.begin() as conn:
        publish(conn, "message.sent", {"message_id": 1})  # delivered
    queue.drain(timeout=60)
    def insert(uid: str, status: str) -> None:
        with hub_db.engine.begin() as conn:
            conn.execute(deliveries_t.insert().values(uid=uid, webhook_id=1, event="message.sent", payload={},
                                                      status=status, attempts=1, created_at=clock[0],
                                                      next_attempt_at=clock[0] + dt.timedelta(days=90)))

    insert("evt_failed", "failed")
    clock[0] += dt.timedelta(days=29)
    assert deliver.sweep(hub_db.engine, hub_db.settings)["pruned"] == 0
    clock[0] += dt.timedelta(days=2)
    insert("evt_pending", "pending")  # still being tried: kept whatever the age of the others
    assert deliver.sweep(hub_db.engine, hub_db.settings)["pruned"] == 2
    assert [d.uid for d in rows(hub_db, deliveries_t)] == ["evt_pending"] and rows(hub_db, attempts_t) == []
    short = replace(hub_db.settings, extra={**hub_db.settings.extra, "webhooks_keep_days": "1"})
    assert deliver.keep_days(short) == 1 and deliver.keep_days(hub_db.settings) == deliver.KEEP_DAYS


def test_secrets_are_sealed_through_the_public_pair() -> None:
    from hub import credentials

    sealed = credentials.seal("k" * 32, b"whsec_abc")
    assert b"whsec_abc" not in sealed and credentials.unseal("k" * 32, sealed) == b"whsec_abc"
    with pytest.raises(credentials.CredentialError):
        credentials.unseal("another-key-0123456789", sealed)
    assert "_fernet" not in Path(store.__file__).read_text(encoding="utf-8")
