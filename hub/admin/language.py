"""The language and time zone of each admin request (Flask-Babel), and of the public pages.

A signed-in person reads the admin in the language they chose (their
account's language); everyone else — the sign-in page, customers on the
public consent pages — in the shop's HUB_LANGUAGE. Flask-Babel picks the
locale and the time zone and installs gettext in the templates; the words
come from Hub's catalogs (hub.i18n), the same ones the command line uses, so
code that runs in both speaks the reader's language in both.
"""

from __future__ import annotations

from babel.support import NullTranslations
from flask import Flask, current_app
from flask_babel import Babel, Domain, get_locale

from hub import i18n
from hub.admin import access


class _Catalogs(Domain):
    """Flask-Babel's translations, taken from every catalog Hub and its plugins registered.

    In the language the request speaks now (hub.i18n), so a template and the
    Python code that fills it can never disagree.
    """

    def get_translations(self) -> NullTranslations:
        return i18n.translations(i18n.current_language())


def install(app: Flask) -> None:
    """Choose each request's language (before sign-in is checked, then again for the signed-in person)."""
    babel = Babel(app, locale_selector=_locale, timezone_selector=_timezone)
    babel.domain_instance = _Catalogs()  # Flask-Babel names its default domain by a string; ours is an object
    app.jinja_env.policies["ext.i18n.trimmed"] = True  # as the catalogs are extracted (babel.cfg)
    app.before_request_funcs.setdefault(None, []).insert(0, _shop_language)
    app.teardown_request(lambda _exc: i18n.activate(None))


def activate_for_reader() -> None:
    """After sign-in is known: the signed-in person's language (run after access.enforce)."""
    i18n.activate(str(get_locale()))


def _shop_language() -> None:
    i18n.activate(current_app.config["HUB_SETTINGS"].language)


def _locale() -> str:
    user = access.reader()
    chosen = getattr(user, "language", None) if user is not None else None
    return i18n.normalize(chosen or current_app.config["HUB_SETTINGS"].language)


def _timezone() -> str:
    return str(current_app.config["HUB_SETTINGS"].timezone)
