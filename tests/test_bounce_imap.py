"""The bounce mailbox reader against a real dovecot: batches, moves, flags for a person, and its failures."""

from __future__ import annotations

import email
import imaplib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from hub import i18n
from hub.config import Settings, SettingsError
from plugins.mailing.bounces import imap
from plugins.mailing.bounces.imap import BounceMailbox, ImapSettings, MailboxError, encode_folder
from tests import servers
from tests.processes import ROOT
from tests.support.imap import BounceMailboxHelper


def report(n: int, body: str = "") -> bytes:
    return (f"From: MAILER-DAEMON@mx.example\r\nTo: bounces@shop.example\r\nSubject: report {n}\r\n"
            f"Message-ID: <report-{n}@mx.example>\r\n\r\nreport number {n}\r\n{body}").encode()


def config(box: BounceMailboxHelper, **extra: str) -> ImapSettings:
    found = ImapSettings.from_settings(Settings(extra={**box.settings_extra, **extra}))
    assert found is not None
    return found


def subjects(raws: list[bytes]) -> list[str]:
    return [str(email.message_from_bytes(raw)["Subject"]) for raw in raws]


def test_waiting_yields_batches_oldest_first_without_marking_them_seen(bounce_mailbox: BounceMailboxHelper) -> None:
    for n in range(5):
        bounce_mailbox.append(report(n))

    with BounceMailbox(config(bounce_mailbox)) as box:
        batches = list(box.waiting(batch=2))

    assert [len(batch) for batch in batches] == [2, 2, 1]
    uids = [uid for batch in batches for uid, _raw in batch]
    assert uids == sorted(uids, key=int)
    assert subjects([raw for batch in batches for _uid, raw in batch]) == [f"report {n}" for n in range(5)]
    assert [raw for batch in batches for _uid, raw in batch] == bounce_mailbox.list()
    assert all("\\Seen" not in flags for flags in bounce_mailbox.flags().values())  # BODY.PEEK


def test_an_empty_mailbox_waits_for_nothing(bounce_mailbox: BounceMailboxHelper) -> None:
    with BounceMailbox(config(bounce_mailbox)) as box:
        assert list(box.waiting()) == []
        assert box.count_for_person() == 0
        box.done([])
        box.leave_for_person([])


def test_done_moves_to_the_done_folder_which_it_creates(bounce_mailbox: BounceMailboxHelper) -> None:
    for n in range(4):
        bounce_mailbox.append(report(n))

    with BounceMailbox(config(bounce_mailbox)) as box:
        [batch] = list(box.waiting())
        box.done([uid for uid, _raw in batch[:3]])
        assert [subjects([raw for _uid, raw in b]) for b in box.waiting()] == [["report 3"]]

    assert subjects(bounce_mailbox.list("Hub-Processed")) == ["report 0", "report 1", "report 2"]
    assert subjects(bounce_mailbox.list()) == ["report 3"]


@pytest.mark.parametrize("uidplus", [True, False])
def test_done_without_move_copies_then_expunges(bounce_mailbox: BounceMailboxHelper, uidplus: bool) -> None:
    for n in range(3):
        bounce_mailbox.append(report(n))

    with BounceMailbox(config(bounce_mailbox)) as box:
        box._can_move = False  # a server without the MOVE extension (RFC 6851)
        box._can_uid_expunge = uidplus
        [batch] = list(box.waiting())
        box.done([batch[0][0], batch[2][0]])

    assert subjects(bounce_mailbox.list("Hub-Processed")) == ["report 0", "report 2"]
    assert subjects(bounce_mailbox.list()) == ["report 1"]


def test_left_for_a_person_is_flagged_kept_and_skipped_next_time(bounce_mailbox: BounceMailboxHelper) -> None:
    for n in range(3):
        bounce_mailbox.append(report(n))

    with BounceMailbox(config(bounce_mailbox)) as box:
        [batch] = list(box.waiting())
        box.leave_for_person([batch[1][0]])
        assert box.count_for_person() == 1

    with BounceMailbox(config(bounce_mailbox)) as box:
        assert [subjects([raw for _uid, raw in b]) for b in box.waiting()] == [["report 0", "report 2"]]
        assert box.count_for_person() == 1

    flags = bounce_mailbox.flags()
    assert flags[batch[1][0]] >= {"\\Flagged", "HubReview"}
    assert "HubReview" not in flags[batch[0][0]]
    assert len(bounce_mailbox.list()) == 3  # nothing moved, nothing lost


