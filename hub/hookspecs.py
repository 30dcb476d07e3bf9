"""Every hook Hub offers plugins.

Flat functions, one per thing a plugin can do, in the style of datasette and
llm. Registration hooks take a `register` callback; event hooks receive the
open database connection so a plugin's own writes commit (or roll back)
together with the change that triggered them. An implementation may accept
any subset of a hook's arguments. docs/plugins.md documents each one, and a
test fails when a hook here is missing there or has no test of its own.
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("hub")
hookimpl = pluggy.HookimplMarker("hub")


# --- contact sync -------------------------------------------------------------------------

@hookspec
def register_sources(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register data sources: call ``register(name, factory)``.

    ``factory(settings)`` returns an object with the ``hub.sync.Source``
    protocol; it is called only when that source is used.

    .. versionadded:: 0.1
    """


@hookspec
def contact_synced(conn: Any, source: str, contact_ids: list[int], created_ids: list[int]) -> None:
    """Contacts were written by a sync or import chunk (called once per committed chunk).

    .. versionadded:: 0.1
    """


@hookspec
def contact_merged(conn: Any, survivor_id: int, merged_id: int, reason: dict[str, Any]) -> None:
    """Two contacts became one; ``merged_id`` no longer exists.

    .. versionadded:: 0.1
    """


# --- consent tracking ---------------------------------------------------------------------

@hookspec
def can_contact(conn: Any, settings: Any, contact_id: int, channel: str, purpose: str,
                address: str | None) -> str | None:
    """May this contact be reached on ``channel`` for ``purpose``?

    Return a reason (a short string) to refuse, or None to have no objection.
    Any plugin may refuse; the core's own implementation checks the consent
    ledger and suppressions.

    .. versionadded:: 0.1
    """


@hookspec
def consent_changed(conn: Any, contact_id: int, channel: str, purpose: str, status: str, source: str,
                    evidence: dict[str, Any]) -> None:
    """A consent event was appended to the ledger.

    .. versionadded:: 0.1
    """


# --- shell and web ------------------------------------------------------------------------

@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``hub`` command line: ``cli`` is the root click group.

    .. versionadded:: 0.1
    """


@hookspec
def register_routes(app: Any) -> None:
    """Add web routes: ``app`` is the Flask application; register blueprints on it.

    Webhook receivers, unsubscribe links and other public pages come this way.
    A route must answer quickly: enqueue work (``hub.queue.enqueue(...,
    background=True)``) rather than doing it inside the request.

    .. versionadded:: 0.1
    """
