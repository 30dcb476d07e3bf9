"""Message templates: where they are kept, and how they are rendered safely.

Templates are edited by marketers, not programmers, so they render in Jinja2's
ImmutableSandboxedEnvironment (no access to Python internals, no changing the
objects it is given, bounded output, loops and time: see hub.template_sandbox),
each render gets fresh copies of its context, HTML is autoescaped (a
customer named `<script>` stays text), and StrictUndefined turns a misspelt
variable into an error instead of a blank in ten thousand letters. A template
is rendered against a sample contact before it is saved, and every error names
the template, the part and the line.

A template is found in the database first (`hub templates add`), then in the
folder HUB_TEMPLATES_DIR, then in the folders plugins ship (the
register_template_dirs hook). On disk a template is a folder named after it:

    NAME/subject.txt   the subject line (email templates only)
    NAME/body.txt      the text; for SMS and other text channels, the message itself; an
                       email template may leave it empty, and its text part is then
                       written from the HTML when it renders (hub.html_text)
    NAME/body.html     the HTML part (email templates only, optional)
    NAME/meta.yaml     optional: `title:` and `description:`, what the template is
                       for, in English (shipped templates' are translated through the
                       catalogs, hub.i18n.title); without it the admin shows the name.
                       An edited copy in the database keeps the title of the folder it
                       overrides; `hub templates export` writes it out along with the parts

A folder with a subject is an email template; one without is a text template
(SMS and other text channels).
"""

from __future__ import annotations

import datetime as dt
import re
import traceback
from dataclasses import dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

from babel import Locale
from jinja2 import StrictUndefined, TemplateError as JinjaError, TemplateSyntaxError
from sqlalchemy import Connection, delete, select

from hub import html_text, template_sandbox
from hub.config import Settings
from hub.db import insert_for, utcnow
from hub.i18n import gettext as _
from hub.models import MessageTemplate

templates_t = MessageTemplate.__table__

EMAIL = "email"
FILES = {"subject": "subject.txt", "text": "body.txt", "html": "body.html"}
META = "meta.yaml"
META_KEYS = ("title", "description")
COMPANY_KEYS = ("name", "phone", "email", "website", "address", "legal_name", "inn", "ogrn")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")


class TemplateError(ValueError):
    """A template that cannot be found, saved or rendered; the message says where."""


def needs_subject(name: str) -> str:
    """The error of an email template without a subject (checked before saving and before a preview)."""
    return _("%(name)s: an email template needs a subject", name=name)


@dataclass(frozen=True)
class Template:
    name: str
    channel: str
    text: str
    subject: str | None = None
    html: str | None = None
    origin: str = "database"  # "database" or the folder it was read from
    title: str | None = None  # from the folder's meta.yaml: what the template is for
    description: str | None = None

    @property
    def is_email(self) -> bool:
        return self.channel == EMAIL


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str | None
    text: str
    html: str | None


# --- rendering ----------------------------------------------------------------------------

def _finalize(value: Any) -> Any:
    # A contact without a city renders as nothing, not as "None".
    return "" if value is None else value


