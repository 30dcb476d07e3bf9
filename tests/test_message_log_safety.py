"""The message log reads without side effects and names things as people know them.

A letter as it went out carries the person's own signed links and may carry
a tracking pixel: in the log its links are inert and remote images load only
on request. Settling a message and its audit record are one transaction;
opening the review page changes no status; workflows and campaigns appear by
their titles, as their plugin names them; one view costs one COUNT and no
pass over the whole outbox.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from sqlalchemy import event, insert, select, update

from hub.admin.messages import AUDIT_ACTIONS
from hub.admin.letter_frame import LETTER_CSP, letter_policy, letter_response
from hub.i18n import gettext, use_language
from hub.messaging import outbox
from hub.models import AuditEntry, Message
from tests.support.admin import AdminEnv, client_as, plain, post, text
from tests.test_message_log import add_message, link, log, status_of  # noqa: F401 - the fixture

pytestmark = pytest.mark.both_databases

UTC = dt.timezone.utc
TRACKED = ('<html><body><p id="hello">Здравствуйте!</p><img src="https://t.example.ru/open.gif?m=1" alt="">'
           '<a href="https://shop.example.ru/u/signed-token">Отписаться</a></body></html>')


def sandbox_of(policy: str) -> str:
    return policy.split(";")[0]


def img_src_of(policy: str) -> str:
    return next(p.strip() for p in policy.split(";") if p.strip().startswith("img-src"))


# --- the letter as sent: inert links, no remote images until asked ------------------------------

def test_a_letter_as_sent_has_inert_links_and_no_remote_images_until_asked(admin_env: AdminEnv) -> None:
    sent = add_message(admin_env, html=TRACKED, key="tracked")
    client = client_as(admin_env, "viewer")
    page = text(client.get(f"/messages/{sent}"))
    assert f'<iframe id="letter" class="letter" sandbox src="/messages/{sent}/letter"' in page
    assert "allow-popups" not in page
    assert f'id="show-images" href="/messages/{sent}?images=1#content"' in page
    assert "Картинки с других сайтов не загружены" in plain(client.get(f"/messages/{sent}"))

    letter = client.get(f"/messages/{sent}/letter")
    policy = letter.headers["Content-Security-Policy"]
    assert sandbox_of(policy) == "sandbox" and "allow-popups" not in policy  # a click opens nothing
    assert img_src_of(policy) == "img-src data:"  # the pixel is not fetched
    assert "default-src 'none'" in policy and "script-src" not in policy and "form-action 'none'" in policy

    asked = text(client.get(f"/messages/{sent}?images=1"))
    assert f'sandbox src="/messages/{sent}/letter?images=1"' in asked and 'id="show-images"' not in asked
    shown = client.get(f"/messages/{sent}/letter?images=1").headers["Content-Security-Policy"]
    assert img_src_of(shown) == "img-src https: http: data:" and sandbox_of(shown) == "sandbox"
    forged = client.get(f"/messages/{sent}/letter?images=<script>").headers["Content-Security-Policy"]
    assert img_src_of(forged) == "img-src data:"

    plain_letter = add_message(admin_env, html="<p>Без картинок</p>", key="plain")
    assert 'id="show-images"' not in text(client.get(f"/messages/{plain_letter}"))


def test_previews_keep_their_links_and_images() -> None:
    assert letter_policy() == LETTER_CSP
    assert sandbox_of(LETTER_CSP) == "sandbox allow-popups allow-popups-to-escape-sandbox"
    assert img_src_of(LETTER_CSP) == "img-src https: http: data:"
    from flask import Flask

    with Flask(__name__).app_context():
        assert letter_response("<p>x</p>").headers["Content-Security-Policy"] == LETTER_CSP
        inert = letter_response("<p>x</p>", links=False).headers["Content-Security-Policy"]
    assert sandbox_of(inert) == "sandbox" and img_src_of(inert) == "img-src https: http: data:"


# --- the review: reading changes nothing; a decision and its record go together -----------------

def test_opening_the_review_changes_no_status(admin_env: AdminEnv) -> None:
    stale = add_message(admin_env, status="sending", key="stale", created=dt.datetime(2026, 12, 1, 9, tzinfo=UTC))
    with admin_env.engine.begin() as conn:
        conn.execute(update(Message.__table__).where(Message.__table__.c.id == stale)
                     .values(claimed_at=dt.datetime(2026, 12, 1, 9, tzinfo=UTC), worker="gone:1"))
    page = client_as(admin_env, "viewer").get("/messages/review")
    assert page.status_code == 200
    assert status_of(admin_env, stale) == "sending"  # the next dispatch settles it, not a reader


def test_a_decision_without_its_audit_record_is_not_kept(admin_env: AdminEnv) -> None:
    doubt = add_message(admin_env, status="unknown", key="doubt")
    seen: list[tuple[str, str]] = []

    def failing(conn: Any, message: dict[str, Any], previous: str) -> None:
        seen.append((message["status"], previous))
        raise RuntimeError("the audit could not be written")

    with pytest.raises(RuntimeError):
        outbox.resolve(admin_env.engine, doubt, "sent", by="test", audit=failing)
    assert seen == [("sent", "unknown")] and status_of(admin_env, doubt) == "unknown"  # rolled back together
    assert outbox.resolve(admin_env.engine, doubt, "sent")["status"] == "sent"  # the CLI's call, no audit


def test_the_review_audits_in_the_same_transaction_and_names_the_current_status(
        admin_env: AdminEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    settled = add_message(admin_env, status="unknown", key="settled", error="connection lost")
    client = client_as(admin_env, "marketer")
    assert post(client, f"/messages/{settled}/resolve", {"outcome": "failed"},
                token_from="/messages/review").status_code == 302
    with admin_env.engine.connect() as conn:
        details = conn.execute(select(AuditEntry.details).where(AuditEntry.action == "message_marked_failed")
                               ).scalar_one()
    assert details["status"] == "unknown" and details["message_id"] == settled  # the status it had
    with use_language("ru"):
        assert gettext(AUDIT_ACTIONS["message_requeued"]) == "сообщение снова поставлено в очередь"

    doubt = add_message(admin_env, status="unknown", key="raced")
    real = outbox.resolve

    def raced(engine: Any, message_id: int, outcome: str, **kw: Any) -> dict[str, Any]:
        real(engine, message_id, "sent", by="someone else")  # another marketer, a moment earlier
        return real(engine, message_id, outcome, **kw)

    monkeypatch.setattr(outbox, "resolve", raced)
    post(client, f"/messages/{doubt}/resolve", {"outcome": "failed"}, token_from="/messages/review")
    page = plain(client.get("/messages/review"))
    assert f"Сообщение #{doubt} сейчас в статусе «отправлено»" in page  # what it is now, not what the page showed


# --- workflows and campaigns by their titles ----------------------------------------------------

def test_origins_show_the_titles_their_plugin_gives(admin_env: AdminEnv) -> None:
    from workflows.models import Campaign

    now = dt.datetime(2026, 12, 1, 9, tzinfo=UTC)
    with admin_env.engine.begin() as conn:
        conn.execute(insert(Campaign.__table__).values(
            name="black_friday", title="Чёрная <b>пятница</b>", segment="moscow", channel="email", template="promo",
            purpose="marketing", holdout=0, status="done", created_by="test", created_at=now, updated_at=now))
    campaign = add_message(admin_env, origin="campaign_black_friday", key="bf")
    workflow = add_message(admin_env, origin="reactivation_90d", key="react")
    gone = add_message(admin_env, origin="deleted_flow", key="gone")
    client = client_as(admin_env, "viewer")
    page = text(client.get("/messages/"))
    assert '<option value="campaign_black_friday">Чёрная &lt;b&gt;пятница&lt;/b&gt;</option>' in page
    assert '<option value="deleted_flow">deleted_flow</option>' in page  # no page knows it: its name
    option = re.search(r'<option value="reactivation_90d">([^<]+)</option>', page)
    assert option and option.group(1) != "reactivation_90d"
    row = re.search(rf'<tr data-id="{campaign}".*?</tr>', page, re.S)
    assert row and 'href="/campaigns/black_friday"' in row.group(0) and "/workflows/campaign_" not in page
    assert f'href="/workflows/reactivation_90d">{option.group(1)}</a>' in page
    one = text(client.get(f"/messages/{campaign}"))
    assert 'href="/campaigns/black_friday">Чёрная &lt;b&gt;пятница&lt;/b&gt;</a>' in one
    assert f'href="/workflows/reactivation_90d">{option.group(1)}</a>' in text(client.get(f"/messages/{workflow}"))
    assert "deleted_flow" in plain(client.get(f"/messages/{gone}"))


# --- what one view costs ------------------------------------------------------------------------

@pytest.mark.usefixtures("log")
def test_a_view_counts_once_and_reads_names_through_the_indexes(admin_env: AdminEnv) -> None:
    start = dt.datetime(2026, 11, 1, 9, tzinfo=UTC)
    for i in range(60):
        add_message(admin_env, origin="welcome", created=start + dt.timedelta(minutes=i), key=f"c{i}")
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.lower())

    event.listen(admin_env.engine, "before_cursor_execute", seen)
    try:
        client = client_as(admin_env, "viewer")
        first = client.get("/messages/?channel=email")
        statements.clear()
        second = client.get(link(first, "next"))
    finally:
        event.remove(admin_env.engine, "before_cursor_execute", seen)
    messages = [s for s in statements if "from messages" in s]
    assert sum("count(" in s for s in messages) == 1, messages
    assert not any("distinct" in s for s in messages), messages
    assert "51–64 из 64" in plain(second) and 'rel="prev"' in text(second)
    with admin_env.engine.connect() as conn:
        every = {str(o) for o in conn.execute(select(Message.origin).where(Message.origin.is_not(None))).scalars()}
        assert outbox.origins(conn) == sorted(every)
        assert outbox.channels(conn) == sorted(set(conn.execute(select(Message.channel)).scalars()))


# --- the wording --------------------------------------------------------------------------------

def test_the_review_reads_right_in_russian(admin_env: AdminEnv) -> None:
    page = plain(client_as(admin_env, "viewer").get("/messages/review"))
    assert "Неизвестно, принял ли канал эти сообщения" in page
