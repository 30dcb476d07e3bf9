"""Webhooks out, end to end: real deliveries to a real local receiver that checks signatures as the docs say."""

from __future__ import annotations

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
from hub.webhooks import EVENTS, deliver, publish, signing, store
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
        hook_id, secret = store.add(conn, r.url, events, db.settings.require_secret_key(), actor="tests")
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
    url = "https://user:pw@shop.example/hooks/a1b2c3d4e5f6?token=topsecret"
    added = run_cli("webhooks", "add", url, "--events", "segment.entered,promo.redeemed", language="en")
    secret = re.search(r"whsec_\S+", added.output)
    assert secret is not None and "Added webhook 1" in added.output
    assert "topsecret" not in added.output and "a1b2c3d4e5f6" not in added.output and "pw" not in added.output
    listed = json.loads(run_cli("webhooks", "list", "--json").stdout)
    assert listed[0]["url"] == "https://***@shop.example/hooks/***?token=***"
    assert listed[0]["events"] == ["segment.entered", "promo.redeemed"] and listed[0]["enabled"] is True
    with hub_db.engine.connect() as conn:
        assert store.secret_of(conn, 1, hub_db.settings.require_secret_key()) == secret.group(0)
        assert secret.group(0).encode() not in conn.execute(select(webhooks_t.c.secret)).scalar_one()
    human = run_cli("webhooks", "list")
    assert "topsecret" not in human.output and "segment.entered" in human.output
    own = run_cli("webhooks", "add", "http://127.0.0.1:9/x", "--events", "message.sent", "--secret",
                  "my-own-secret-1234")
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
        assert "nope" in d.last_error and len(d.last_error) <= deliver.SNIPPET
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
        store.add(conn, dead, ["message.sent"], hub_db.settings.require_secret_key())
        publish(conn, "message.sent", {"message_id": 1})
    queue.drain(timeout=60)
    [a] = rows(hub_db, attempts_t)
    assert a.status_code is None and a.error == "connection failed"
    assert rows(hub_db, deliveries_t)[0].status == "pending"


def test_a_redirect_to_another_host_is_not_followed(hub_db: HubDB, receiver: Receiver) -> None:
    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("Location", receiver.url.replace("127.0.0.1", "localhost"))
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with hub_db.engine.begin() as conn:
            store.add(conn, f"http://127.0.0.1:{server.server_address[1]}/r", ["message.sent"],
                      hub_db.settings.require_secret_key())
            publish(conn, "message.sent", {"message_id": 1})
        queue.drain(timeout=60)
    finally:
        server.shutdown()
        server.server_close()
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
        assert about["message.sent"].payload["data"] == {"contact_id": a}  # moved to the survivor, then stripped
        assert about["contact.merged"].payload["data"] == {"contact_id": a}
        assert about["contact.erased"].payload["data"] == {"contact_id": a}
        clock[0] += dt.timedelta(minutes=5)
        deliver.sweep(hub_db.engine, hub_db.settings)
        queue.drain(timeout=60)
        sent = [e for e in r.events() if e["type"] == "message.sent"]
        assert sent[-1]["data"] == {"contact_id": a} and all(g["valid"] for g in r.got)
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
    queue.drain(timeout=60)
    assert receiver.got == []  # enqueued on RQ after the commit, waiting for a worker
    assert queue.health(settings)["queues"]["default"]["queued"] == 1
    assert deliver.sweep(hub_db.engine, settings)["enqueued"] == 1  # the same job id: not twice
    assert queue.health(settings)["queues"]["default"]["queued"] == 1
    queue.work(settings, ("default",), burst=True, simple=True)
    assert len(receiver.got) == 1 and receiver.got[0]["valid"]
    assert rows(hub_db, deliveries_t)[0].status == "delivered"


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
