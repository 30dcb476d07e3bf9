"""Finding and loading plugins.

Three ways in, checked in this order: the core's own modules (DEFAULT_PLUGINS,
always loaded), installed packages with an entry point in the "hub" group
(Hub's built-in CRM and channel plugins come this way too, so the plugin API
is proven by our own plugins), and every *.py file in HUB_PLUGINS_DIR.
HUB_PLUGINS, when set, is an allow-list of entry-point plugins: unset loads
them all, an empty value loads none.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import threading
from pathlib import Path
from typing import Any, Callable

import pluggy

from hub import hookspecs
from hub.config import Settings, SettingsError

DEFAULT_PLUGINS = ("hub.consent_ledger", "hub.schedule", "hub.admin.pages", "hub.outbox_hooks", "hub.send_limits",
                   "hub.commands", "hub.i18n", "hub.webapi.segments", "hub.webapi.contacts", "hub.webapi.orders",
                   "hub.webapi.chores", "hub.webhooks.hooks", "hub.events", "hub.webapi.events",
                   "hub.segments.events")

_pm: pluggy.PluginManager | None = None
# A background job may ask for the manager while a test or the app installs one: building
# from the environment must never replace a manager someone else installed meanwhile.
_pm_lock = threading.RLock()
# plugin manager id -> {plugin name: (package, version)} of entry-point plugins
_PACKAGES: dict[int, dict[str, tuple[str, str]]] = {}


def build(settings: Settings) -> pluggy.PluginManager:
    """A plugin manager with the core, the allowed installed plugins and the plugins directory."""
    pm = pluggy.PluginManager("hub")
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    installed = {ep.name: ep for ep in importlib.metadata.entry_points(group="hub")}
    if settings.plugins is not None:
        unknown = [n for n in settings.plugins if n not in installed]
        if unknown:
            have = ", ".join(sorted(installed)) or "none"
            raise SettingsError(f"HUB_PLUGINS: {', '.join(unknown)} not installed (installed: {have})")
    packages: dict[str, tuple[str, str]] = {}
    for name, ep in sorted(installed.items()):
        if settings.plugins is not None and name not in settings.plugins:
            continue
        if pm.get_plugin(name) is None:
            pm.register(ep.load(), name=name)
            if ep.dist is not None:
                packages[name] = (ep.dist.name, ep.dist.version)
    _PACKAGES[id(pm)] = packages
    if settings.plugins_dir:
        for path in sorted(Path(settings.plugins_dir).glob("*.py")):
            pm.register(_load_file(path), name=path.stem)
    return pm


def _load_file(path: Path) -> Any:
    module_name = f"hub_plugins_dir.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise SettingsError(f"HUB_PLUGINS_DIR: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def configure(settings: Settings) -> pluggy.PluginManager:
    """Build the process-wide plugin manager from these settings."""
    global _pm
    pm = build(settings)
    with _pm_lock:
        _pm = pm
    return pm


def use(pm: pluggy.PluginManager | None) -> None:
    """Install a ready plugin manager (tests use this to pick exactly their plugins)."""
    global _pm
    with _pm_lock:
        _pm = pm


def get_pm() -> pluggy.PluginManager:
    """The process-wide plugin manager, built from the environment on first use."""
    global _pm
    pm = _pm
    if pm is not None:
        return pm
    from hub.config import load_settings

    built = build(load_settings())
    with _pm_lock:
        if _pm is None:
            _pm = built
        return _pm


def describe(pm: pluggy.PluginManager | None = None) -> list[dict[str, Any]]:
    """Every plugin with where it came from and the hooks it implements."""
    pm = pm or get_pm()
    packages = _PACKAGES.get(id(pm), {})
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda np: np[0]):
        hooks = sorted(h.name for h in (pm.get_hookcallers(plugin) or []))
        package, version = packages.get(name, (None, None))
        if name in DEFAULT_PLUGINS:
            kind = "core"
        elif package:
            kind = "installed"
        elif getattr(plugin, "__name__", "").startswith("hub_plugins_dir."):
            kind = "directory"
        else:
            kind = "registered"
        out.append({"name": name, "kind": kind, "package": package, "version": version, "hooks": hooks})
    return out


def registry(hook_name: str, pm: pluggy.PluginManager | None = None, **arguments: Any) -> dict[str, Any]:
    """Collect what plugins register through a ``register_*`` hook, refusing duplicate names.

    `arguments` are the hook's arguments besides ``register`` (``settings`` for schedules).
    """
    pm = pm or get_pm()
    found: dict[str, Any] = {}

    def register(name: str, item: Any) -> None:
        if name in found:
            raise SettingsError(f"two plugins register {hook_name[9:].rstrip('s')} {name!r}")
        found[name] = item

    getattr(pm.hook, hook_name)(register=register, **arguments)
    return found


_kept: dict[tuple[int, str], tuple[pluggy.PluginManager, Any]] = {}


def kept(name: str, build: Callable[[], Any]) -> Any:
    """`build()`, once per plugin manager: what plugins register does not change while it lives.

    For answers asked per message (which variables a template fills per
    person, how a channel addresses people); a test's own manager gets its own.
    """
    pm = get_pm()
    found = _kept.get((id(pm), name))
    if found is None or found[0] is not pm:
        found = (pm, build())
        _kept[(id(pm), name)] = found
    return found[1]


def sources(pm: pluggy.PluginManager | None = None) -> dict[str, Callable[..., Any]]:
    return registry("register_sources", pm)
