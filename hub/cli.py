"""The `hub` command line.

Scripts depend on it: commands that report take --json and then print one
JSON document on stdout and nothing else; progress goes to stderr; a user
mistake ends in one line starting "Error:" and a non-zero exit, never a
traceback. Plugins add commands through the register_commands hook.
"""

from __future__ import annotations

import errno
import json
import sys
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import Engine, select

from hub import __version__, consent, contacts, dedupe, importer, migrations, plugins, queue, sync
from hub.config import Settings, SettingsError, ensure_secret_key, load_settings
from hub.consent import ConsentError
from hub.db import DatabaseUnavailable, get_engine, shown_url
from hub.models import Contact
from hub.segments.commands import segments_group
from hub.segments.evaluate import Segments
from hub.segments.lifecycle import Thresholds
from hub.segments.rules import SegmentError
from hub.spreadsheet import SpreadsheetError
from hub.sync import SyncError

stderr = Console(stderr=True)
USER_ERRORS = (SettingsError, SpreadsheetError, SyncError, ConsentError, SegmentError, FileNotFoundError,
               DatabaseUnavailable)


class App:
    """What every command needs, created on first use so `--help` works with a broken setting."""

    @cached_property
    def settings(self) -> Settings:
        return load_settings()

    @cached_property
    def engine(self) -> Engine:
        return get_engine(self.settings.database_url)

    def ready_engine(self) -> Engine:
        """The engine of a database at the current schema; otherwise a clear instruction."""
        engine = self.engine
        current = migrations.current_revision(engine)
        if current is None:
            raise click.ClickException(f"no Hub database at {safe_url(self.settings.database_url)}; run `hub init` first")
        if current != migrations.head_revision(engine):
            raise click.ClickException("the database schema is older than this Hub; run `hub init` to upgrade it")
        return engine


def safe_url(url: str) -> str:
    """A database URL fit for printing: no password, no query string (it may carry one too)."""
    return shown_url(url)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, default=str, indent=2))


def progress_bar(*, enabled: bool = True) -> Progress:
    """Progress on stderr, so stdout stays clean for --json and pipes."""
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed:,.0f} rows"), TimeElapsedColumn()]
    return Progress(*columns, console=stderr, disable=not enabled or not stderr.is_terminal, transient=False)


class HubGroup(click.Group):
    """Turns the errors a user can fix into one line instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        argv = _pending_args(ctx)  # click consumes them; kept to name a server's address on failure
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            raise click.ClickException(str(exc)) from None
        except OSError as exc:
            # A server command (`hub sandbox …`) that could not listen on its --host/--port.
            host, port = _listen_address(ctx, argv) if exc.errno in _LISTEN_ERRORS else (None, None)
            if port is None:
                raise
            raise click.ClickException(address_refused(host, port, exc.errno)) from None
        except ValueError as exc:
            if type(exc) is ValueError:
                raise click.ClickException(str(exc)) from None
            raise


_LISTEN_ERRORS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


def address_refused(host: str | None, port: int | None, code: int | None) -> str:
    """One line saying why a server command could not listen on host:port."""
    where = f"{host or '?'}:{port if port is not None else '?'}"
    if code == errno.EACCES:
        return f"нет прав слушать адрес {where} (порты ниже 1024 — только для root); укажите другой --port"
    if code == errno.EADDRNOTAVAIL:
        return f"адрес {where} не принадлежит этой машине; проверьте --host"
    return f"адрес {where} уже занят другой программой (или другим Hub); укажите другой --port"


def _pending_args(ctx: click.Context) -> list[str]:
    protected = getattr(ctx, "_protected_args", None)
    return [*(protected if protected is not None else ctx.protected_args), *ctx.args]


def _listen_address(ctx: click.Context, args: list[str]) -> tuple[str | None, int | None]:
    """The --host and --port (defaults included) of the subcommand `args` name, if it has a --port."""
    command: click.Command = ctx.command
    while isinstance(command, click.Group) and args:
        name, found, args = command.resolve_command(ctx, args)
        if found is None or name is None:
            return None, None
        ctx = found.make_context(name, list(args), parent=ctx, resilient_parsing=True)
        command, args = found, _pending_args(ctx)
    return ctx.params.get("host"), ctx.params.get("port")


@click.group(cls=HubGroup)
@click.version_option(__version__, prog_name="hub")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Hub: one clean customer base from Bitrix24, amoCRM and spreadsheets.

    Settings come from HUB_* environment variables and ./hub.toml
    (HUB_DATABASE_URL, HUB_REDIS_URL, HUB_DEFAULT_REGION, HUB_TIMEZONE, ...).
    """
    ctx.ensure_object(App)


