"""The floor of a sending benchmark: Hub's own letters sent again in bare smtplib loops, no database, no checks.

A benchmark's figure means little on a shared 2-core machine unless it sits
beside what the same machine could do at the same moment. For a benchmark
that ends in an SMTP server, that is W processes each sending the very
letters Hub rendered, already on the wire format, over one connection in a
plain `smtplib` loop to the same kind of sink. mailing.py and campaign.py
both measure Hub against this one implementation, so their ratios compare.

The caller's script starts the floor workers as `SCRIPT --floor-worker JSON`
(so each builds Hub's settings as that benchmark does) and hands the JSON to
`floor_worker`; `run_floor` starts them, waits until every one holds its
letters in memory, and times them from the word to go to the last letter.

Imported by the scripts in this folder (bench/ is on sys.path when they run);
not part of the installed package.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

Letter = tuple[str, str, bytes, list[str]]  # envelope sender, recipient, data, MAIL FROM options
Work = Callable[[], tuple[int, float]]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wire_letters(settings: Any, share: dict[str, Any]) -> list[Letter]:
    """One share of the letters Hub put in the outbox, as the SMTP channel puts them on the wire.

    Read back from the outbox and handed to the mailing plugin's own channel
    with the network cut out (its last step, the SMTP transaction, records
    instead of sending): so the floor sends the very bytes Hub sends, whatever
    the channel adds (tracked links, footer, DKIM, a VERP return path), before
    the clock starts. `share` names the rows: `by` ("contact_id", the
    default, or "id"), `first_id` and `last_id` (inclusive), and optionally
    `status` (e.g. "sent": only what Hub delivered).
    """
    import inspect

    from sqlalchemy import select

    from hub import plugins
    from hub.db import dispose_engines, get_engine
    from hub.messaging import Delivery, Outgoing, messages_t
    from plugins.mailing.email import EmailChannel

    plugins.configure(settings)
    signature = inspect.signature(EmailChannel._transaction)

    class Server:  # what the sink offers (aiosmtpd): 8BITMIME, no SMTPUTF8
        def has_extn(self, name: str) -> bool:
            return name.lower() == "8bitmime"

    class Recording(EmailChannel):
        wire: Letter

        def _connect(self) -> Any:
            return Server()

        def _transaction(self, *given: Any, **named: Any) -> Any:
            bound = signature.bind(self, *given, **named)
            bound.apply_defaults()
            found = bound.arguments
            options = (["SMTPUTF8"] if found["utf8"] else []) + (["BODY=8BITMIME"] if found["eight_bit"] else [])
            self.wire = (found.get("mail_from") or self.sender.address, found["to"], found["data"], options)
            return Delivery("sent")

    channel = Recording(settings)
    t = messages_t.c
    query = (select(t.id, t.contact_id, t.channel, t.address, t.purpose, t.template, t.subject, t.body_text,
                    t.body_html, t.idempotency_key, t.meta)
             .where(t.channel == "email", t[share.get("by", "contact_id")].between(share["first_id"], share["last_id"]))
             .order_by(t.id))
    if share.get("status"):
        query = query.where(t.status == share["status"])
    letters = []
    with get_engine(settings.database_url).connect() as conn:
        for r in conn.execute(query):
            channel.send(Outgoing(id=r.id, channel=r.channel, contact_id=r.contact_id, address=r.address,
                                  purpose=r.purpose, template=r.template, subject=r.subject, text=r.body_text,
                                  html=r.body_html, key=r.idempotency_key, meta=r.meta or {}))
            letters.append(channel.wire)
    dispose_engines()
    return letters


def floor_worker(args: dict[str, Any], settings: Any,
                 wrap: Callable[[str, Work], tuple[int, float]] | None = None) -> dict[str, Any]:
    """One floor worker: load its letters, say "ready", wait for the word (a line on stdin), send them all.

    Sends in a bare loop over one SMTP connection to 127.0.0.1:`args["port"]`.
    `wrap(name, work)` runs the timed part (e.g. under a profiler).
    """
    import smtplib

    letters = wire_letters(settings, args)
    print("ready", flush=True)
    sys.stdin.readline()

    def send_all() -> tuple[int, float]:
        started = time.perf_counter()
        smtp = smtplib.SMTP("127.0.0.1", args["port"], timeout=30)
        sent = 0
        for mail_from, to, data, options in letters:
            smtp.sendmail(mail_from, [to], data, mail_options=options)
            sent += 1
        smtp.quit()
        return sent, time.perf_counter() - started

    name = f"floor-worker-{args['index']}"
    cpu_before = _cpu_seconds()
    sent, seconds = wrap(name, send_all) if wrap else send_all()
    return {"worker": f"floor-{args['index']}", "sent": sent, "seconds": round(seconds, 2),
            "cpu_s": round(_cpu_seconds() - cpu_before, 2)}


def run_floor(command: list[str], env: dict[str, str], common: dict[str, Any],
              shares: list[tuple[int, int]]) -> tuple[float, list[dict[str, Any]]]:
    """Start one floor worker per share (`command` + its JSON), all at once; time them from "go" to the last.

    Returns the wall-clock seconds and each worker's report.
    """
    workers = [subprocess.Popen(
        [*command, json.dumps(common | {"index": i + 1, "first_id": a, "last_id": b})],
        env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE) for i, (a, b) in enumerate(shares)]
    for w in workers:  # each has its letters in memory, on the wire format, before the clock starts
        assert w.stdout is not None
        if w.stdout.readline().strip() != b"ready":
            for other in workers:
                other.kill()
                other.wait()
            raise SystemExit("a floor worker failed while preparing its letters")
    started = time.perf_counter()
    for w in workers:
        assert w.stdin is not None
        w.stdin.write(b"go\n")
        w.stdin.flush()
    outputs = [w.stdout.readline() for w in workers if w.stdout is not None]  # the report, then its exit
    seconds = time.perf_counter() - started
    for w in workers:
        w.communicate()
    if any(w.returncode for w in workers):
        raise SystemExit(f"a floor worker failed (exit codes {[w.returncode for w in workers]})")
    return seconds, [json.loads(out) for out in outputs]


def summary(seconds: float, reports: list[dict[str, Any]], received: int | None,
            sink_cpu_s: float | None) -> dict[str, Any]:
    """The floor's figures as both benchmarks print them (`floor` in their JSON)."""
    sent = sum(r["sent"] for r in reports)
    per = max(sent, 1)
    return {"sent": sent, "received_by_sink": received, "seconds": round(seconds, 2),
            "messages_per_s": round(sent / seconds) if seconds else 0,
            "cpu_ms_per_message": {"workers": round(sum(r["cpu_s"] for r in reports) * 1000 / per, 3),
                                   "sink": round((sink_cpu_s or 0.0) * 1000 / per, 3)},
            "per_worker": reports}