def _date(value: Any, fmt: str = "%d.%m.%Y") -> str:
    """{{ promo.expires_at|date }} → 31.12.2025; any strftime format may be given."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = dt.date.fromisoformat(value[:10])
    return value.strftime(fmt)


def _money(value: Any, currency: str = "₽") -> str:
    """{{ contact.revenue|money }} → 12 500 ₽ (kopecks only when there are any)."""
    if value is None or value == "":
        return ""
    amount = Decimal(str(value))
    text = f"{amount:,.0f}" if amount == amount.to_integral_value() else f"{amount:,.2f}"
    return f"{text.replace(',', ' ').replace('.', ',')} {currency}".strip()


_RUSSIAN = Locale("ru")


def _plural(n: Any, one: str, few: str, many: str) -> str:
    """{{ days|plural('день', 'дня', 'дней') }} → 1 день, 3 дня, 5 дней (Russian rules, from Babel)."""
    count = int(n)
    form = _RUSSIAN.plural_form(abs(count))  # "one", "few", "many" (and "other" for fractions, never here)
    return f"{count} {one if form == 'one' else few if form == 'few' else many}"


def _environment(autoescape: bool) -> template_sandbox.LimitedSandbox:
    env = template_sandbox.LimitedSandbox(autoescape=autoescape, undefined=StrictUndefined, finalize=_finalize,
                                          keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(date=_date, money=_money, plural=_plural)
    return env


_TEXT_ENV = _environment(autoescape=False)
_HTML_ENV = _environment(autoescape=True)
_compiled: dict[tuple[bool, str], Any] = {}
_CACHE_LIMIT = 512


def _compile(source: str, html: bool) -> Any:
    key = (html, source)
    compiled = _compiled.get(key)
    if compiled is None:
        if len(_compiled) >= _CACHE_LIMIT:
            _compiled.clear()
        compiled = _compiled[key] = (_HTML_ENV if html else _TEXT_ENV).from_string(source)
    return compiled


def _template_line(exc: BaseException) -> int | None:
    """The template line an error was raised on (Jinja rewrites tracebacks to show it)."""
    if isinstance(exc, TemplateSyntaxError):
        return exc.lineno
    lines = [f.lineno for f in traceback.extract_tb(exc.__traceback__) if f.filename == "<template>"]
    return lines[-1] if lines else None


def _render_part(template: Template, part: str, source: str, context: Mapping[str, Any]) -> str:
    try:
        return template_sandbox.render(_compile(source, html=part == "html"), context)
    except (JinjaError, ArithmeticError, TypeError, ValueError, LookupError, AttributeError, RecursionError,
            MemoryError) as exc:
        line = _template_line(exc)
        # The part is named as its file and `hub templates` name it (subject, text, html).
        where = (_("%(name)s, %(part)s line %(line)s", name=template.name, part=part, line=line) if line
                 else f"{template.name}, {part}")
        if isinstance(exc, RecursionError):
            message = _("the template's macros call each other too deeply")
        elif isinstance(exc, MemoryError):
            message = _("the template ran out of memory")
        elif isinstance(exc, JinjaError):
            message = jinja_message(exc.message or str(exc))
        else:
            message = str(exc)
        raise TemplateError(f"{where}: {message}") from None


# Jinja names the tokens it expected in words; a marketer knows them by what they type.
_TOKENS = {"end of print statement": "}}", "end of statement block": "%}", "begin of print statement": "{{",
           "begin of statement block": "{%", "end of template": None}


def _token(description: str) -> str:
    token = _TOKENS.get(description, description)
    return _("the end of the template") if token is None else token


_OPEN_BLOCK = r"(?: Jinja was looking for the following tags: (?P<tags>.+?)\. " \
              r"The innermost block that needs to be closed is '(?P<block>\w+)'\.)?"
_JINJA_ERRORS: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"unexpected end of template, expected '(?P<token>.+)'\.?"),
     lambda m: _("the template ends too early: '%(token)s' is missing", token=_token(m["token"]))),
    (re.compile(r"Unexpected end of template\." + _OPEN_BLOCK),
     lambda m: _("the template ends before the '%(block)s' block is closed: add {%% end%(block)s %%}",
                 block=m["block"]) if m["block"] else _("the template ends too early")),
    (re.compile(r"unexpected '(?P<token>.+)'"), lambda m: _("unexpected '%(token)s'", token=_token(m["token"]))),
    (re.compile(r"expected token '(?P<expected>.+)', got '(?P<found>.+)'"),
     lambda m: _("expected '%(expected)s' but found '%(found)s'", expected=_token(m["expected"]),
                 found=_token(m["found"]))),
    (re.compile(r"Expected an expression, got '(?P<found>.+)'"),
     lambda m: _("expected a variable or a value but found '%(found)s'", found=_token(m["found"]))),
    (re.compile(r"Encountered unknown tag '(?P<tag>\w+)'\." + _OPEN_BLOCK),
     lambda m: _("unknown tag '%(tag)s' (the '%(block)s' block is still open)", tag=m["tag"], block=m["block"])
     if m["block"] else _("unknown tag '%(tag)s'", tag=m["tag"])),
    (re.compile(r"'(?P<name>\w+)' is undefined"), lambda m: _("undefined variable '%(name)s'", name=m["name"])),
    (re.compile(r"'[^']+' has no attribute '(?P<name>\w+)'"),
     lambda m: _("no field '%(name)s' here", name=m["name"])),
    (re.compile(r"No filter named '(?P<name>\w+)'\.?"), lambda m: _("unknown filter '%(name)s'", name=m["name"])),
]


def jinja_message(message: str) -> str:
    """Jinja's error in the reader's language, for the common mistakes; any other stays as Jinja wrote it.

    The people who edit templates read the message next to their text; an English
    parser message inside a Russian sentence helps none of them.
    """
    message = message.strip()
    for pattern, explain in _JINJA_ERRORS:
        match = pattern.fullmatch(message)
        if match:
            return str(explain(match))
    return message


def render(template: Template, context: Mapping[str, Any]) -> Rendered:
    """Render every part; a subject is folded onto one line so it cannot inject headers.

    The context is copied first: callers share objects between recipients
    (the company details), and a render must never see another's changes.
    """
    context = template_sandbox.fresh(context)
    subject = None
    if template.subject is not None:
        subject = " ".join(_render_part(template, "subject", template.subject, context).split())
    text = _render_part(template, "text", template.text, context) if template.text.strip() else ""
    if not template.is_email:  # an SMS pays for every character, a stray newline included
        text = text.strip()
    html = _render_part(template, "html", template.html, context) if template.html else None
    if html is not None and not text.strip():
        text = html_text.to_text(html)  # a letter written only in HTML still has a text part to read
    return Rendered(subject=subject, text=text, html=html)


def writes_text(template: Template) -> bool:
    """False when the text part is written from the HTML (an email template with no text of its own)."""
    return bool(template.text.strip()) or not template.html


# --- context ------------------------------------------------------------------------------

def company(settings: Settings) -> dict[str, str]:
    """Company details for templates: the [company] table of hub.toml, or HUB_COMPANY_NAME etc."""
    table = settings.extra.get("company")
    values = dict(table) if isinstance(table, Mapping) else {}
    for key in COMPANY_KEYS:
        flat = settings.extra.get(f"company_{key}")
        if flat is not None:
            values[key] = flat
    return {key: str(values.get(key) or "") for key in COMPANY_KEYS} | {
        k: v for k, v in values.items() if k not in COMPANY_KEYS}


def local_time(settings: Settings, value: Any) -> Any:
    """Aware datetimes shown in the company's time zone; dates and text unchanged."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(settings.tz)
    return value


