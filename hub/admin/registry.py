"""Admin pages as plugins hand them over (register_admin_pages), and the menu built from them.

The core's own pages come the same way (hub.admin.pages is a default plugin),
so the menu holds exactly what is registered. A page's roles are a ceiling
over its views' own `@allow(...)`: the stricter of the two applies, so a page
registered as read-only (``write_role=None``) refuses every POST whatever its
views declare.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

if TYPE_CHECKING:  # imported when pages are registered, so `hub` commands that serve no page skip Flask
    from flask import Blueprint

PUBLIC = "public"  # the same word as hub.admin.access.PUBLIC: anyone, signed in or not
LANGUAGES = ("ru", "en")


@dataclass(frozen=True)
class AdminPage:
    """One area of the admin a plugin adds: its blueprint, its menu entry and who may use it.

    ``blueprint``: a Flask blueprint; the core registers it and wraps every
    view in sign-in, role checks, the CSRF check, the security headers and
    the error pages. Each view still declares ``@allow(read=..., write=...)``;
    a view without one is refused. Give it its own ``template_folder`` with
    templates under a subfolder named like the blueprint (they may extend
    ``base.html``).
    ``endpoint``: the view the menu entry opens, e.g. ``"shop_admin.index"``.
    ``title``: the menu entry: an English text that is a message of the
    plugin's catalog (``N_("Notes")``, translated into the reader's language
    when the menu is shown), or the entry in each language,
    ``{"ru": ..., "en": ...}``.
    ``order``: where the entry stands in the menu (the core's own: 10–90).
    ``read_role``: the least role that sees the entry and may open the pages
    (``PUBLIC``: anyone, signed in or not, as the sign-in page itself).
    ``write_role``: the least role that may change something through them
    (any request but GET); None for pages that only show.
    ``in_menu``: False for pages reached by a link from elsewhere.
    ``icon``: an optional short text or emoji shown before the title.
    ``source``: the data source (``register_sources`` name) whose connection
    this page sets up; the Connections page links to it.
    ``contact_section``: ``f(conn, contact_id)`` returning HTML (a Markup,
    e.g. from ``render_template``) or None, shown on every contact's card to
    those who may read this page.
    ``contact_search``: ``f(conn, text)`` returning the ids of contacts that
    what a person typed in the contacts search names in this plugin's data
    (a promo code, an order number), or an empty list; asked on every search
    by those who may read this page, its ids counted and shown with the
    core's own matches. Match exactly or by prefix where you can: it runs on
    every search.
    ``origin_links``: ``f(conn, names)`` returning, for the names among
    ``names`` that are this plugin's (``messages.origin``: the workflow or
    campaign that wrote a message), ``{name: (title, url)}`` (url may be
    None); the message log shows the title and links to the page, for those
    who may read this page. Answer for all names at once: it runs on every
    view of the log.
    ``audit_actions``: the titles of the actions the plugin writes to the
    audit log (``{"notes.saved": N_("note saved")}``, messages of the
    plugin's catalog), shown on the audit log page instead of the names.
    ``audit_details``: for those actions, ``{action: f(details)}`` returning
    the entry's details as a sentence in the reader's language ("удалено: 2
    телефона и e-mail"); the page shows it instead of the stored keys and
    values, which stay as they are for scripts. An action without one is
    shown key by key.
    """

    blueprint: Blueprint
    endpoint: str
    title: Mapping[str, str] | str
    order: int = 100
    read_role: str = "viewer"
    write_role: str | None = None
    in_menu: bool = True
    icon: str | None = None
    source: str | None = None
    contact_section: Callable[[Any, int], Any] | None = field(default=None, compare=False)
    contact_search: Callable[[Any, str], list[int]] | None = field(default=None, compare=False)
    origin_links: Callable[[Any, Sequence[str]], Mapping[str, tuple[str, str | None]]] | None = field(
        default=None, compare=False)
    audit_actions: Mapping[str, str] = field(default_factory=dict, compare=False)
    audit_details: Mapping[str, Callable[[Mapping[str, Any]], str]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        from flask import Blueprint

        from hub.users import RANK

        if not isinstance(self.blueprint, Blueprint):
            raise TypeError(f"admin page {self.endpoint!r}: blueprint must be a flask.Blueprint")
        if self.endpoint.partition(".")[0] != self.blueprint.name:
            raise ValueError(f"admin page {self.endpoint!r}: the endpoint is not a view of blueprint "
                             f"{self.blueprint.name!r}")
        if not self.title or not (isinstance(self.title, str) or all(
                isinstance(t, str) and t for t in self.title.values())):
            raise ValueError(f"admin page {self.endpoint!r}: give a title, e.g. N_('Notes') or "
                             f"{{'ru': ..., 'en': ...}}")
        for role in (self.read_role, self.write_role):
            if role is not None and role != PUBLIC and role not in RANK:
                raise ValueError(f"admin page {self.endpoint!r}: unknown role {role!r}")
        if self.read_role is None:
            raise ValueError(f"admin page {self.endpoint!r}: read_role cannot be None")

    def title_in(self, language: str) -> str:
        """The title in `language`: a message through the catalogs, or from the dict (else another language)."""
        if isinstance(self.title, str):
            from hub import i18n

            with i18n.use_language(language):
                return i18n.gettext(self.title)
        for lang in (language, *LANGUAGES):
            if self.title.get(lang):
                return self.title[lang]
        return next(iter(self.title.values()))


@dataclass(frozen=True)
class MenuEntry:
    endpoint: str
    title: str
    role: str
    icon: str | None


def collect(pm: Any) -> list[AdminPage]:
    """Every page the plugins register, refusing two pages on one blueprint name."""
    found: list[AdminPage] = []
    names: set[str] = set()

    def register(page: AdminPage) -> None:
        if not isinstance(page, AdminPage):
            raise TypeError(f"register_admin_pages: register() takes an AdminPage, not {type(page).__name__}")
        if page.blueprint.name in names:
            raise ValueError(f"two admin pages use the blueprint name {page.blueprint.name!r}")
        names.add(page.blueprint.name)
        found.append(page)

    pm.hook.register_admin_pages(register=register)
    return sorted(found, key=lambda p: (p.order, p.endpoint))


def _rank(role: str | None) -> int:
    from hub.users import RANK

    if role is None:
        return len(RANK) + 1  # refused for everyone
    return -1 if role == PUBLIC else RANK[role]


def stricter(a: str | None, b: str | None) -> str | None:
    """The role that lets fewer people through (None, refused, is the strictest)."""
    return a if _rank(a) >= _rank(b) else b


def menu(pages: Mapping[str, AdminPage], language: str, read_role_of: Callable[[str], str | None]
         ) -> list[MenuEntry]:
    """The menu entries in order; `read_role_of(endpoint)` is the role the entry's view itself needs."""
    out = []
    for page in sorted(pages.values(), key=lambda p: (p.order, p.endpoint)):
        if not page.in_menu:
            continue
        role = stricter(page.read_role, read_role_of(page.endpoint))
        if role is None:
            continue  # nobody may open it: no entry
        out.append(MenuEntry(page.endpoint, page.title_in(language), role, page.icon))
    return out