def test_waiting_searches_window_by_window_across_gaps(bounce_mailbox: BounceMailboxHelper,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imap, "LIST_WINDOW", 3)
    for n in range(10):
        bounce_mailbox.append(report(n))
    with BounceMailbox(config(bounce_mailbox)) as box:
        [batch] = list(box.waiting())
        box.done([uid for uid, _raw in batch[:6]])  # the oldest UIDs are gone: the search starts later

    with BounceMailbox(config(bounce_mailbox)) as box:
        batches = list(box.waiting(batch=3))
    assert [subjects([raw for _uid, raw in b]) for b in batches] == [["report 6", "report 7", "report 8"],
                                                                      ["report 9"]]


def test_batches_also_stop_at_a_byte_budget(bounce_mailbox: BounceMailboxHelper,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imap, "BATCH_BYTES", 2_000)
    for n in range(4):
        bounce_mailbox.append(report(n, "x" * 700))  # about 850 bytes each: two fit in the budget
    bounce_mailbox.append(report(4, "y" * 5_000))  # alone over the budget: a batch of its own
    bounce_mailbox.append(report(5))

    with BounceMailbox(config(bounce_mailbox)) as box:
        batches = [subjects([raw for _uid, raw in b]) for b in box.waiting()]
    assert batches == [["report 0", "report 1"], ["report 2", "report 3"], ["report 4"], ["report 5"]]


def test_letters_marked_deleted_are_not_read_again(bounce_mailbox: BounceMailboxHelper) -> None:
    """What a run stopped between COPY and EXPUNGE left behind: already in the done folder."""
    for n in range(2):
        bounce_mailbox.append(report(n))
    other = bounce_mailbox._connect()
    other.select("INBOX")
    other.uid("STORE", "1", "+FLAGS", "(\\Deleted)")
    other.logout()

    with BounceMailbox(config(bounce_mailbox)) as box:
        assert [subjects([raw for _uid, raw in b]) for b in box.waiting()] == [["report 1"]]
    assert len(bounce_mailbox.flags()) == 2  # and not expunged by the reader: only its own moves remove letters


def test_non_ascii_folder_names(bounce_mailbox: BounceMailboxHelper) -> None:
    bounce_mailbox.append(report(1), folder="Отказы")
    settings = config(bounce_mailbox, bounce_imap_folder="Отказы", bounce_imap_done_folder="Обработано Hub")

    with BounceMailbox(settings) as box:
        [batch] = list(box.waiting())
        box.done([uid for uid, _raw in batch])

    assert subjects(bounce_mailbox.list("Обработано Hub")) == ["report 1"]
    assert bounce_mailbox.list("Отказы") == []


def test_folder_names_are_written_as_imap_writes_them() -> None:
    assert encode_folder("INBOX") == '"INBOX"'
    assert encode_folder("Отказы") == '"&BB4EQgQ6BDAENwRL-"'
    assert encode_folder("Fish & Chips") == '"Fish &- Chips"'
    assert encode_folder('say "hi" \\ bye') == '"say \\"hi\\" \\\\ bye"'
    assert encode_folder("日本語") == '"&ZeVnLIqe-"'  # RFC 3501's own example