def sample_contact(settings: Settings) -> dict[str, Any]:
    now = utcnow()
    return {
        "id": 0, "first_name": "Анна", "last_name": "Иванова", "middle_name": "Сергеевна",
        "full_name": "Иванова Анна Сергеевна", "city": "Москва", "birthday": dt.date(1990, 3, 14),
        "gender": "f", "company": "", "email": "anna@example.ru", "phone": "+79161234567", "tags": ["vip"],
        "attributes": {}, "orders_count": 3, "revenue": Decimal("12500.00"),
        "first_order_at": local_time(settings, now - dt.timedelta(days=400)),
        "last_order_at": local_time(settings, now - dt.timedelta(days=120)),
    }


# The token of every link in a preview: the public pages answer it with "this is a preview".
PREVIEW_TOKEN = "preview"


def preview_links(settings: Settings) -> dict[str, str]:
    """The link variables of anything that is not a real send: checks, previews, samples.

    A preview is read by staff, not by the contact; a real signed link in it would let
    staff record an unsubscribe or a consent that looks like the customer's own. These
    links carry no signature and lead to a page that says it is a preview.
    """
    from hub import links

    base = links.public_url(settings)
    return {"unsubscribe_url": f"{base}/u/{PREVIEW_TOKEN}",
            "preferences_url": f"{base}/preferences/{PREVIEW_TOKEN}",
            "confirm_url": f"{base}/confirm/{PREVIEW_TOKEN}"}


