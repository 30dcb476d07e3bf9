"""`hub plugin new NAME`: a plugin package to start from, installable and tested from its first minute.

A first plugin stumbles over the same things every time: the entry point, the
exact signature of each hook, which names a plugin may import, how to test it
against a real Hub. The template in template/ answers all of them with one
small, working example of each kind of hook and tests that pass as generated,
so an author starts from green and changes one thing at a time.

The template is plain files with placeholders (`@@name@@`, `@@package@@`,
`@@project@@`, `@@env@@`) replaced by string substitution: no template
language, because the generated files contain Jinja syntax of their own (a
workflow step's text) that must come out untouched. Every file name ends in
`.tmpl` so that nothing in the template is mistaken for Hub's own code (by
pytest, linters or the import system), and `gitignore` gains its dot only when
written, since package data is collected without dotfiles.
"""

from __future__ import annotations

import importlib.metadata
import keyword
import re
import shlex
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Iterator, Mapping

import click

from hub.i18n import N_
from hub.i18n import gettext as _

__all__ = ["ScaffoldError", "create", "names_for", "normalize", "check_name", "taken_names", "plugin_group"]

SUFFIX = ".tmpl"
RENAMED = {"gitignore": ".gitignore"}
MAX_LENGTH = 40  # leaves room for derived names (segment `NAME_gold`: 64 characters at most)
_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
_PLACEHOLDER = re.compile(r"@@[a-z_]+@@")


class ScaffoldError(ValueError):
    """The plugin cannot be created as asked; the text says why and what to do instead."""


def normalize(raw: str) -> str:
    """The plugin name a user meant: `My-CRM` becomes `my_crm`, as Python and environment variables need."""
    return raw.strip().lower().replace("-", "_")


def names_for(name: str) -> dict[str, str]:
    """Every name the template derives from the plugin's name, so they cannot drift apart.

    `my_crm` gives the distribution `hub-my-crm`, the import package `hub_my_crm`
    and the settings prefix `MY_CRM` (HUB_MY_CRM_FILE).
    """
    return {"name": name, "package": f"hub_{name}", "project": f"hub-{name.replace('_', '-')}", "env": name.upper()}


def taken_names(root: click.Group | None = None) -> dict[str, str]:
    """Names a new plugin must not have, each with the reason, checked before anything is written.

    A clash would not show at once: an installed plugin of the same name hides
    one of the two, a command group of the same name replaces `hub NAME`, and
    a source or channel of the same name stops Hub with "two plugins register"
    only when both are installed. Plugins' own commands count too when `root`
    is the running `hub` (they are added before the command line is parsed).
    """
    taken: dict[str, str] = {}
    for ep in importlib.metadata.entry_points(group="hub"):
        if ep.dist is not None:
            why = _("a Hub plugin called %(name)r is installed already (package %(package)s %(version)s)",
                    name=ep.name, package=ep.dist.name, version=ep.dist.version)
        else:
            why = _("a Hub plugin called %(name)r is installed already", name=ep.name)
        taken.setdefault(ep.name, why)
    for command in (root.commands if root is not None else {}):
        taken.setdefault(command, _("`hub %(command)s` is a command already", command=command))
    from hub import plugins
    from hub.config import SettingsError

    try:
        pm = plugins.get_pm()
        for hook, says in (("register_sources", N_("an installed plugin has a source called %(name)r")),
                           ("register_channels", N_("an installed plugin has a channel called %(name)r"))):
            for registered in plugins.registry(hook, pm):
                taken.setdefault(registered, _(says, name=registered))
    except SettingsError:
        pass  # a broken setting is reported by the commands that need plugins; the checks above still hold
    return taken


