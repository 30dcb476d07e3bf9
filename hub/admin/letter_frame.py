"""A letter shown inside the admin exactly as a mail client shows it: its own page, in a sandboxed frame.

The admin's own policy allows styles only from Hub's files, which would strip
every inline style a letter carries. A letter is served on its own with a
policy of its own instead: inline styles and remote images (as mail clients
load them) are allowed, scripts, forms and plugins are not, and the
`sandbox` directive puts the page in a unique origin, so even a hostile
letter cannot reach the admin's cookies or pages. Only the admin may frame it.
"""

from __future__ import annotations

from flask import Response

LETTER_CSP = ("sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; style-src 'unsafe-inline'; "
              "img-src https: http: data:; font-src https: data:; frame-ancestors 'self'; base-uri 'none'; "
              "form-action 'none'")


def letter_response(html: str) -> Response:
    """The rendered HTML of a letter as a page to put in `<iframe sandbox="allow-popups" src=…>`."""
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = LETTER_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Cache-Control"] = "no-store"
    return response
