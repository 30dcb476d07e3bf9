"""Every admin page speaks its reader's language: Russian by default with no English left, English when chosen.

The test signs in as the admin on a base with sample people, visits every
page the admin serves to a GET (each registered page's views, those with
parameters through a sample below, so a new page without one fails here),
and reads what a person reads: the text of the page without its scripts,
styles and code, plus the titles, placeholders and labels of its elements.
What is not words to translate is left out the way the page itself marks it:
``<code>``, ``<pre>``, ``<textarea>``, `backticked` commands, and any element
with ``translate="no"`` (the HTML attribute for "not to be translated": names,
data) or with a ``lang`` other than the page's (a language picker). Technical
tokens are allowed by their shape (dormant_90d, orders.last_at, hub.toml,
E.164 phones, emails, URLs), short abbreviations (SMS, CSV, UTC) and product
names; the words of the sample data are data.
"""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser
from typing import Any, Callable, Iterator

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select, text

from hub import i18n, message_templates, sync
from hub.admin import access, create_app
from hub.admin.segments import titles as segment_titles
from hub.models import ConsentEvent, Contact, Order, SyncRun
from hub.segments import lifecycle
from hub.segments.store import builtin_documents
from hub.users import RANK
from tests.support.admin import AdminEnv, admin_env, sign_in  # noqa: F401 - the fixture

# Not words to translate: product names and words every Russian admin reads as they are.
ALLOWED = {"Hub", "Bitrix24", "amoCRM", "amocrm", "bitrix24", "Email", "email", "E-mail", "SMS", "sms", "OAuth",
           "webhook", "Webhook", "VIP", "vip", "YAML", "JSON", "CSV", "XLSX", "HTML", "UTC", "ID", "URL", "API",
           "SMTP", "CRM", "NPS", "GDPR", "Flask", "Redis", "RQ", "PostgreSQL", "SQLite", "Chart", "js", "Markdown",
           "Idempotency-Key"}  # an HTTP header's name: the admin's line on the API's chore names it as the API does
ROLES = set(RANK)  # role names, as `hub users add --role` takes them
# Shapes of technical tokens: snake_case and dotted names, words with digits, files, time zones (Asia/Omsk),
# references (bitrix24:101).
TECHNICAL = re.compile(r"^(?:[\w-]*[_\d][\w-]*|[\w-]+(?:[./:][\w<>-]+)+)$")
URL = re.compile(r"(?:https?://|www\.)\S+|\S+@\S+\.\w+|\+\d[\d\s()-]{6,}\d")
BACKTICKED = re.compile(r"`[^`]*`")
SKIPPED_TAGS = {"script", "style", "code", "pre", "textarea", "kbd", "samp", "svg", "noscript"}
READ_ATTRIBUTES = ("title", "placeholder", "aria-label", "alt", "data-confirm")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
LATIN_RUN = re.compile(r"[A-Za-z][A-Za-z0-9_.'’<>/@:-]*(?:[ \t]+[A-Za-z][A-Za-z0-9_.'’<>/@:-]*)*")
CYRILLIC_WORD = re.compile(r"[А-Яа-яЁё][А-Яа-яЁё-]*")