def sample_context(settings: Settings, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a template is checked against before it is saved: every variable Hub provides."""
    context = {
        "contact": sample_contact(settings),
        "promo": {"code": "ANNA-7K2Q", "discount": 15,
                  "expires_at": local_time(settings, utcnow() + dt.timedelta(days=14))},
        **preview_links(settings),
        "company": company(settings),
    }
    return context | dict(extra or {})


def preview_context(settings: Settings, contact: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a preview renders against: the sample (or the given contact's data) with preview links only."""
    context = sample_context(settings)
    if contact is not None:
        context["contact"] = contact
    return context


def validate(template: Template, settings: Settings, extra: Mapping[str, Any] | None = None) -> Rendered:
    """Check a template's shape and render it against the sample; raises TemplateError."""
    if not _NAME.match(template.name):
        raise TemplateError(_("template name '%(name)s': use Latin letters, digits, '_' and '-' (at most 100)",
                              name=template.name))
    if not template.text.strip() and not (template.is_email and (template.html or "").strip()):
        raise TemplateError(_("%(name)s: the text part is empty", name=template.name))
    if template.is_email and not (template.subject or "").strip():
        raise TemplateError(needs_subject(template.name))
    if not template.is_email and (template.subject or template.html):
        raise TemplateError(_("%(name)s: a %(channel)s template has only a text part (no subject or HTML)",
                              name=template.name, channel=template.channel))
    return render(template, sample_context(settings, extra))


# --- where templates are kept -------------------------------------------------------------

def template_dirs(settings: Settings) -> list[Path]:
    """Folders searched after the database: HUB_TEMPLATES_DIR, then those plugins ship."""
    from hub.plugins import get_pm

    dirs: list[Path] = []
    own = settings.extra.get("templates_dir")
    if own:
        dirs.append(Path(str(own)))

    def register(path: str | Path) -> None:
        dirs.append(Path(path))

    get_pm().hook.register_template_dirs(register=register)
    return dirs


def read_dir(path: Path) -> Template:
    """A template from its folder (subject.txt, body.txt, body.html, and meta.yaml when there is one)."""
    parts = {}
    for part, filename in FILES.items():
        file = path / filename
        parts[part] = file.read_text(encoding="utf-8") if file.is_file() else None
    if parts["text"] is None:
        raise TemplateError(_("%(path)s: no %(file)s", path=str(path), file=FILES["text"]))
    channel = EMAIL if parts["subject"] is not None or parts["html"] is not None else "sms"
    subject = parts["subject"].strip() if parts["subject"] is not None else None
    meta = read_meta(path)
    return Template(name=path.name, channel=channel, subject=subject, text=parts["text"], html=parts["html"],
                    origin=str(path), title=meta.get("title"), description=meta.get("description"))


def read_meta(path: Path) -> dict[str, str]:
    """The title and description a template folder's meta.yaml gives (none without one).

    They only describe the template to the people choosing it, so a broken
    meta.yaml costs the template its title, never its use: letters are not
    held back by a typo in a description.
    """
    import yaml

    file = path / META
    if not file.is_file():
        return {}
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return {}
    if not isinstance(document, dict):
        return {}
    return {key: " ".join(value.split()) for key in META_KEYS
            if isinstance(value := document.get(key), str) and value.strip()}


def write_dir(template: Template, path: Path) -> list[Path]:
    """Write a template as a folder that `hub templates add --from` reads back (meta.yaml too, when it has one)."""
    import yaml

    path.mkdir(parents=True, exist_ok=True)
    written = []
    for part, filename in FILES.items():
        value = getattr(template, part)
        if value is not None:
            (path / filename).write_text(value if part != "subject" else value + "\n", encoding="utf-8")
            written.append(path / filename)
    meta = {key: value for key in META_KEYS if (value := getattr(template, key))}
    if meta:
        (path / META).write_text(yaml.safe_dump(meta, allow_unicode=True, sort_keys=False, width=100),
                                 encoding="utf-8")
        written.append(path / META)
    return written


def _from_row(row: Any, shipped: Template | None = None) -> Template:
    # An edited copy of a shipped template is still the same template: it keeps the title and description.
    return Template(name=row.name, channel=row.channel, subject=row.subject, text=row.body_text,
                    html=row.body_html, origin="database", title=shipped.title if shipped else None,
                    description=shipped.description if shipped else None)


def _shipped_folder(settings: Settings, name: str) -> Path | None:
    """The first folder holding a template called `name` (the one a database copy overrides)."""
    if _NAME.match(name):  # a name, never a path
        for folder in template_dirs(settings):
            if (folder / name / FILES["text"]).is_file():
                return folder / name
    return None


def shipped(settings: Settings, name: str) -> Template | None:
    """The template as a folder ships it (what a database copy overrides), or None."""
    folder = _shipped_folder(settings, name)
    return read_dir(folder) if folder is not None else None


def _file_templates(settings: Settings) -> dict[str, Template]:
    found: dict[str, Template] = {}
    for folder in template_dirs(settings):
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.iterdir() if p.is_dir() and (p / FILES["text"]).is_file()):
            found.setdefault(path.name, read_dir(path))
    return found