def test_a_ten_megabyte_report(bounce_mailbox: BounceMailboxHelper) -> None:
    line = "x" * 76 + "\r\n"
    big = report(1, line * (10 * 2**20 // len(line)))
    assert len(big) > 10 * 2**20
    bounce_mailbox.append(big)

    with BounceMailbox(config(bounce_mailbox)) as box:
        [[(_uid, raw)]] = list(box.waiting())
    assert raw == big


def test_a_report_with_bare_lf_lines(bounce_mailbox: BounceMailboxHelper) -> None:
    raw_lf = (b"From: MAILER-DAEMON@mx.example\nSubject: bare LF\n\nline one\nline two\n")
    bounce_mailbox.append(raw_lf)

    with BounceMailbox(config(bounce_mailbox)) as box:
        [[(_uid, raw)]] = list(box.waiting())
    message = email.message_from_bytes(raw)
    assert message["Subject"] == "bare LF"
    assert str(message.get_payload()).replace("\r\n", "\n") == "line one\nline two\n"


def test_wrong_password_is_refused_without_showing_it(bounce_mailbox: BounceMailboxHelper) -> None:
    secret = "Sekret-Pa55-never-shown"
    settings = config(bounce_mailbox, bounce_imap_password=secret)
    assert secret not in repr(settings)
    with pytest.raises(MailboxError) as raised:
        with BounceMailbox(settings):
            pass  # pragma: no cover
    text = str(raised.value)
    assert secret not in text
    assert bounce_mailbox.host in text and bounce_mailbox.user in text
    assert "HUB_BOUNCE_IMAP_PASSWORD" in text
    assert "AUTHENTICATIONFAILED" in text and "b'" not in text and 'b"' not in text  # the server's words as text


def test_a_non_ascii_password_goes_by_authenticate_plain(bounce_mailbox: BounceMailboxHelper) -> None:
    settings = config(bounce_mailbox, bounce_imap_password="пароль-неверный")
    with pytest.raises(MailboxError, match="HUB_BOUNCE_IMAP_USER") as raised:
        with BounceMailbox(settings):
            pass  # pragma: no cover
    assert "пароль-неверный" not in str(raised.value)


def test_unreachable_server(bounce_mailbox: BounceMailboxHelper) -> None:
    port = servers.free_port()  # nobody listens there
    settings = config(bounce_mailbox, bounce_imap_port=str(port), bounce_imap_timeout="5")
    with i18n.use_language("ru"), pytest.raises(MailboxError) as raised:
        with BounceMailbox(settings):
            pass  # pragma: no cover
    assert f"127.0.0.1:{port}" in str(raised.value)
    assert "Не удалось подключиться" in str(raised.value)


def test_ssl_to_a_plain_server_is_a_mailbox_error(bounce_mailbox: BounceMailboxHelper) -> None:
    for security in ("ssl", "starttls"):
        settings = config(bounce_mailbox, bounce_imap_security=security, bounce_imap_timeout="10")
        with pytest.raises(MailboxError, match=bounce_mailbox.host):
            with BounceMailbox(settings):
                pass  # pragma: no cover


def test_missing_folder_is_named(bounce_mailbox: BounceMailboxHelper) -> None:
    for folder in ("Bounces", "Отказы 2026", 'quote " back \\ slash'):
        with pytest.raises(MailboxError, match="HUB_BOUNCE_IMAP_FOLDER") as raised:
            with BounceMailbox(config(bounce_mailbox, bounce_imap_folder=folder)):
                pass  # pragma: no cover
        assert repr(folder) in str(raised.value)


def test_the_reader_outside_its_block_says_so(bounce_mailbox: BounceMailboxHelper) -> None:
    box = BounceMailbox(config(bounce_mailbox))
    with pytest.raises(RuntimeError, match="with"):
        list(box.waiting())
    with box:
        pass
    with pytest.raises(RuntimeError, match="with"):
        box.done(["1"])


def test_a_dropped_connection_is_a_mailbox_error(bounce_mailbox: BounceMailboxHelper) -> None:
    bounce_mailbox.append(report(1))
    with BounceMailbox(config(bounce_mailbox)) as box:
        assert box._imap is not None
        box._imap.sock.shutdown(socket.SHUT_RDWR)  # the server or the network went away mid-run
        with pytest.raises(MailboxError, match=bounce_mailbox.host):
            list(box.waiting())


# ------------------------------------------------------------------ settings


def test_settings_unset_host_means_no_mailbox() -> None:
    assert ImapSettings.from_settings(Settings()) is None
    assert ImapSettings.from_settings(Settings(extra={"bounce_imap_host": "  "})) is None


def test_settings_defaults() -> None:
    found = ImapSettings.from_settings(Settings(extra={
        "bounce_imap_host": "imap.yandex.ru", "bounce_imap_user": "bounces@shop.ru",
        "bounce_imap_password": "app-password"}))
    assert found == ImapSettings(host="imap.yandex.ru", port=993, user="bounces@shop.ru", password="app-password",
                                 folder="INBOX", security="ssl", done_folder="Hub-Processed", timeout=30.0)
    assert "app-password" not in repr(found)
    starttls = ImapSettings.from_settings(Settings(extra={
        "bounce_imap_host": "imap.mail.ru", "bounce_imap_user": "u", "bounce_imap_password": "p",
        "bounce_imap_security": "STARTTLS", "bounce_imap_port": 143, "bounce_imap_timeout": 5}))
    assert starttls is not None and (starttls.security, starttls.port, starttls.timeout) == ("starttls", 143, 5.0)


@pytest.mark.parametrize(("extra", "variable", "russian"), [
    ({"bounce_imap_port": "imap"}, "HUB_BOUNCE_IMAP_PORT", "номер порта"),
    ({"bounce_imap_port": "70000"}, "HUB_BOUNCE_IMAP_PORT", "номер порта"),
    ({"bounce_imap_security": "tls"}, "HUB_BOUNCE_IMAP_SECURITY", "ssl, starttls, none"),
    ({"bounce_imap_timeout": "-1"}, "HUB_BOUNCE_IMAP_TIMEOUT", "секунд"),
    ({"bounce_imap_timeout": "soon"}, "HUB_BOUNCE_IMAP_TIMEOUT", "секунд"),
    ({"bounce_imap_user": ""}, "HUB_BOUNCE_IMAP_USER", "не задан"),
    ({"bounce_imap_password": ""}, "HUB_BOUNCE_IMAP_PASSWORD", "не задан"),
    ({"bounce_imap_host": "imap://x"}, "HUB_BOUNCE_IMAP_HOST", "имя сервера"),
    ({"bounce_imap_folder": "a*b"}, "HUB_BOUNCE_IMAP_FOLDER", "имя папки"),
    ({"bounce_imap_done_folder": "inbox"}, "HUB_BOUNCE_IMAP_DONE_FOLDER", "должна отличаться"),
])
def test_bad_settings_name_the_variable_in_russian(extra: dict[str, str], variable: str, russian: str) -> None:
    base = {"bounce_imap_host": "imap.yandex.ru", "bounce_imap_user": "u", "bounce_imap_password": "p"}
    with i18n.use_language("ru"), pytest.raises(SettingsError) as raised:
        ImapSettings.from_settings(Settings(extra={**base, **extra}))
    assert variable in str(raised.value)
    assert russian in str(raised.value)


# ------------------------------------------------------------------ the server itself


def test_the_test_server_gives_each_user_a_mailbox_and_goes_away(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(servers.IMAP_URL_ENV, raising=False)
    with servers.dovecot_server() as url:
        parts = urlsplit(url)
        assert (parts.scheme, parts.hostname) == ("imap", "127.0.0.1")
        one, two = BounceMailboxHelper(url), BounceMailboxHelper(url)
        one.append(report(1))
        assert len(one.list()) == 1 and two.list() == []
    with pytest.raises(OSError):
        imaplib.IMAP4("127.0.0.1", parts.port or 143, timeout=5)


def test_the_imap_url_override_starts_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv(servers.IMAP_URL_ENV, "imap://someone:pw@mail.example:143")
    monkeypatch.setenv("PATH", str(tmp_path))  # any attempt to start dovecot would fail loudly
    with servers.dovecot_server() as url:
        assert url == "imap://someone:pw@mail.example:143"


OWNER = """
import sys
from urllib.parse import urlsplit
from tests.servers import dovecot_server

with dovecot_server() as url:
    print(urlsplit(url).port, flush=True)
    sys.stdin.read()  # until killed
"""


def test_the_test_server_goes_away_when_its_owner_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker killed with SIGKILL leaves no dovecot and no folder behind (tests/watchdog.py)."""
    monkeypatch.delenv(servers.IMAP_URL_ENV, raising=False)
    workdirs = Path(tempfile.mkdtemp(prefix="hub-imap-owner-"))
    workdirs.chmod(0o755)
    env = {**os.environ, "TMPDIR": str(workdirs), "PYTHONPATH": str(ROOT)}
    owner = subprocess.Popen([sys.executable, "-c", OWNER], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        try:
            port = int(owner.stdout.readline())  # type: ignore[union-attr]
            imaplib.IMAP4("127.0.0.1", port, timeout=10).logout()
        finally:
            owner.kill()
            owner.wait()
        deadline = time.monotonic() + 120  # only stops a broken test
        while _answers(port) or any(workdirs.iterdir()):
            assert time.monotonic() < deadline, f"still serving or left behind: {list(workdirs.iterdir())}"
            time.sleep(0.1)
    finally:
        shutil.rmtree(workdirs, ignore_errors=True)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False
