"""`hub demo`: the main job on a bare machine, with real results.

Generates a messy customer base the way a Russian office holds one (two
exports of the same clients, in Windows-1251 and UTF-8, phones written every
way, mixed-case emails, namesakes, junk), imports both into a fresh SQLite
database, and shows what Hub found and fixed, checked against the generator's
ground truth. Plugins add to it: their emulators are synced too
(register_sandboxes), and each may show its own work on the result at the end
(register_showcases: the workflows plugin runs its reactivation campaign).
"""

from __future__ import annotations

import csv
import os
import secrets
import shutil
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub import dedupe, formats, identity, importer, migrations, plugins, sampledata, sync
from hub.config import Settings, load_settings
from hub.db import dispose_engines, get_engine
from hub.i18n import gettext as _
from hub.models import Contact, ContactIdentity, ContactMerge, ExternalRef


def score(truth: dict[Any, int], placed: dict[Any, int | None]) -> dict[str, int]:
    """How resolution compares with the truth: wrong merges must be zero.

    `truth` maps a row key to the real person, `placed` to the contact Hub
    chose. A contact holding two real people is a false merge; a person spread
    over several contacts is a split (expected when their rows share no valid
    phone or email: the rules never merge on a name alone).
    """
    people_per_contact: dict[int, set[int]] = defaultdict(set)
    contacts_per_person: dict[int, set[int]] = defaultdict(set)
    for key, person in truth.items():
        contact = placed.get(key)
        if contact is None:
            continue
        people_per_contact[contact].add(person)
        contacts_per_person[person].add(contact)
    return {
        "people": len(contacts_per_person),
        "contacts": len(people_per_contact),
        "false_merges": sum(1 for p in people_per_contact.values() if len(p) > 1),
        "split_people": sum(1 for c in contacts_per_person.values() if len(c) > 1),
        "rows_unplaced": sum(1 for key in truth if placed.get(key) is None),
    }


def _write_config(workdir: Path, settings: Settings) -> None:
    """hub.toml in the demo's folder, so `hub admin` (or any command) run there opens the demo's base.

    It carries the key the demo's CRM connections were encrypted with; private
    like the hub.toml `hub init` writes.
    """
    path = workdir / "hub.toml"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(f'secret_key = "{settings.secret_key}"\ndatabase_url = "sqlite:///hub.db"\n')


def _read_truth(path: Path, prefix: str) -> dict[tuple[str, int], int]:
    with path.open(encoding="utf-8") as f:
        return {(prefix, int(r["line"])): int(r["person_id"]) for r in csv.DictReader(f)}


