"""What a message template may use: each variable with what it means and what it looks like.

The template editor lists them so that a marketer picks `{{ contact.first_name }}`
instead of guessing its spelling; each comes with an example value rendered
from the same sample context a template is checked against, so the list can
never promise a variable the render does not have. The core offers the
contact, the company and the links; plugins add their own variables (a
workflow's promo code, a survey's links) through the
register_template_variables hook, whose samples also go into previews and
test letters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from hub import message_templates
from hub.config import Settings
from hub.i18n import N_, gettext as _

EXAMPLE_LENGTH = 80

CONTACT = {
    "contact.first_name": N_("first name"),
    "contact.last_name": N_("last name"),
    "contact.middle_name": N_("middle name (patronymic)"),
    "contact.full_name": N_("full name: last, first, middle"),
    "contact.city": N_("city"),
    "contact.birthday|date": N_("birthday"),
    "contact.email": N_("the first valid email address"),
    "contact.phone": N_("the first valid phone number"),
    "contact.company": N_("company the contact works for"),
    "contact.orders_count": N_("number of orders"),
    "contact.revenue|money": N_("total paid for orders"),
    "contact.first_order_at|date": N_("date of the first order"),
    "contact.last_order_at|date": N_("date of the last order"),
}
COMPANY = {
    "company.name": N_("your company's name"),
    "company.phone": N_("your company's phone"),
    "company.email": N_("your company's email"),
    "company.website": N_("your company's website"),
    "company.address": N_("your company's address"),
}
LINKS = {
    "unsubscribe_url": N_("link to unsubscribe (every marketing letter needs it)"),
    "preferences_url": N_("link to the page where the contact chooses what to receive"),
    "confirm_url": N_("link that confirms a subscription (double opt-in)"),
}
GROUPS = (("contact", N_("Contact"), CONTACT), ("company", N_("Company"), COMPANY), ("links", N_("Links"), LINKS))


@dataclass(frozen=True)
class Variable:
    group: str  # "contact", "company", "links", or the plugin's variable name ("promo")
    expression: str  # what goes between {{ and }}; a snippet starting with "{%" is inserted as it is
    description: str  # in the reader's language
    example: str  # rendered from the sample context

    @property
    def snippet(self) -> str:
        return self.expression if self.expression.startswith("{%") else f"{{{{ {self.expression} }}}}"


@dataclass(frozen=True)
class Offered:
    """One plugin's variable: its sample value and the expressions the editor offers.

    `per_contact(settings, contact_id)`, when given, is the value for one
    person, which the outbox fills in for every message whose template uses
    the variable (a personal link to the shop's Telegram bot); without it, the
    plugin that sends puts the value in the context itself (a promo code).
    """

    name: str
    sample: Any
    fields: Mapping[str, str]
    title: str | None = None
    per_contact: Callable[[Settings, int], Any] | None = None


def offered(settings: Settings) -> list[Offered]:
    """What plugins offer through the register_template_variables hook, in plugin order."""
    from hub.plugins import get_pm

    found: list[Offered] = []

    def register(name: str, sample: Any, fields: Mapping[str, str], title: str | None = None,
                 per_contact: Callable[[Settings, int], Any] | None = None) -> None:
        found.append(Offered(str(name), sample, dict(fields), title, per_contact))

    get_pm().hook.register_template_variables(register=register, settings=settings)
    return found


def per_contact(settings: Settings) -> dict[str, Callable[[Settings, int], Any]]:
    """The variables the outbox fills in per person: name → value(settings, contact_id).

    Asked for every message rendered, so the answer is kept per plugin manager.
    """
    from hub.plugins import kept

    return kept("per_contact_variables", lambda: {
        item.name: item.per_contact for item in offered(settings) if item.per_contact is not None})


def samples(settings: Settings) -> dict[str, Any]:
    """The plugins' sample values by name, for previews, checks and test letters."""
    return {item.name: item.sample for item in offered(settings)}


def _example(expression: str, context: Mapping[str, Any]) -> str:
    source = expression if expression.startswith("{%") else f"{{{{ {expression} }}}}"
    template = message_templates.Template(name="example", channel="sms", text=source)
    try:
        text = " ".join(message_templates.render(template, context).text.split())
    except message_templates.TemplateError:
        return ""
    return text if len(text) <= EXAMPLE_LENGTH else text[:EXAMPLE_LENGTH - 1] + "…"


def variables(settings: Settings) -> list[tuple[str, list[Variable]]]:
    """The variables by group, titled in the reader's language: (group title, variables)."""
    plugins = offered(settings)
    context = message_templates.sample_context(settings, {item.name: item.sample for item in plugins})
    groups: list[tuple[str, list[Variable]]] = []
    for group, title, table in GROUPS:
        groups.append((_(title), [Variable(group, expr, _(text), _example(expr, context))
                                  for expr, text in table.items()]))
    for item in plugins:
        title = _(item.title) if item.title else item.name
        groups.append((title, [Variable(item.name, expr, _(text), _example(expr, context))
                               for expr, text in item.fields.items()]))
    return groups
