"""The `hub` command line: the root command and what every command shares.

Scripts depend on it: commands that report take --json and then print one
JSON document on stdout and nothing else; progress goes to stderr; a user
mistake ends in one line starting "Error:" ("Ошибка:" in Russian, the
default language) and a non-zero exit, never a traceback. Everything people
read is in HUB_LANGUAGE, click's own texts too. The root holds no command:
plugins add theirs through the register_commands hook, and the core adds its
own the same way (hub.commands, one module per command). Command modules
import App, pass_app, emit_json, progress_bar and stderr from here; this
module imports none of them.
"""

from __future__ import annotations

import errno
import gettext as stdlib_gettext
import inspect
import json
import os
import re
import sys
from functools import cached_property
from typing import Any

import click
from babel.support import NullTranslations
from rich.console import Console
from rich.progress import BarColumn, Progress, ProgressColumn, SpinnerColumn, Task, TextColumn, TimeElapsedColumn
from rich.text import Text
from sqlalchemy import Engine

from hub import __version__, formats, i18n, migrations, plugins
from hub.config import Settings, SettingsError, load_settings
from hub.consent import ConsentError
from hub.db import MAX_ROW_ID, DatabaseUnavailable, get_engine, shown_url
from hub.i18n import N_, ngettext
from hub.i18n import gettext as _
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
        revisions = migrations.revisions(engine)  # the core's and every loaded plugin's: (in the database, shipped)
        if revisions[migrations.CORE][0] is None:
            raise click.ClickException(
                _("no Hub database at %(url)s; run `hub init` first", url=shown_url(self.settings.database_url)))
        if any(current != head for current, head in revisions.values()):
            raise click.ClickException(_("the database schema is older than this Hub; run `hub init` to upgrade it"))
        return engine




class RowId(click.ParamType):
    """A contact's, merge's or run's number: a whole number from 1 up to what the database can hold.

    A bigger one would reach the database driver as a number it cannot bind
    and end in a traceback; it is refused here with one line instead.
    """

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                self.fail(_("%(value)r is not a number", value=value), param, ctx)
        if not 1 <= number <= MAX_ROW_ID:
            self.fail(_("%(value)s is not a number Hub gives its records (they run from 1 to %(max)s)",
                        value=value, max=formats.number(MAX_ROW_ID)), param, ctx)
        return number


ROW_ID = RowId()


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, default=str, indent=2))


def progress_bar(*, enabled: bool = True) -> Progress:
    """Progress on stderr, so stdout stays clean for --json and pipes."""
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), RowsColumn(), TimeElapsedColumn()]
    return Progress(*columns, console=stderr, disable=not enabled or not stderr.is_terminal, transient=False)


class RowsColumn(ProgressColumn):
    """"1 234 строки": the rows done so far, in the language of the command that shows them.

    Rich redraws from a thread of its own, where the command's language is
    not set, so the language is taken when the column is made.
    """

    def __init__(self) -> None:
        super().__init__()
        self.language = i18n.current_language()

    def render(self, task: Task) -> Text:
        return Text(rows(int(task.completed), self.language))


def rows(count: int, language: str | None = None) -> str:
    """A count of spreadsheet or CRM rows: 1 строка, 2 строки, 5 строк."""
    with i18n.use_language(language or i18n.current_language()):
        return ngettext("%(num)s row", "%(num)s rows", count, num=formats.number(count))