def run(workdir: Path, *, people: int = 3000, seed: int = 7, console: Console | None = None) -> dict[str, Any]:
    console = console or Console()
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    settings: Settings = replace(load_settings(environ={}), database_url=f"sqlite:///{workdir / 'hub.db'}",
                                 secret_key=secrets.token_urlsafe(32))
    _write_config(workdir, settings)
    engine = get_engine(settings.database_url)
    migrations.upgrade(engine)

    console.rule("[bold]" + _("Hub demo: one clean base from two messy spreadsheets and the CRMs"))
    rows = list(sampledata.spreadsheet_rows(sampledata.people(people, seed), seed))
    cut = int(len(rows) * 0.6)
    files = [
        ("clients_1c.csv", rows[:cut], "cp1251", ";"),
        ("site_export.csv", rows[cut:], "utf-8-sig", ","),
    ]
    truth: dict[tuple[str, int], int] = {}
    for name, part, encoding, delimiter in files:
        sampledata.write_csv(workdir / name, part, encoding=encoding, delimiter=delimiter,
                             truth_path=str(workdir / f"{name}.truth"))
        truth.update(_read_truth(workdir / f"{name}.truth", name))
        console.print(_("Generated %(file)s: %(rows)s rows (%(encoding)s, '%(delimiter)s')", file=workdir / name,
                        rows=formats.number(len(part)), encoding=encoding, delimiter=delimiter))

    placed: dict[tuple[str, Any], int | None] = {}  # (file, line) from imports, (source, id) from syncs
    reports = []
    for name, *_rest in files:
        def remember(lines: list[int], ids: list[int | None], name: str = name) -> None:
            placed.update({(name, line): cid for line, cid in zip(lines, ids, strict=True)})

        with console.status(_("Importing %(file)s…", file=name)):
            report = importer.import_contacts(engine, settings, workdir / name, placed=remember)
        reports.append(report)
        console.print(_("Imported %(file)s: %(rows)s rows → %(created)s new contacts, %(merged)s matched to someone "
                        "already known, %(skipped)s skipped, %(seconds)s s", file=name,
                        rows=formats.number(report.rows), created=formats.number(report.created),
                        merged=formats.number(report.merged), skipped=formats.number(report.skipped_count),
                        seconds=formats.number(round(report.duration_s, 1))))

    running: list[Any] = []  # the emulators stay up until the showcases are done: a campaign writes back to them
    try:
        crm_reports = _sync_sandboxes(settings, engine, people=people, seed=seed, truth=truth, console=console,
                                      running=running)
    except BaseException:
        for sandbox in running:
            sandbox.close()
        raise
    with engine.connect() as conn:
        placed = _follow_merges(conn, placed)
        placed.update(_placed_by_refs(conn, [r["source"] for r in crm_reports]))
    quality = score(truth, placed)
    with engine.connect() as conn:
        n_contacts = conn.execute(select(func.count()).select_from(Contact)).scalar_one()
        idents = conn.execute(select(ContactIdentity.kind, ContactIdentity.valid, ContactIdentity.raw,
                                     ContactIdentity.value, ContactIdentity.source)).all()
        examples = _examples(idents)
        card = _two_source_contact(conn)
    suggestions = dedupe.suggestions(engine.connect(), limit=1000)

    total_rows = sum(r.rows for r in reports)
    phones_ok = sum(1 for i in idents if i.kind == "phone" and i.valid)
    phones_rewritten = sum(1 for i in idents if i.kind == "phone" and i.valid and i.raw != i.value)
    emails_fixed = sum(1 for i in idents if i.kind == "email" and i.valid and i.raw != i.value)
    if crm_reports:
        crm = Table(title=_("CRMs synced (local emulators with the real protocol and limits)"))
        for n, column in enumerate((_("CRM"), _("people"), _("new"), _("matched"), _("deals"), _("requests"),
                                    _("limited"), _("s"))):
            crm.add_column(column, justify="left" if n == 0 else "right", no_wrap=True)
        for r in crm_reports:
            c = r["contacts"]
            crm.add_row(r["source"], formats.number(r["people"]), formats.number(c["created"]),
                        formats.number(c["updated"] + c["merged"]), formats.number(r["orders"]["created"]),
                        formats.number(r.get("requests", "-")), formats.number(r.get("rate_limited", "-")),
                        formats.number(round(r["duration_s"], 1)))
        console.print(crm)
    number = formats.number
    table = Table(title=_("What Hub found and fixed"), show_header=False)
    for label, value in [
        (_("rows read from 2 files"), number(total_rows)),
        *[(_("contacts read from %(source)s", source=r["source"]), number(r["people"])) for r in crm_reports],
        (_("people in the clean base"), number(n_contacts)),
        (_("duplicate records folded into one person"),
         number(total_rows + sum(r["people"] for r in crm_reports) - n_contacts)),
        (_("phones normalized to E.164"), _("%(valid)s (%(rewritten)s were written another way)",
                                            valid=number(phones_ok), rewritten=number(phones_rewritten))),
        (_("emails trimmed / lowercased"), number(emails_fixed)),
        (_("invalid phones kept as typed, flagged"), number(sum(r.invalid_phones for r in reports))),
        (_("invalid emails kept as typed, flagged"), number(sum(r.invalid_emails for r in reports))),
        (_("namesake groups kept apart (for review)"), number(len(suggestions))),
        (_("checked against the truth: wrong merges"), number(quality["false_merges"])),
        (_("people left split (rows share no phone/email)"), number(quality["split_people"])),
    ]:
        table.add_row(label, value)
    console.print(table)

    ex = Table(title=_("Examples"), show_lines=False)
    ex.add_column(_("as typed"))
    ex.add_column(_("in Hub"))
    for raw, value in examples:
        ex.add_row(raw, value)
    console.print(ex)
    if card:
        console.print("[bold]" + _("One person from both files") + "[/bold] — "
                      + _("contact #%(id)s %(name)s:", id=card["id"], name=card["name"]))
        for line in card["lines"]:
            console.print(f"  {line}")
    if suggestions:
        s = suggestions[0]
        evidence = ", ".join(dedupe.evidence_title(e) for e in s["evidence"])
        console.print("[bold]" + _("Namesakes") + "[/bold] — "
                      + _("%(name)s: contacts %(ids)s share only a name (%(evidence)s), so they stay apart.",
                          name=s["name"], ids=", ".join(map(str, s["contact_ids"])), evidence=evidence))
    url = f"HUB_DATABASE_URL=sqlite:///{workdir / 'hub.db'}"
    console.print("\n" + _("The base is in %(path)s. Look around:", path=workdir / "hub.db") + "\n"
                  f"  {url} hub contacts list --limit 20\n"
                  f"  {url} hub dedupe")
    console.print(_("To open it in the admin: %(command)s",
                    command=f"cd {workdir} && hub users add you@example.ru --role admin && hub admin"))
    try:
        showcases = _showcases(settings, engine, workdir, console)
    finally:
        for sandbox in running:
            sandbox.close()
    dispose_engines()
    return {"rows": total_rows, "contacts": n_contacts, **quality, "namesake_groups": len(suggestions),
            "crms": {r["source"]: {"contacts": r["contacts"], "orders": r["orders"], "companies": r["companies"],
                                   "activities": r["activities"], "requests": r.get("requests"),
                                   "rate_limited": r.get("rate_limited")} for r in crm_reports},
            "showcases": showcases}