def check_name(name: str, taken: Mapping[str, str]) -> None:
    """Refuse a name that cannot be a Python package, a setting and a command, or that is in use."""
    if not _NAME.match(name):
        raise ScaffoldError(_("%(name)r cannot be a plugin name: use lower-case latin letters, digits and _ or -, "
                              "starting with a letter (e.g. acme or my-crm)", name=name))
    if keyword.iskeyword(name):
        raise ScaffoldError(_("%(name)r cannot be a plugin name: it is a Python keyword", name=name))
    if name.startswith("hub_"):
        # Most likely the distribution's name typed for the plugin's: hub-hub-acme helps nobody.
        meant = name[4:] or "acme"
        raise ScaffoldError(_("%(name)r: give the plugin's own name, without hub- (`hub plugin new %(meant)s` makes "
                              "the package %(project)s)", name=name, meant=meant, project=names_for(meant)["project"]))
    if len(name) > MAX_LENGTH:
        raise ScaffoldError(_("%(name)r is too long for a plugin name: at most %(max)s characters", name=name,
                              max=MAX_LENGTH))
    if name in taken:
        raise ScaffoldError(_("%(name)r cannot be the plugin's name: %(why)s; choose another name", name=name,
                              why=taken[name]))


def _walk(folder: Traversable, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Traversable]]:
    """Every template file with its path parts; only `.tmpl` files, so stray files never reach a project."""
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            yield from _walk(entry, (*prefix, entry.name))
        elif entry.name.endswith(SUFFIX):
            yield (*prefix, entry.name), entry


def _fill(text: str, values: Mapping[str, str], where: str) -> str:
    """Placeholders replaced; one left over is a mistake in the template, caught here rather than by a user."""
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    left = _PLACEHOLDER.search(text)
    if left:
        raise RuntimeError(f"template {where}: unknown placeholder {left.group(0)}")
    return text


def render(name: str) -> dict[Path, str]:
    """The project for plugin `name`: relative path → text, all in memory so nothing half-made is written."""
    values = names_for(name)
    out: dict[Path, str] = {}
    for parts, entry in _walk(files(__name__).joinpath("template")):
        where = "/".join(parts)
        *folders, filename = [_fill(part, values, where) for part in parts]
        filename = filename.removesuffix(SUFFIX)
        out[Path(*folders, RENAMED.get(filename, filename))] = _fill(entry.read_text(encoding="utf-8"), values, where)
    return out


def create(name: str, directory: Path, *, taken: Mapping[str, str] | None = None) -> list[Path]:
    """Write the project for plugin `name` (already normalized) into `directory`; the files written, relative.

    `directory` may exist only if it is empty: a project is never written over
    someone's files, not even partly.
    """
    check_name(name, taken_names() if taken is None else taken)
    if directory.exists():
        if not directory.is_dir():
            raise ScaffoldError(_("%(dir)s exists and is not a directory; choose another --dir", dir=directory))
        if any(directory.iterdir()):
            raise ScaffoldError(_("%(dir)s exists and is not empty; nothing was written (choose another --dir)",
                                  dir=directory))
    project = render(name)
    for relative, text in project.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return sorted(project)


# --- the command line -------------------------------------------------------------------------------

@click.group("plugin")
def plugin_group() -> None:
    """Write plugins of your own (see `hub plugins` for the ones installed)."""


@plugin_group.command("new")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None,
              help="Where to create the project (default: ./hub-NAME); it must not exist or be empty.")
@click.pass_context
def new_cmd(ctx: click.Context, name: str, directory: Path | None) -> None:
    """Create a pip-installable plugin package NAME with an example of every kind of hook, and its tests."""
    plugin = normalize(name)
    names = names_for(plugin)
    target = directory if directory is not None else Path(names["project"])
    root = ctx.find_root().command
    try:
        written = create(plugin, target, taken=taken_names(root if isinstance(root, click.Group) else None))
    except ScaffoldError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(_("Created %(dir)s for the plugin %(name)s (package %(package)s, distribution %(project)s):",
                 dir=target, name=plugin, package=names["package"], project=names["project"]))
    for relative in written:
        click.echo(f"  {target / relative}")
    click.echo(_("Next steps:"))
    for step in (f"cd {shlex.quote(str(target))}",
                 "pip install -e .    # " + _("into the environment where Hub is installed"),
                 "hub plugins         # " + _("lists %(name)s [%(kind)s] and its hooks", name=plugin,
                                                 kind=_("installed")),
                 "pytest"):
        click.echo(f"  {step}")