class HubGroup(click.Group):
    """Speaks HUB_LANGUAGE, and turns the errors a user can fix into one line instead of a traceback."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        with i18n.use_language(_configured_language()):
            _speak_in_click()
            localize(self)
            return super().main(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        argv = _pending_args(ctx)  # click consumes them; kept to name a server's address on failure
        try:
            return super().invoke(ctx)
        except FileNotFoundError as exc:
            raise click.ClickException(_("%(path)s: no such file", path=exc.filename) if exc.filename
                                       else str(exc)) from None
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


def _configured_language() -> str:
    """HUB_LANGUAGE; a broken setting is reported by the command that needs settings.

    It is reported in the language HUB_LANGUAGE names, when that setting is
    the one that can still be read, and otherwise in the default language.
    """
    try:
        return load_settings().language
    except SettingsError:
        return i18n.normalize(os.environ.get("HUB_LANGUAGE"))


# Command help is written as docstrings and help= texts in English (the catalogs' msgids, found by
# hub.catalogs); each run shows them in the current language. The English originals are kept on the
# command, so a process that runs commands in two languages (tests) never translates a translation.
_ORIGINALS = "_hub_untranslated"


def localize(command: click.Command) -> None:
    """Show `command`, its options and subcommands (plugins' too) in the current language."""
    originals = command.__dict__.setdefault(_ORIGINALS, {
        "help": command.help, "short_help": command.short_help, "epilog": command.epilog})
    for name, text in originals.items():
        setattr(command, name, _translated_doc(text))
    if getattr(command, "_help_option", None) is not None:
        command._help_option = None  # click keeps --help's own help text from the run that made it; made again
    shown = command.__dict__.setdefault(_METAVARS_KEPT, {
        name: getattr(command, name) for name in ("options_metavar", "subcommand_metavar")
        if isinstance(getattr(command, name, None), str)})
    for name, text in shown.items():
        setattr(command, name, _translated_metavar(text))
    ctx = click.Context(command, info_name=command.name)
    for param in command.params:
        kept = param.__dict__.setdefault(_ORIGINALS, {
            name: getattr(param, name) for name in ("help", "prompt") if isinstance(getattr(param, name, None), str)})
        for name, text in kept.items():
            setattr(param, name, _translated_doc(text))
        if isinstance(param.type, click.Path):
            # "file", "directory" or "path" in click's "File 'x' does not exist.", named (in English) when the
            # option was made.
            kind = param.type.__dict__.setdefault(_ORIGINALS, param.type.name)
            param.type.name = _click_gettext(kind)
        _localize_metavar(param, ctx)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            localize(sub)


_METAVARS_KEPT = "_hub_untranslated_metavars"

# The words of click's metavars (made from a type's or an argument's name, or given by a command): shown in
# capitals where a value goes, translated as a whole word; URL, EMAIL and the like stay as they are.
_METAVAR_WORDS = frozenset((
    N_("OPTIONS"), N_("COMMAND"), N_("ARGS"), N_("TEXT"), N_("INTEGER"), N_("INTEGER RANGE"), N_("FLOAT"),
    N_("FLOAT RANGE"), N_("BOOLEAN"), N_("FILE"), N_("DIRECTORY"), N_("PATH"),
    N_("NAME"), N_("VALUE"), N_("COLUMN"), N_("FIELD"), N_("CHANNEL"),
    N_("CODE"), N_("CONTACT_ID"), N_("MESSAGE_ID"), N_("RUN_IDS"), N_("OUT"), N_("PURPOSE"), N_("SOURCE"),
    N_("TEMPLATE"), N_("VERSION"), N_("OLD"), N_("NEW"), N_("YYYY"), N_("MM"), N_("DD")))
_METAVAR_WORD = re.compile(r"[A-Z][A-Z0-9_]*(?: RANGE)?")
# strftime directives a date option shows as its format (click's DateTime), worded as a person writes them.
_DATE_PARTS = {"%Y": "YYYY", "%m": "MM", "%d": "DD", "%H": "hh", "%M": "mm", "%S": "ss"}


def _translated_metavar(text: str) -> str:
    catalog = _catalog()
    for directive, word in _DATE_PARTS.items():
        text = text.replace(directive, word)
    return _METAVAR_WORD.sub(
        lambda m: catalog.gettext(m.group(0)) if m.group(0) in _METAVAR_WORDS else m.group(0), text)


def _localize_metavar(param: click.Parameter, ctx: click.Context) -> None:
    """The placeholder `--help` and usage show for `param`'s value, in the current language.

    Click makes it from the type's name (TEXT, INTEGER) or the argument's
    name when the command gave none; the made one is translated and set, and
    the command's own (None included) is kept to start from on the next run.
    """
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return
    original = param.__dict__.setdefault(_METAVARS_KEPT, param.metavar)
    param.metavar = original
    english = param.make_metavar(ctx)
    translated = _translated_metavar(english)
    if translated != english:
        param.metavar = translated


def _translated_doc(text: str | None) -> str | None:
    return _catalog().gettext(inspect.cleandoc(text)) if text else text


def _catalog() -> NullTranslations:
    """The current language's catalogs (the core's alone while a broken setting keeps the plugins away)."""
    return i18n.translations(i18n.current_language())


def _speak_in_click() -> None:
    """Click's own texts (Usage, Options, its error messages) through Hub's catalogs.

    Click takes them from the standard gettext module, whose language comes
    from the process environment; its modules are pointed at Hub's current
    language instead, so HUB_LANGUAGE (and a test's choice) decides.
    """
    for name, module in list(sys.modules.items()):
        if name == "click" or name.startswith("click."):
            if getattr(module, "_", None) is stdlib_gettext.gettext:
                module._ = _click_gettext  # type: ignore[attr-defined]
            if getattr(module, "ngettext", None) is stdlib_gettext.ngettext:
                module.ngettext = _click_ngettext  # type: ignore[attr-defined]


def _click_gettext(message: str) -> str:
    return _catalog().gettext(message)


def _click_ngettext(singular: str, plural: str, count: int) -> str:
    return _catalog().ngettext(singular, plural, count)


_LISTEN_ERRORS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


def address_refused(host: str | None, port: int | None, code: int | None) -> str:
    """One line saying why a server command could not listen on host:port."""
    where = f"{host or '?'}:{port if port is not None else '?'}"
    if code == errno.EACCES:
        return _("no permission to listen on %(address)s (ports below 1024 are for root only); choose another --port",
                 address=where)
    if code == errno.EADDRNOTAVAIL:
        return _("the address %(address)s does not belong to this machine; check --host", address=where)
    return _("the address %(address)s is already taken by another program (or another Hub); choose another --port",
             address=where)


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
    (HUB_DATABASE_URL, HUB_REDIS_URL, HUB_DEFAULT_REGION, HUB_TIMEZONE, HUB_LANGUAGE, ...).
    """
    ctx.ensure_object(App)


pass_app = click.make_pass_decorator(App, ensure=True)


def main(argv: list[str] | None = None) -> None:
    """Entry point: load plugins, which add the commands (the core's own among them), then run."""
    with i18n.use_language(_configured_language()):  # a broken setting is named in the reader's language
        try:
            pm = plugins.get_pm()
        except SettingsError as exc:
            # The plugins did not load, and with them their catalogs: the core's says it.
            click.echo(_catalog().gettext(N_("Error: %(error)s")) % {"error": exc}, err=True)
            raise SystemExit(1) from None
    pm.hook.register_commands(cli=cli)
    cli.main(args=argv, prog_name="hub")

