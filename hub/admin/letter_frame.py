"""A letter shown inside the admin exactly as a mail client shows it: its own page, in a sandboxed frame.

The admin's own policy allows styles only from Hub's files, which would strip
every inline style a letter carries. A letter is served on its own with a
policy of its own instead: inline styles and remote images (as mail clients
load them) are allowed, scripts, forms and plugins are not, and the
`sandbox` directive puts the page in a unique origin, so even a hostile
letter cannot reach the admin's cookies or pages. Only the admin may frame it.

A preview carries preview links, so its links may open (in a new window). A
letter that really went out carries the person's own signed links
(unsubscribe, a survey answer) and tracking pixels: a click by staff would act
as the person, and an image loaded would count as the person opening it. Such
a letter is shown with ``links=False`` (no popups: links do nothing) and,
unless someone asks for them, ``images=False`` (only images inside the letter).
"""

from __future__ import annotations

from flask import Response

_LETTER_REST = ("default-src 'none'; style-src 'unsafe-inline'; {img} font-src https: data:; "
                "frame-ancestors 'self'; base-uri 'none'; form-action 'none'")
REMOTE_IMAGES = "img-src https: http: data:;"
NO_REMOTE_IMAGES = "img-src data:;"
LETTER_CSP = "sandbox allow-popups allow-popups-to-escape-sandbox; " + _LETTER_REST.format(img=REMOTE_IMAGES)


def letter_policy(*, links: bool = True, images: bool = True) -> str:
    """The page's policy: popups only when links may open, remote images only when asked for."""
    sandbox = "sandbox allow-popups allow-popups-to-escape-sandbox; " if links else "sandbox; "
    return sandbox + _LETTER_REST.format(img=REMOTE_IMAGES if images else NO_REMOTE_IMAGES)


def letter_response(html: str, *, links: bool = True, images: bool = True) -> Response:
    """The rendered HTML of a letter as a page to put in a sandboxed frame.

    Previews keep the defaults and go in `<iframe sandbox="allow-popups" src=…>`;
    a letter as it went out to someone is served with ``links=False`` (and
    ``images=False`` until a person asks to see them) and goes in `<iframe sandbox src=…>`.
    """
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = letter_policy(links=links, images=images)
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Cache-Control"] = "no-store"
    return response
