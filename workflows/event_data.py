"""The event that started a run, as templates see it: `{{ event.properties.cart_url }}`.

A workflow triggered by an event other systems send (POST /api/v1/events,
`trigger: {event: cart_abandoned}`) keeps the event in its run's context
(workflows.triggers). Its messages and CRM texts may show what the sender
told: the cart's link, its items, its total. The values are the sender's
text, so they reach the message only through the sandboxed, autoescaping
renderer like every other variable, within the API's own limits (hub.events:
50 properties, 1,000 characters a text, 20 items a list).

A template is checked against a sample before a workflow is saved; the
sample is an abandoned cart, so a template written for `cart_abandoned`
checks as it will run. A property the sample lacks is written with a
default (`{{ event.properties.page|default("") }}`), which also covers an
event that came without it.
"""

from __future__ import annotations

from typing import Any, Mapping

from hub.api import N_

# What the template editor offers (workflows.register_template_variables) and the docs describe.
FIELDS = {
    "event.properties.cart_url": N_("the link back to the cart (cart_abandoned: cart_url)"),
    "event.properties.total|money": N_("the cart's total (cart_abandoned: total)"),
    "{% for item in event.properties['items'] %}{{ item.name }} × {{ item.qty }} — {{ item.price|money }}\n"
    "{% endfor %}": N_("the cart's items, one a line: name, quantity, price (cart_abandoned: items)"),
    "event.name": N_("the event's name (cart_abandoned)"),
}


def sample(name: str = "cart_abandoned") -> dict[str, Any]:
    """What templates are checked and previewed against: an abandoned cart of three items."""
    return {"name": name, "id": 1, "properties": {
        "cart_url": "https://shop.example/cart/8812",
        "items": [{"name": "Кроссовки беговые", "qty": 1, "price": 5990},
                  {"name": "Носки спортивные, 3 пары", "qty": 2, "price": 690},
                  {"name": "Бутылка для воды", "qty": 1, "price": 450}],
        "total": 7820}}


def from_context(context: Mapping[str, Any]) -> dict[str, Any] | None:
    """The event a run's context keeps (name, id, properties), or None for a run no API event started."""
    if not context.get("event_id") or not isinstance(context.get("event"), str):
        return None
    properties = context.get("properties")
    return {"name": context["event"], "id": context["event_id"],
            "properties": dict(properties) if isinstance(properties, Mapping) else {}}