class _Reader(HTMLParser):
    """The words of a page a person reads (see the module's docstring for what is left out)."""

    def __init__(self, language: str) -> None:
        super().__init__(convert_charrefs=True)
        self.language = language
        self.stack: list[tuple[str, bool]] = []
        self.parts: list[str] = []

    @property
    def skipping(self) -> bool:
        return any(skip for _, skip in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        skip = tag in SKIPPED_TAGS or values.get("translate") == "no" or values.get("lang") not in (
            None, self.language)
        if not skip and not self.skipping:
            self.parts += [str(values[a]) for a in READ_ATTRIBUTES if values.get(a)]
            if tag == "input" and values.get("type") in ("submit", "button") and values.get("value"):
                self.parts.append(str(values["value"]))
        if tag not in VOID:
            self.stack.append((tag, skip))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def readable(html: str, language: str) -> list[str]:
    reader = _Reader(language)
    reader.feed(html)
    reader.close()
    return [" ".join(BACKTICKED.sub(" ", URL.sub(" ", p)).split()) for p in reader.parts if p.strip()]


def english_runs(html: str, data: set[str]) -> list[str]:
    """Runs of English words on the page that are neither technical tokens nor data."""
    found = []
    for part in readable(html, "ru"):
        for run in LATIN_RUN.findall(part):
            words = [w.strip(".:'’-") for w in run.split()]
            if any(w and not _allowed(w, data) for w in words):
                found.append(run)
    return found


def _allowed(word: str, data: set[str]) -> bool:
    if word in ALLOWED or word in ROLES or TECHNICAL.match(word):
        return True
    if all(w in data for w in re.findall("[A-Za-z]+", word)):
        return True
    return word.isupper() and len(word) <= 5  # an abbreviation: MSK, INN, NPS


def cyrillic_words(html: str, data: set[str]) -> list[str]:
    return [w for part in readable(html, "en") for w in CYRILLIC_WORD.findall(part) if w not in data]


def _words(*values: Any) -> set[str]:
    out: set[str] = set()
    for value in values:
        if value:
            out |= set(re.findall(r"[^\W\d_]+", str(value)))
    return out


def data_words(env: AdminEnv) -> set[str]:
    """The words of the sample base: names, cities, order titles, consent sources, the shop's letters, and what
    the sync runs recorded (errors are stored as they were said)."""
    with env.engine.connect() as conn:
        contacts = conn.execute(select(Contact.first_name, Contact.last_name, Contact.middle_name, Contact.city,
                                       Contact.company, Contact.tags)).all()
        orders = conn.execute(select(Order.title)).scalars().all()
        sources = conn.execute(select(ConsentEvent.source, ConsentEvent.evidence)).all()
        templates = message_templates.all_templates(conn, env.settings)
        runs = conn.execute(select(SyncRun.error, SyncRun.errors)).all()
    words = set()
    for row in [*contacts, *sources, *runs]:
        words |= _words(*row)
    words |= _words(*orders)
    for t in templates:
        words |= _words(t.subject, t.text, t.html)
    campaign(env)  # its title is the marketer's words, its technical name what the title made it
    with env.engine.connect() as conn:
        words |= _words(*conn.execute(text("SELECT name, title FROM campaigns")).one())
    return words


@pytest.fixture
def shop(admin_env: AdminEnv) -> Iterator[AdminEnv]:  # noqa: F811
    """The admin's sample base, with the workflows installed and sync runs to show."""
    from workflows import store

    with admin_env.engine.begin() as conn:
        store.install_library(conn)
    counts = sync.Counts()
    counts.contacts.update(created=3, updated=1)
    counts.orders.update(created=2)
    counts.errors.append({"entity": "contact", "id": "17", "error": "phone +7 000: not a number"})
    run = sync.start_run(admin_env.engine, "bitrix24", "full")
    sync.finish_run(admin_env.engine, run, counts)
    failed = sync.start_run(admin_env.engine, "amocrm", "incremental")
    sync.finish_run(admin_env.engine, failed, sync.Counts(), error="the portal did not answer")
    yield admin_env


def webhook(env: AdminEnv) -> int:
    """A webhook to read the deliveries page of (made once per environment)."""
    from hub.webhooks import store

    with env.db.engine.begin() as conn:
        found = store.listing(conn)
        if found:
            return int(found[0].id)
        return store.add(conn, "https://crm.example.ru/hooks/hub", ["contact.merged"],
                         env.settings.require_secret_key(), actor="tests")[0]


def message(env: AdminEnv) -> int:
    """A letter a workflow wrote to Anna, to read in the message log (made once per environment)."""
    from hub import messaging

    with env.db.engine.begin() as conn:
        return messaging.create(conn, env.settings, contact_id=env.ids["anna"], channel="email",
                                template="reactivation_email", key="pages-in-russian",
                                context={"promo": {"code": "BACK-15", "discount": 15,
                                                  "expires_at": "2026-12-31"}},
                                meta={"workflow": "reactivation_90d", "run": 1, "step": 2}).id


def campaign(env: AdminEnv) -> str:
    """A draft campaign with a promo code to Anna's segment, to read its pages (made once per environment)."""
    from workflows import campaigns

    with env.db.engine.connect() as conn:
        found = campaigns.listing(conn)
    if found:
        return str(found[0]["name"])
    return str(campaigns.create(env.db.engine, env.settings, campaigns.Draft(
        title="Возвращайтесь", segment="dormant_90d", channel="email", template="reactivation_email",
        promo={"discount": 15, "valid": "14d"}), actor="marketer@shop.example")["name"])


def samples(env: AdminEnv) -> dict[str, list[str]]:
    """The pages to read for each admin view (views with parameters need a sample; some get several)."""
    anna = env.ids["anna"]
    return {
        "dashboard.index": ["/"],
        "contacts.search": ["/contacts/", "/contacts/?q=Анна"],
        "contacts.card": [f"/contacts/{anna}"],
        "contacts.duplicates": ["/contacts/duplicates"],
        "segments.index": ["/segments/"],
        "segments.new": ["/segments/new", "/segments/new?copy=dormant_90d"],
        "segments.edit": ["/segments/dormant_90d", "/segments/vip"],
        "segments.explain_page": ["/segments/dormant_90d/explain", f"/segments/dormant_90d/explain?contact={anna}",
                                  "/segments/dormant_90d/explain?contact=№5"],
        "segments.fields_json": [],  # JSON for the rule builder (tests/test_segment_builder.py)
        "segments.suggest": [],
        "segment_members.members": ["/segments/dormant_90d/members",
                                    "/segments/vip/members?q=Анна&sort=№5&page=-1&per=7"],
        "segment_members.export": [],  # a file, not a page (its headings: tests/test_segment_members.py)
        "workflows.index": ["/workflows/"],
        "workflows.detail": ["/workflows/reactivation_90d"],
        "workflows.forecast_page": ["/workflows/reactivation_90d/forecast"],
        "workflows.library": ["/workflows/library"],
        "workflows.library_copy": ["/workflows/library/abandoned_cart/copy"],
        "workflows.try_page": ["/workflows/reactivation_90d/try?q=Анна",
                               f"/workflows/reactivation_90d/try?contact={anna}",
                               "/workflows/reactivation_90d/try?contact=№5"],
        "workflows.try_letter": [],  # the letter itself, in the shop's own words
        "workflows.enable_confirm": ["/workflows/reactivation_90d/enable", "/workflows/welcome/enable"],
        "workflows.new": ["/workflows/new"],
        "workflows.edit": ["/workflows/reactivation_90d/edit"],
        "workflows.versions": ["/workflows/reactivation_90d/versions"],
        "workflows.version": ["/workflows/reactivation_90d/versions/1"],
        "workflows.static": [],  # the builder's script
        "message_templates.index": ["/templates/"],
        "message_templates.new": ["/templates/new"],
        "message_templates.edit": [f"/templates/reactivation_email?contact={anna}", "/templates/reactivation_sms"],
        "message_templates.version": ["/templates/reactivation_email/versions/0"],
        "message_templates.frame": [],  # the letter itself, in the shop's own words
        "connections.index": ["/connections/"],
        "bitrix24_admin.index": ["/connections/bitrix24"],
        "amocrm_admin.index": ["/connections/amocrm"],
        "amocrm_admin.callback": ["/connections/amocrm/callback?error=access_denied"],
        "gdpr.index": ["/gdpr/", f"/gdpr/?contact={anna}"],
        "gdpr.person": [f"/gdpr/person?contact={anna}"],
        "users.index": ["/users/"],
        "api_keys.index": ["/api-keys/"],
        "webhooks.index": ["/webhooks/"],
        "webhooks.deliveries": [f"/webhooks/{webhook(env)}/deliveries"],
        "users.audit_log": ["/users/audit"],
        "messages.index": ["/messages/", "/messages/?origin=-&status=sent&contact=1&since=2026-01-01"],
        "messages.show": [f"/messages/{message(env)}"],
        "messages.letter": [],  # the letter itself, in the shop's own words
        "messages.review": ["/messages/review"],
        "campaigns.index": ["/campaigns/", "/campaigns/?status=draft"],
        "campaigns.new": ["/campaigns/new"],
        "campaigns.edit": [f"/campaigns/{campaign(env)}/edit"],
        "campaigns.detail": [f"/campaigns/{campaign(env)}", f"/campaigns/{campaign(env)}?contact={anna}"],
        "campaigns.letter": [],  # the letter itself, in the shop's own words
        "auth.login": [],  # read signed out, below
        "health.healthz": [],  # not a page: answers machines
        "health.status": [],
    }


def admin_paths(env: AdminEnv, app: Any) -> list[str]:
    """Every GET view of every registered admin page, through its samples."""
    pages = app.config[access.ADMIN_BLUEPRINTS]
    wanted = samples(env)
    paths, missing = [], []
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.partition(".")[0]
        if "GET" not in (rule.methods or ()) or blueprint not in pages:
            continue
        if rule.endpoint not in wanted:
            missing.append(rule.endpoint)
            continue
        paths += wanted[rule.endpoint]
    assert not missing, f"admin views without a sample page in this test: {missing}"
    return list(dict.fromkeys(paths))


def read_pages(client: FlaskClient, paths: list[str], check: Callable[[str], list[str]]) -> dict[str, list[str]]:
    """What `check(html)` finds on each page; a page that does not open is a problem too."""
    problems: dict[str, list[str]] = {}
    for path in paths:
        answer = client.get(path, follow_redirects=True)
        if answer.status_code != 200:
            problems[path] = [f"HTTP {answer.status_code}"]
        elif answer.mimetype == "text/html" and (found := check(answer.get_data(as_text=True))):
            problems[path] = found
    return problems


def report(problems: dict[str, list[str]]) -> str:
    return "\n".join(f"{path}: {' | '.join(dict.fromkeys(found))}" for path, found in problems.items())


def test_every_admin_page_is_in_russian_by_default(shop: AdminEnv) -> None:
    app = shop.app
    data = data_words(shop)
    admin = sign_in(app.test_client(), shop.users["admin"])
    problems = read_pages(admin, admin_paths(shop, app), lambda html: english_runs(html, data))
    login = app.test_client().get("/login").get_data(as_text=True)
    if found := english_runs(login, data):
        problems["/login"] = found
    assert not problems, "English left on pages read in Russian:\n" + report(problems)


def test_every_admin_page_is_in_english_when_chosen(shop: AdminEnv) -> None:
    app = create_app(replace(shop.settings, language="en"))
    data = data_words(shop)
    admin = sign_in(app.test_client(), shop.users["admin"])
    problems = read_pages(admin, admin_paths(shop, app), lambda html: cyrillic_words(html, data))
    assert not problems, "Russian left on pages read in English:\n" + report(problems)


# --- the reader of pages itself, and what the segment and template pages show ---------------

def test_the_reader_finds_english_but_not_code_data_or_technical_names() -> None:
    page = ('<h1>Сегменты <code>dormant_90d</code></h1><p>Matches 5 contacts now.</p>'
            '<p>Поле orders.last_at, файл hub.toml, +7 916 123-45-67, anna@example.ru, https://x.example/a</p>'
            '<p translate="no">Anna Smith</p><script>var label = "Save";</script><p title="Save it">SMS, CSV</p>'
            '<p>см. `hub segments list`</p>')
    assert english_runs(page, set()) == ["Matches", "contacts now.", "Save it"]
    assert cyrillic_words("<p>Сегменты <code>тест</code></p><p>Anna</p>", {"Анна"}) == ["Сегменты"]


def test_shipped_segments_show_their_human_title_first_and_keep_their_name(shop: AdminEnv) -> None:
    admin = sign_in(shop.app.test_client(), shop.users["admin"])
    listing = admin.get("/segments/").get_data(as_text=True)
    assert "Не покупали 90 дней, письма разрешены" in listing and ">dormant_90d</code>" in listing
    assert listing.index("Не покупали 90 дней") < listing.index(">dormant_90d</code>")
    detail = admin.get("/segments/dormant_90d").get_data(as_text=True)
    assert "Аудитория кампании реактивации" in detail and "dormant_90d" in detail
    english = sign_in(create_app(replace(shop.settings, language="en")).test_client(), shop.users["admin"])
    assert "Dormant for 90 days, email allowed" in english.get("/segments/").get_data(as_text=True)


def test_every_shipped_segment_and_lifecycle_stage_has_a_title_and_description_in_both_languages() -> None:
    for name, document in builtin_documents().items():
        assert document.get("title") and document.get("description"), name
        definition = type("D", (), {"title": document["title"], "description": document["description"]})()
        with i18n.use_language("ru"):
            russian = segment_titles(definition)
        assert russian["title"] != document["title"] or name == "vip", name
        assert re.search("[а-я]", russian["description"]), name
    with i18n.use_language("ru"):
        assert [lifecycle.title(s) for s in lifecycle.STAGES] == [
            "Потенциальные", "Рабочие", "Постоянные", "VIP", "Неактивные", "Потерянные"]
        assert all(re.search("[а-я]", lifecycle.description(s)) for s in lifecycle.STAGES)
    with i18n.use_language("en"):
        assert lifecycle.title("dead") == "Lost" and lifecycle.title("unknown") == "unknown"


def test_a_marketers_own_segment_title_shows_as_written(shop: AdminEnv) -> None:
    admin = sign_in(shop.app.test_client(), shop.users["marketer"])
    from tests.support.admin import post

    document = "name: my_vip\ntitle: Наши любимые покупатели\nrule: {segment: vip}\n"
    saved = post(admin, "/segments/save", {"document": document}, token_from="/segments/new",
                 follow_redirects=True).get_data(as_text=True)
    assert "Сегмент my_vip сохранён: сейчас под него подходят 0 контактов." in saved
    assert "Наши любимые покупатели" in admin.get("/segments/").get_data(as_text=True)


def test_a_rule_problem_is_explained_in_the_readers_language(shop: AdminEnv) -> None:
    admin = sign_in(shop.app.test_client(), shop.users["marketer"])
    token = re.search(r'name="csrf-token" content="([^"]+)"', admin.get("/segments/new").get_data(as_text=True))
    assert token
    document = "name: late\nrule: {field: orders.last_at, op: befor, value: -90d}\n"
    answer = admin.post("/segments/check", json={"document": document}, headers={"X-CSRFToken": token.group(1)})
    assert answer.get_json()["problems"] == [
        "rule.op: 'befor' — не оператор для orders.last_at; может быть, 'before'?"]


def test_a_template_folder_may_describe_itself_in_meta_yaml(tmp_path: Any) -> None:
    folder = tmp_path / "spring_sale"
    folder.mkdir()
    (folder / "subject.txt").write_text("Весенняя распродажа\n", encoding="utf-8")
    (folder / "body.txt").write_text("Здравствуйте!\n", encoding="utf-8")
    assert message_templates.read_dir(folder).title is None  # without meta.yaml: the name is shown
    (folder / "meta.yaml").write_text("title: Spring sale\ndescription: >-\n  The letter of the spring\n"
                                      "  sale, sent in March.\n", encoding="utf-8")
    template = message_templates.read_dir(folder)
    assert (template.title, template.description) == ("Spring sale", "The letter of the spring sale, sent in March.")
    (folder / "meta.yaml").write_text("title: [broken\n", encoding="utf-8")
    assert message_templates.read_dir(folder).title is None  # a broken meta.yaml costs the title, not the template


def test_the_templates_page_shows_a_templates_title_and_its_name(shop: AdminEnv, tmp_path: Any) -> None:
    folder = tmp_path / "templates" / "spring_sale"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Весенняя распродажа\n", encoding="utf-8")
    (folder / "body.txt").write_text("Здравствуйте!\n", encoding="utf-8")
    (folder / "meta.yaml").write_text("title: Весенняя распродажа в марте\n", encoding="utf-8")
    settings = replace(shop.settings, extra={**shop.settings.extra, "templates_dir": str(tmp_path / "templates")})
    admin = sign_in(create_app(settings).test_client(), shop.users["admin"])
    listing = admin.get("/templates/").get_data(as_text=True)
    assert "Весенняя распродажа в марте</a>" in listing and ">spring_sale</code>" in listing
    edit = admin.get("/templates/spring_sale").get_data(as_text=True)
    assert "<h1>Весенняя распродажа в марте" in edit


def test_menu_titles_are_messages_and_plugins_may_still_give_both_languages() -> None:
    from flask import Blueprint

    from hub.admin.registry import AdminPage

    bp = Blueprint("notes_x", __name__)
    assert AdminPage(bp, "notes_x.index", "Segments").title_in("ru") == "Сегменты"
    assert AdminPage(bp, "notes_x.index", "Segments").title_in("en") == "Segments"
    both = AdminPage(bp, "notes_x.index", {"ru": "Заметки", "en": "Notes"})
    assert (both.title_in("ru"), both.title_in("en")) == ("Заметки", "Notes")
    with pytest.raises(ValueError, match="give a title"):
        AdminPage(bp, "notes_x.index", "")