def _showcases(settings: Settings, engine: Any, workdir: Path, console: Console) -> dict[str, Any]:
    """What each plugin shows on the demo's base (register_showcases), in name order."""
    return {name: show(settings, engine, workdir, console)
            for name, show in sorted(plugins.registry("register_showcases").items())}


def _sync_sandboxes(settings: Settings, engine: Any, *, people: int, seed: int, truth: dict[Any, int],
                    console: Console, running: list[Any]) -> list[dict[str, Any]]:
    """Sync every CRM emulator a plugin offers, each holding an overlapping slice of the same people.

    The first holds the last third of the spreadsheet people and as many new
    ones; the next starts a third later, so some people are in both CRMs and
    the spreadsheets at once, written differently in each.
    """
    reports = []
    for i, (name, start) in enumerate(sorted(plugins.registry("register_sandboxes").items())):
        first, count = people * (2 + i) // 3, people * 2 // 3
        with console.status(_("Starting the %(name)s emulator and syncing %(count)s people from it…", name=name,
                               count=formats.number(count))):
            sandbox = start(settings, people=count, first_person=first, seed=seed)
            running.append(sandbox)  # closed by the caller, after the showcases
            report = sync.run(engine, settings, sandbox.source, full=True).as_dict()
            truth.update({(sandbox.source, ext): person for ext, person in sandbox.truth().items()})
        report["people"] = count
        reports.append(report)
        # Companies and the managers' logged calls, meetings and tasks here, not in the table below: it has to
        # fit an 80-column terminal.
        console.print(_("Synced %(name)s: %(count)s contacts → %(created)s new, %(matched)s matched to someone known; "
                        "%(deals)s deals, %(companies)s companies, %(activities)s calls, meetings and tasks; "
                        "%(requests)s requests, %(limited)s rate-limited, %(seconds)s s", name=name,
                        count=formats.number(count), created=formats.number(report["contacts"]["created"]),
                        matched=formats.number(report["contacts"]["updated"] + report["contacts"]["merged"]),
                        deals=formats.number(report["orders"]["created"]),
                        companies=formats.number(report["companies"]["created"]),
                        activities=formats.number(report["activities"]["created"]),
                        requests=formats.number(report.get("requests", "?")),
                        limited=formats.number(report.get("rate_limited", 0)),
                        seconds=formats.number(round(report["duration_s"], 1))))
    return reports


def _follow_merges(conn: Any, placed: dict[Any, int | None]) -> dict[Any, int | None]:
    """Where each placed row's contact lives now: a later sync may have merged it into another."""
    survivor = dict(conn.execute(select(ContactMerge.merged_id, ContactMerge.survivor_id)).all())

    def final(cid: int | None) -> int | None:
        while cid in survivor:
            cid = survivor[cid]
        return cid

    return {key: final(cid) for key, cid in placed.items()}


def _placed_by_refs(conn: Any, sources: list[str]) -> dict[tuple[str, str], int]:
    rows = conn.execute(select(ExternalRef.source, ExternalRef.external_id, ExternalRef.contact_id)
                        .where(ExternalRef.source.in_(sources)))
    return {(source, ext): cid for source, ext, cid in rows}


def _examples(idents: Sequence[Any]) -> list[tuple[str, str]]:
    """A few of each kind of fix: messy phones, two numbers in a cell, extensions, junk, emails."""
    picked: list[tuple[str, str]] = []
    by_shape: Counter[str] = Counter()
    for i in idents:
        shown = (formats.phone(i.value) if i.kind == "phone" else i.value) if i.valid else \
            _("kept as typed, flagged invalid")
        if i.raw in (i.value, shown):  # nothing to see: typed the way Hub shows it
            continue
        if i.kind == "phone" and i.valid:
            shape = "ext" if ("доб" in i.raw or "ext" in i.raw) else ("+" if i.raw.startswith("+") else i.raw[:1])
        elif i.kind == "phone":
            shape = "invalid phone"
        else:
            shape = "email" if i.valid else "invalid email"
        if by_shape[shape] >= 1:
            continue
        by_shape[shape] += 1
        picked.append((i.raw, shown))
        if len(picked) >= 8:
            break
    return picked


def _two_source_contact(conn: Any) -> dict[str, Any] | None:
    """A contact whose identities came from both files: proof the two bases became one."""
    with Session(bind=conn) as session:
        two = (select(ContactIdentity.contact_id).group_by(ContactIdentity.contact_id)
               .having(func.count(func.distinct(ContactIdentity.source)) > 1).limit(1)).scalar_subquery()
        c = session.scalars(select(Contact).where(Contact.id == two)).first()
        if c is None:
            return None
        return {
            "id": c.id,
            "name": c.display_name,
            "lines": [f"{identity.kind_title(i.kind):8} "
                      f"{formats.phone(i.value) if i.kind == 'phone' and i.valid else i.value:26} "
                      + _("typed '%(raw)s' in %(source)s", raw=i.raw, source=i.source.removeprefix("import:"))
                      for i in c.identities],
        }
