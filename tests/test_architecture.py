"""The import contract: the core imports no plugin, plugins import no other plugin, and the command line has no cycle.

Read from the source (every import statement, those inside functions too),
so an import that only runs on some path breaks the contract here, not in
production.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def plugin_packages() -> dict[str, Path]:
    """Every plugin package by its import name: plugins/<name>, workflows, and the example's packages."""
    found = {f"plugins.{p.name}": p for p in sorted((ROOT / "plugins").iterdir()) if (p / "__init__.py").exists()}
    found["workflows"] = ROOT / "workflows"
    for src in sorted((ROOT / "examples").glob("*/src")):
        found.update({p.name: p for p in sorted(src.iterdir()) if (p / "__init__.py").exists()})
    return found


def module_name(path: Path, package_dir: Path, package: str) -> str:
    parts = list(path.relative_to(package_dir).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package, *parts])


def imports(path: Path, module: str) -> list[tuple[int, str]]:
    """(line, imported module) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_package = path.name == "__init__.py"
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[:len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from plugins import gdpr` imports plugins.gdpr: judged by what it takes from the module.
            out += [(node.lineno, target if alias.name == "*" else f"{target}.{alias.name}") for alias in node.names]
    return out


def within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


# What a plugin publishes for other plugins to build on (docs/plugins.md, "Stability"): a workflow
# step of another plugin subclasses workflows.steps.Step, as a channel implements hub.api's Channel.
PUBLISHED = ("workflows.steps",)


def violations(package_dir: Path, package: str, forbidden: list[str], allowed: tuple[str, ...] = ()) -> list[str]:
    """One line per import statement that reaches into a `forbidden` package (what is `allowed` aside)."""
    found: dict[tuple[Path, int], str] = {}
    for path in sorted(package_dir.rglob("*.py")):
        for line, name in imports(path, module_name(path, package_dir, package)):
            if (path, line) in found or any(within(name, a) for a in allowed):
                continue
            if any(within(name, other) for other in forbidden):
                shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
                found[(path, line)] = f"{shown}:{line} imports {name}"
    return list(found.values())


def test_imports_are_read_inside_functions_and_relative_ones_resolved(tmp_path: Path) -> None:
    pkg = tmp_path / "one"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import os\n\n\ndef hook():\n    from plugins import two\n", encoding="utf-8")
    (pkg / "sub.py").write_text("from . import helpers\nfrom .. import three\n", encoding="utf-8")
    assert violations(pkg, "plugins.one", ["plugins.two", "plugins.three"]) == [
        f"{pkg / '__init__.py'}:5 imports plugins.two", f"{pkg / 'sub.py'}:2 imports plugins.three"]
    assert violations(pkg, "plugins.one", ["plugins.one.helpers"]) == [
        f"{pkg / 'sub.py'}:1 imports plugins.one.helpers"]
    assert violations(pkg, "plugins.one", ["plugins.two", "plugins.three"], allowed=("plugins.two",)) == [
        f"{pkg / 'sub.py'}:2 imports plugins.three"]


def test_the_core_imports_no_plugin() -> None:
    assert violations(ROOT / "hub", "hub", ["plugins", "workflows", *plugin_packages()]) == []


def test_plugins_import_no_other_plugin() -> None:
    packages = plugin_packages()
    assert {"plugins.bitrix24", "plugins.amocrm", "plugins.gdpr", "plugins.mailing", "workflows", "hub_shop"} <= set(
        packages)
    found = []
    for name, path in packages.items():
        found += violations(path, name, [other for other in packages if other != name], allowed=PUBLISHED)
    assert found == []


CLI_MODULES = ["hub.cli", "hub.commands", "hub.segments.commands",
               *sorted(f"hub.commands.{p.stem}" for p in (ROOT / "hub" / "commands").glob("*.py")
                       if p.stem != "__init__")]


def test_every_command_module_imports_first_in_a_fresh_interpreter() -> None:
    # A cycle between the root and a command module shows only when that module is imported first.
    started = {name: subprocess.Popen([sys.executable, "-c", f"import {name}"], cwd=ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True) for name in CLI_MODULES}
    failed = {name: proc.communicate()[0][-2000:] for name, proc in started.items() if proc.wait() != 0}
    assert failed == {}


def test_the_root_command_imports_no_command_module() -> None:
    script = ("import sys, hub.cli\n"
              "loaded = sorted(m for m in sys.modules if m.startswith(('hub.commands', 'hub.segments.commands',"
              " 'plugins', 'workflows')))\n"
              "print(loaded, sorted(hub.cli.cli.commands))")
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []"


# Built-in plugins take the core through hub.api, like anyone's plugin. What they take from elsewhere
# in hub is listed here, by plugin and module, with the reason it is not public; a new import of
# the core from outside hub.api fails until it is either added to hub.api or listed here.
INTERNAL: dict[tuple[str, str], str] = {
    ("plugins.amocrm", "hub.jobs"): "the webhook queues the core's own job that re-reads records through hub.sync",
    ("plugins.bitrix24", "hub.jobs"): "the webhook queues the core's own job that re-reads records through hub.sync",
    ("plugins.amocrm", "hub.ratelimit"): "Place: the client settles its turn in the shared limiter on the socket",
    ("plugins.amocrm", "hub.sampledata"): "the emulator builds the demo's records from the demo's own vocabulary",
    ("plugins.bitrix24", "hub.sampledata"): "the emulator builds the demo's records from the demo's own vocabulary",
    ("plugins.gdpr", "hub.consent"): "the ledger's other side: suppressions, address hashes, history, counts",
    ("plugins.gdpr", "hub.identity"): "erasure and public sign-up work on identities, placeholders and merges",
    ("plugins.gdpr", "hub.models"): "export and erasure reach every core table that holds personal data",
    ("plugins.gdpr", "hub.db"): "erasure forgets rows the way the core does (forget_deleted)",
    ("plugins.gdpr", "hub.plugins"): "erasure asks every source to erase the person in its CRM too",
    ("plugins.gdpr", "hub.csvsafe"): "the export writes spreadsheet-safe CSV like the core's exports",
    ("plugins.gdpr", "hub.links"): "the plugin serves the signed links' routes, so it reads the tokens the core makes",
    ("plugins.gdpr", "hub.message_templates"): "the double opt-in letter, and previews of the public pages",
    ("plugins.gdpr", "hub.messaging"): "the double opt-in letter goes through the outbox at once, as transactional",
    ("plugins.gdpr", "hub.normalize"): "public sign-up normalizes what a person typed as sync does",
    ("plugins.gdpr", "hub.sync"): "public sign-up writes the contact through the sync path",
    ("plugins.gdpr", "hub.ratelimit"): "the public forms' limits use the limiter's buckets directly",
    ("plugins.mailing", "hub.links"): "`hub messages` reports a broken signed link like the routes do",
    ("plugins.mailing", "hub.message_templates"): "`hub templates` is this plugin's command line over the templates",
    ("plugins.mailing", "hub.messaging"): "`hub messages` is this plugin's command line over the outbox",
    ("plugins.mailing", "hub.segments.evaluate"): "`hub messages send --segment` picks recipients by a segment",
    ("plugins.mailing", "hub.segments.rules"): "`hub messages send --segment` reports a segment's errors",
    ("plugins.mailing", "hub.template_versions"): "`hub templates add` keeps a version like the admin's editor does",
    ("plugins.mailing", "hub.template_sandbox"): "the SMS gateway's body template renders in the templates' sandbox",
    ("workflows", "hub.db"): "the demo's showcase moves the clock the whole engine reads, a week on, and back",
    ("workflows", "hub.admin.contact_search"): "the try-on-a-contact page picks a person with the contacts search",
    ("workflows", "hub.admin"): "the workflow builder draws an `if` with the segment rule editor (rule_model, catalog)",
    ("workflows", "hub.events"): "the workflow builder offers the names of the events other systems sent",
    ("workflows", "hub.message_templates"): "steps render templates for StepCall.template (public in workflows.steps)",
    ("workflows", "hub.messaging"): "the campaign engine writes outbox rows and dispatches them",
    ("workflows", "hub.models"): "segment triggers read segments and their members",
    ("workflows", "hub.plugins"): "the registry of workflow steps that plugins register",
    ("workflows", "hub.problems"): "workflow files report their problems like segment files",
    ("workflows", "hub.schedule"): "`hub workflows` takes the scheduler's lock",
    ("workflows", "hub.segments"): "conditions and triggers are written in the segment rule language itself",
    ("workflows", "hub.segments.evaluate"): "conditions and triggers are written in the segment rule language itself",
    ("workflows", "hub.segments.explain"): "an `if` rule is worded on workflow pages as the segment pages word it",
    ("workflows", "hub.segments.fields"): "conditions and triggers are written in the segment rule language itself",
    ("workflows", "hub.segments.rules"): "conditions and triggers are written in the segment rule language itself",
    ("workflows", "hub.segments.store"): "a workflow file is checked against the saved segments",
    ("workflows", "hub.template_variables"): "the builder offers a task's text the template editor's variables",
}


def core_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, hub module, name) for every import of the core outside hub.api; name "*" for a whole module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, "*") for a in node.names if within(a.name, "hub") and a.name != "hub.api"]
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module and within(node.module, "hub"):
            if node.module == "hub":
                out += [(node.lineno, f"hub.{a.name}", "*") for a in node.names if a.name != "api"]
            elif node.module != "hub.api":
                out += [(node.lineno, node.module, a.name) for a in node.names]
    return out


def built_in_plugins() -> dict[str, Path]:
    return {name: path for name, path in plugin_packages().items()
            if name.startswith("plugins.") or name == "workflows"}


def test_built_in_plugins_take_the_core_through_hub_api() -> None:
    import importlib

    import hub.api

    public = {id(getattr(hub.api, n)) for n in hub.api.__all__ if n in vars(hub.api)}
    outside, in_the_api = [], []
    for package, package_dir in built_in_plugins().items():
        for path in sorted(package_dir.rglob("*.py")):
            for line, module, name in core_imports(path):
                where = f"{path.relative_to(ROOT)}:{line} {module}" + ("" if name == "*" else f".{name}")
                if name != "*" and id(getattr(importlib.import_module(module), name, None)) in public:
                    in_the_api.append(where)
                elif (package, module) not in INTERNAL:
                    outside.append(where)
    assert in_the_api == [], "hub.api has these: import them from there"
    assert outside == [], "add these to hub.api (documented) or to INTERNAL with the reason they are internal"


def test_every_internal_import_listed_is_still_used() -> None:
    used = {(package, module) for package, package_dir in built_in_plugins().items()
            for path in package_dir.rglob("*.py") for _, module, _ in core_imports(path)}
    assert sorted(set(INTERNAL) - used) == []


def test_core_imports_are_read_as_modules_and_names(tmp_path: Path) -> None:
    source = tmp_path / "step.py"
    source.write_text("from hub import api, consent\nfrom hub.api import Settings\nimport hub.models\n"
                      "import hub.api\n\n\ndef run():\n    from hub.config import load_settings\n", encoding="utf-8")
    assert core_imports(source) == [(1, "hub.consent", "*"), (3, "hub.models", "*"),
                                    (8, "hub.config", "load_settings")]