pass_app = click.make_pass_decorator(App, ensure=True)


# --- init ---------------------------------------------------------------------------------

@cli.command()
@pass_app
def init(app: App) -> None:
    """Create or upgrade the database; safe to run again."""
    settings = ensure_secret_key(app.settings)
    if settings is not app.settings:
        click.echo(f"Generated HUB_SECRET_KEY and stored it in {settings.config_path}")
    before = migrations.current_revision(app.engine)
    migrations.upgrade(app.engine)
    after = migrations.current_revision(app.engine)
    state = "already up to date" if before == after else ("created" if before is None else "upgraded")
    click.echo(f"Database {safe_url(settings.database_url)}: {state} (schema {after})")


# --- import -------------------------------------------------------------------------------

@cli.group("import")
def import_group() -> None:
    """Import contacts from CSV or XLSX files."""


def _parse_map(values: Iterable[str]) -> dict[str, str]:
    mapping = {}
    for item in values:
        if "=" not in item:
            raise click.BadParameter(f"{item!r} is not COLUMN=FIELD", param_hint="--map")
        column, field = item.split("=", 1)
        mapping[column.strip()] = field.strip()
    return mapping


@import_group.command("contacts")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--source", help="Name recorded as where these contacts came from (default: import:FILENAME).")
@click.option("--map", "maps", multiple=True, metavar="COLUMN=FIELD",
              help="Map a column to a field (first_name, last_name, middle_name, full_name, phone, email, "
                   "birthday, city, source, gender, company, tags, external_id) or to 'ignore'. Repeatable.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_app
def import_contacts(app: App, file: Path, source: str | None, maps: tuple[str, ...], as_json: bool) -> None:
    """Import a spreadsheet of contacts: phones and emails normalized, duplicates merged.

    CSV in UTF-8 (with or without BOM) or Windows-1251, ';' or ',' separated,
    or XLSX. Columns are recognised by their Russian or English names.
    """
    engine = app.ready_engine()
    with progress_bar(enabled=not as_json) as bar:
        task = bar.add_task(f"Importing {file.name}", total=None)
        report = importer.import_contacts(engine, app.settings, file, source=source, mapping=_parse_map(maps),
                                          progress=lambda n: bar.advance(task, n))
    if as_json:
        emit_json(report.as_dict())
        return
    _print_import(report)


def _print_import(report: importer.ImportReport) -> None:
    table = Table(title=f"Imported {report.file}", show_header=False)
    rows = [("rows read", report.rows), ("new contacts", report.created),
            ("rows matched to a contact already known", report.merged),
            ("existing contacts merged together", report.contacts_merged),
            ("invalid phones kept, flagged", report.invalid_phones),
            ("invalid emails kept, flagged", report.invalid_emails), ("rows skipped", report.skipped_count)]
    if report.refused:
        rows.append(("rows of people erased on request, kept out", report.refused))
    for label, value in rows:
        table.add_row(label, f"{value:,}")
    Console().print(table)
    for item in report.skipped[:20]:
        click.echo(f"  line {item['line']}: {item['reason']}")
    if report.skipped_count > 20:
        click.echo(f"  … and {report.skipped_count - 20} more (see --json)")
    for item in report.warnings[:10]:
        click.echo(f"  line {item['line']}: {item['warning']}")
    click.echo(f"Done in {report.duration_s:.1f} s.")


# --- contacts -----------------------------------------------------------------------------

@cli.group("contacts")
def contacts_group() -> None:
    """List and show contacts."""


@contacts_group.command("list")
@click.option("--limit", type=int, default=None, help="At most this many contacts.")
@click.option("--segment", metavar="NAME", help="Only the contacts in this segment now (see `hub segments list`).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@pass_app
def contacts_list(app: App, limit: int | None, segment: str | None, as_json: bool) -> None:
    """List contacts with their normalized phones and emails."""
    engine = app.ready_engine()
    with engine.connect() as conn:
        rows = (Segments(conn, app.settings).contacts(segment) if segment else
                contacts.iter_contacts(conn, thresholds=Thresholds.from_settings(app.settings.extra)))
        if as_json:
            _stream_json_array(rows, limit)
            return
        table = Table("id", "name", "phones", "emails", "orders", "lifecycle")
        for n, c in enumerate(rows):
            if limit is not None and n >= limit:
                break
            name = " ".join(p for p in (c["last_name"], c["first_name"], c["middle_name"]) if p)
            table.add_row(str(c["id"]), name, ", ".join(c["phones"] + c["invalid_phones"]), ", ".join(c["emails"]),
                          str(c["orders_count"]), c["lifecycle"])
        Console().print(table)


def _stream_json_array(rows: Iterable[dict[str, Any]], limit: int | None) -> None:
    out = sys.stdout
    out.write("[")
    for n, row in enumerate(rows):
        if limit is not None and n >= limit:
            break
        out.write(",\n" if n else "\n")
        out.write(json.dumps(row, ensure_ascii=False, default=str))
    out.write("\n]\n")


@contacts_group.command("show")
@click.argument("contact_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def contacts_show(app: App, contact_id: int, as_json: bool) -> None:
    """One contact's card: identities and where each came from, orders, merges."""
    with app.ready_engine().connect() as conn:
        why = contacts.missing(conn, contact_id)
        if why is not None:
            raise click.ClickException(why)
        card = contacts.card(conn, contact_id, thresholds=Thresholds.from_settings(app.settings.extra))
        if card is not None:
            card["consent"] = [{"channel": ch, "purpose": p, "status": s}
                               for (ch, p), s in sorted(consent.current(conn, contact_id).items())]
    if card is None:
        raise click.ClickException(f"no contact with id {contact_id}")
    if as_json:
        emit_json(card)
        return
    name = " ".join(p for p in (card["last_name"], card["first_name"], card["middle_name"]) if p)
    click.echo(f"#{card['id']} {name}  ({card['lifecycle']}, {card['orders_count']} orders, {card['revenue']:.2f})")
    for ident in card["identities"]:
        flag = "" if ident["valid"] else "  [invalid, kept as typed]"
        click.echo(f"  {ident['kind']:5} {ident['value']:28} from {ident['source']}  (typed: {ident['raw']}){flag}")
    for ref in card["external_refs"]:
        click.echo(f"  ref   {ref['source']}:{ref['id']}")
    for m in card["merges"]:
        click.echo(f"  merged #{m['merged_id']} at {m['at']}: {m['reason']}")
    for c in card["consent"]:
        click.echo(f"  consent {c['channel']}/{c['purpose']}: {c['status']}")


# --- dedupe -------------------------------------------------------------------------------

@cli.command("dedupe")
@click.option("--merge", "merge_pair", nargs=2, type=int, metavar="SURVIVOR OTHER",
              help="Merge OTHER into SURVIVOR (a look-alike you have checked).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def dedupe_cmd(app: App, merge_pair: tuple[int, int] | None, as_json: bool) -> None:
    """Merge what the identity rules say; list same-name look-alikes for review."""
    engine = app.ready_engine()
    if merge_pair:
        try:
            result = dedupe.merge_by_hand(engine, *merge_pair, actor="cli")
        except ValueError as exc:  # a refused merge (dedupe.MergeRefused) or a wrong id: one line
            raise click.ClickException(str(exc)) from None
        if as_json:
            emit_json(result)
        else:
            click.echo(f"Merged #{result['merged']} into #{result['survivor']}.")
        return
    report = dedupe.run(engine, app.settings)
    if as_json:
        emit_json(report.as_dict())
        return
    click.echo(f"Re-read {report.reparsed} flagged values; merged {len(report.merged)} contacts by rule.")
    if report.suggestions:
        click.echo(f"{len(report.suggestions)} groups share a name only (never merged automatically):")
        for s in report.suggestions[:30]:
            ids = ", ".join(f"#{i}" for i in s["contact_ids"])
            click.echo(f"  {s['name']}: {ids} — {', '.join(s['evidence'])}")
        click.echo("Merge a checked pair with: hub dedupe --merge SURVIVOR OTHER")


# --- consent ------------------------------------------------------------------------------

@cli.group("consent")
def consent_group() -> None:
    """Record and show consent (an append-only ledger)."""


@consent_group.command("set")
@click.argument("contact_id", type=int)
@click.argument("channel")
@click.argument("purpose")
@click.argument("status", type=click.Choice(consent.STATUSES))
@click.option("--source", default="cli", show_default=True, help="Where the consent was given.")
@pass_app
def consent_set(app: App, contact_id: int, channel: str, purpose: str, status: str, source: str) -> None:
    """Record CHANNEL/PURPOSE consent for a contact (e.g. email marketing granted), as a staff entry.

    The ledger names who ran the command; a double opt-in waiting for the
    person's click cannot be granted from here (only the person's link does).
    """
    import getpass

    try:
        who = f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no user name in this environment
        who = "cli"
    with app.ready_engine().begin() as conn:
        if conn.execute(select(Contact.id).where(Contact.id == contact_id)).first() is None:
            raise click.ClickException(f"no contact with id {contact_id}")
        if status == "pending":
            consent.record(conn, contact_id, channel, purpose, status, source=source, settings=app.settings,
                           evidence={"via": "hub consent set", "by": consent.STAFF, "staff_user": who})
        else:
            try:
                consent.record_staff(conn, app.settings, contact_id, channel, purpose, status, staff=who,
                                     source=source, note="hub consent set")
            except consent.ConsentError as exc:
                raise click.ClickException(str(exc)) from None
    click.echo(f"Recorded: contact #{contact_id} {channel}/{purpose} {status} (source: {source}).")


@consent_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@pass_app
def consent_import(app: App, file: Path, as_json: bool) -> None:
    """Import consent collected elsewhere: CSV with email or phone, channel, purpose, status, source, date."""
    report = importer.import_consent(app.ready_engine(), app.settings, file)
    if as_json:
        emit_json(report.as_dict())
        return
    click.echo(f"{report.rows} rows: {report.recorded} recorded, {report.contacts_created} new contacts, "
               f"{len(report.skipped)} skipped.")
    for item in report.skipped[:20]:
        click.echo(f"  line {item['line']}: {item['reason']}")


@consent_group.command("show")
@click.argument("contact_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def consent_show(app: App, contact_id: int, as_json: bool) -> None:
    """Current consent per channel and purpose, and the full history behind it."""
    with app.ready_engine().connect() as conn:
        why = contacts.missing(conn, contact_id)
        if why is not None:
            raise click.ClickException(why)
        state = consent.current(conn, contact_id)
        events = consent.history(conn, contact_id)
    data = {"contact_id": contact_id,
            "current": [{"channel": ch, "purpose": p, "status": s} for (ch, p), s in sorted(state.items())],
            "history": events}
    if as_json:
        emit_json(data)
        return
    if not events:
        click.echo(f"No consent recorded for contact #{contact_id}.")
    for row in data["current"]:
        click.echo(f"{row['channel']}/{row['purpose']}: {row['status']}")
    for e in events:
        click.echo(f"  {e['at']:%Y-%m-%d %H:%M} {e['channel']}/{e['purpose']} {e['status']} via {e['source']}")


# --- plugins ------------------------------------------------------------------------------

@cli.command("plugins")
@click.option("--json", "as_json", is_flag=True)
def plugins_cmd(as_json: bool) -> None:
    """Installed plugins and the hooks each implements."""
    described = plugins.describe()
    if as_json:
        emit_json(described)
        return
    for p in described:
        version = f" {p['version']}" if p["version"] else ""
        click.echo(f"{p['name']}{version} [{p['kind']}]: {', '.join(p['hooks']) or '-'}")


# --- sync ---------------------------------------------------------------------------------

@cli.group("connect")
def connect_group() -> None:
    """Connect a CRM (each CRM plugin adds its own subcommand)."""


@cli.group("sandbox")
def sandbox_group() -> None:
    """Run a local emulator of a CRM, for trying Hub without a real account."""


@cli.command("sync")
@click.argument("source")
@click.option("--full", is_flag=True, help="Read everything, not only what changed since the last run.")
@click.option("--reconcile", is_flag=True,
              help="Afterwards, list every id the source holds and mark what it no longer has as deleted.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def sync_cmd(app: App, source: str, full: bool, reconcile: bool, as_json: bool) -> None:
    """Sync contacts and orders from a source plugin (e.g. bitrix24, amocrm)."""
    engine = app.ready_engine()
    with progress_bar(enabled=not as_json) as bar:
        tasks: dict[str, Any] = {}

        def advance(entity: str, n: int) -> None:
            if entity not in tasks:
                tasks[entity] = bar.add_task(f"{source}: {entity}", total=None)
            bar.advance(tasks[entity], n)

        report = sync.run(engine, app.settings, source, full=full, progress=advance)
    data = report.as_dict()
    if reconcile:
        swept = sync.reconcile(engine, app.settings, source).as_dict()
        data["contacts"]["deleted"] += swept["contacts"]["deleted"]
        data["orders"]["deleted"] += swept["orders"]["deleted"]
        for key in ("requests", "rate_limited"):
            if key in swept:
                data[key] = swept[key]
        data["duration_s"] = round(data["duration_s"] + swept["duration_s"], 3)
    if as_json:
        emit_json(data)
        return
    c, o = data["contacts"], data["orders"]
    requests = f"; {data['requests']} requests ({data.get('rate_limited', 0)} rate-limited)" if "requests" in data else ""
    refused = c.get("refused", 0) + o.get("refused", 0)
    kept_out = f"; {refused} records of people erased on request kept out" if refused else ""
    click.echo(f"{source} ({data['kind']}): contacts {c['created']} new, {c['updated']} updated, "
               f"{c['deleted']} deleted, {c['merged']} merged; orders {o['created']} new, {o['updated']} updated, "
               f"{o['deleted']} deleted; {data['errors']} errors{requests}{kept_out}; {data['duration_s']} s.")
    if data.get("interrupted"):
        runs = ", ".join(f"#{run_id}" for run_id in data["interrupted"])
        click.echo(f"Earlier run {runs} of {source} never finished (its process stopped or fell silent) "
                   "and is now marked interrupted; what it saved was kept.")


# --- queue --------------------------------------------------------------------------------

@cli.command("worker")
@click.option("--queue", "queues", multiple=True, help="Queues to listen on (default: high, default, low).")
@click.option("--burst", is_flag=True, help="Stop when the queues are empty.")
@pass_app
def worker_cmd(app: App, queues: tuple[str, ...], burst: bool) -> None:
    """Run an RQ worker (needs HUB_REDIS_URL); SIGTERM stops it once the message in hand is sent."""
    if not app.settings.redis_url:
        raise click.ClickException("HUB_REDIS_URL is not set; without Redis, jobs run in-process and need no worker")
    app.ready_engine()
    from redis.exceptions import ConnectionError as RedisConnectionError

    try:
        queue.work(app.settings, queues or queue.DEFAULT_QUEUES, burst=burst)
    except RedisConnectionError as exc:
        raise click.ClickException(f"cannot reach Redis at HUB_REDIS_URL: {str(exc).splitlines()[0]}") from None


from hub.schedule_commands import scheduler_cmd  # noqa: E402  (`hub scheduler`: syncs, reconcile, plugins' chores)

cli.add_command(scheduler_cmd)


# --- web ----------------------------------------------------------------------------------

@cli.command("admin")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option("--threads", type=click.IntRange(1, 256),
              help="Requests served at once, each holding one database connection while it runs "
                   "(default: 4 on SQLite, 8 on PostgreSQL).")
@pass_app
def admin_cmd(app: App, host: str, port: int, threads: int | None) -> None:
    """Serve the admin and the public routes (webhook receivers, unsubscribe links) with waitress."""
    import logging

    from hub import wsgi

    app.ready_engine()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("hub.access", "waitress"):
        logging.getLogger(name).setLevel(logging.INFO)
    # "Task queue depth is N" for every request that waits for a free thread: normal in a burst, noise in a log.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    threads = threads or wsgi.default_threads(app.settings.database_url)
    try:
        wsgi.serve(wsgi.create(app.settings), host, port, threads=threads,
                   ready=lambda url: click.echo(f"Hub admin: {url}/ (waitress, {threads} threads; Ctrl+C stops it)",
                                              err=True))
    except wsgi.PortInUse as exc:
        raise click.ClickException(address_refused(host, port, exc.errno)) from None


from hub.admin.users_cli import users_group  # noqa: E402  (`hub users add EMAIL --role ...`)

cli.add_command(users_group)


# --- sample data and demo -----------------------------------------------------------------

@cli.group("sample")
def sample_group() -> None:
    """Generate realistic messy sample data to try Hub on."""


@sample_group.command("contacts")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--people", type=int, default=1000, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--encoding", type=click.Choice(["utf-8-sig", "utf-8", "cp1251"]), default="cp1251", show_default=True)
@click.option("--delimiter", type=click.Choice([";", ","]), default=";", show_default=True)
def sample_contacts(out: Path, people: int, seed: int, encoding: str, delimiter: str) -> None:
    """Write a messy customer spreadsheet (CSV, or XLSX by extension) as offices export them."""
    from hub import sampledata

    rows = sampledata.spreadsheet_rows(sampledata.people(people, seed), seed)
    if out.suffix.lower() == ".xlsx":
        n = sampledata.write_xlsx(out, rows)
    else:
        n = sampledata.write_csv(out, rows, encoding=encoding, delimiter=delimiter)
    click.echo(f"Wrote {n} rows for {people} people to {out}")


@cli.command("demo")
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("hub-demo"),
              show_default=True, help="Where the demo keeps its database and files (recreated each run).")
@click.option("--people", type=int, default=3000, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
def demo_cmd(workdir: Path, people: int, seed: int) -> None:
    """Run Hub end to end on sample data with the embedded defaults, and show what it found and fixed."""
    from hub import demo

    demo.run(workdir, people=people, seed=seed, console=Console())


cli.add_command(segments_group)
from hub.scaffold import plugin_group  # noqa: E402  (`hub plugin new NAME`)

cli.add_command(plugin_group)


def main(argv: list[str] | None = None) -> None:
    """Entry point: load plugins (which may add commands), then run."""
    try:
        pm = plugins.get_pm()
    except SettingsError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(1) from None
    pm.hook.register_commands(cli=cli)
    cli.main(args=argv, prog_name="hub")