def get(conn: Connection, settings: Settings, name: str) -> Template:
    """The template called `name`: the database's own, else the first folder that has it."""
    row = conn.execute(select(templates_t).where(templates_t.c.name == name)).first()
    shipped = _shipped_folder(settings, name)
    if row is not None:
        # Only the shipped folder's meta.yaml is read: messages are composed from the database copy.
        meta = read_meta(shipped) if shipped is not None else {}
        return replace(_from_row(row), title=meta.get("title"), description=meta.get("description"))
    if shipped is not None:
        return read_dir(shipped)
    files = _file_templates(settings)
    known = sorted(set(files) | set(conn.execute(select(templates_t.c.name)).scalars()))
    raise TemplateError(_("no template named '%(name)s'; known: %(known)s", name=name,
                          known=", ".join(known) or _("none")))


def all_templates(conn: Connection, settings: Settings) -> list[Template]:
    """Every template, the database's version where both exist, sorted by name."""
    found = _file_templates(settings)
    for row in conn.execute(select(templates_t)):
        found[row.name] = _from_row(row, found.get(row.name))
    return [found[name] for name in sorted(found)]


def save(conn: Connection, settings: Settings, template: Template,
         sample: Mapping[str, Any] | None = None) -> Template:
    """Validate, then insert or replace the database copy of a template."""
    validate(template, settings, sample)
    now = utcnow()
    values = {"name": template.name, "channel": template.channel, "subject": template.subject,
              "body_text": template.text, "body_html": template.html, "updated_at": now}
    stmt = insert_for(conn, templates_t).values(created_at=now, **values)
    conn.execute(stmt.on_conflict_do_update(index_elements=["name"], set_=values))
    return replace(template, origin="database")


def remove(conn: Connection, name: str) -> bool:
    """Delete the database copy; a shipped template of the same name shows through again."""
    return conn.execute(delete(templates_t).where(templates_t.c.name == name)).rowcount > 0
