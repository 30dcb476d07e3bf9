"""Everything a plugin may import from Hub, in one place.

Import from here, not from the modules behind it: these names keep their
meaning across releases (a change to them is deliberate, and
tests/test_public_api.py fails until the recorded API is updated), while the
modules they live in may be reorganized. The hooks themselves are in
``hub.hookspecs``; workflow step classes are in ``workflows.steps`` (the
workflows plugin's own public API); test fixtures are in ``hub.testing``.

    from hub.api import hookimpl, ContactRecord, OrderRecord, Page
"""

from __future__ import annotations

import importlib
from typing import Any

from hub.admin.audit import record as record_audit
from hub.admin.registry import PUBLIC, AdminPage
from hub.cli import App, emit_json, pass_app, progress_bar
from hub.config import Settings, SettingsError
from hub.credentials import CredentialError
from hub.credentials import delete as delete_credentials
from hub.credentials import load as load_credentials
from hub.credentials import lock as lock_credentials
from hub.credentials import redact as redact_credentials
from hub.credentials import save as save_credentials
from hub.db import get_engine, utcnow
from hub.hookspecs import hookimpl
from hub.messaging import Channel, ChannelUnavailable, Delivery, Outgoing, Verdict
from hub.models import NAMING_CONVENTION, TYPE_ANNOTATION_MAP, Contact, ExternalRef, Order
from hub.queue import enqueue
from hub.ratelimit import SendWindow, limiter
from hub.records import ContactRecord, Deletion, OrderRecord
from hub.retry import CUT_OFF_ERRORS, TRANSIENT_ERRORS, Retries, back_off, backoff_delay, is_cut_off
from hub.sampledata import Person, people
from hub.sandbox import BackgroundServer, EmulatorHTTPServer, RunningSandbox
from hub.schedule import Schedule, ScheduledRun
from hub.segments.fields import FieldContext, SegmentField, SegmentOperator
from hub.sync import Page, ReconcilingSource, Source, SyncError, TargetedSource
from hub.writeback import WriteBack, WriteBackError

__all__ = [
    # writing a plugin
    "hookimpl", "Settings", "SettingsError", "get_engine", "utcnow",
    # sources: what they read and hand over
    "Source", "TargetedSource", "ReconcilingSource", "Page", "ContactRecord", "OrderRecord", "Deletion",
    "SyncError", "WriteBack", "WriteBackError",
    # emulators for the demo and tests
    "RunningSandbox", "BackgroundServer", "EmulatorHTTPServer", "Person", "people",
    # secrets a plugin stores (encrypted with HUB_SECRET_KEY)
    "save_credentials", "load_credentials", "lock_credentials", "redact_credentials", "delete_credentials",
    "CredentialError",
    # talking to other systems politely
    "limiter", "SendWindow", "enqueue",
    "Retries", "back_off", "backoff_delay", "is_cut_off", "TRANSIENT_ERRORS", "CUT_OFF_ERRORS",
    # segment rules
    "SegmentField", "SegmentOperator", "FieldContext", "Contact", "Order", "ExternalRef",
    # channels and send rules (check_send)
    "Channel", "Outgoing", "Delivery", "ChannelUnavailable", "Verdict",
    # recurring work (register_schedules)
    "Schedule", "ScheduledRun",
    # a plugin's own tables (register_migrations): declare them like the core's
    "NAMING_CONVENTION", "TYPE_ANNOTATION_MAP",
    # commands and web routes
    "App", "pass_app", "emit_json", "progress_bar", "current_settings",
    # admin pages (register_admin_pages): who may use a view, who is asking, the audit log
    "AdminPage", "allow", "PUBLIC", "current_user", "actor", "engine", "record_audit", "local_path",
]


# Views' helpers live beside Flask; they are imported on first use so that loading a plugin (and
# every `hub` command, which loads them all) does not load the web framework.
_WEB = {name: "hub.admin.access" for name in ("allow", "current_user", "actor", "engine", "local_path")}


def __getattr__(name: str) -> Any:
    if name in _WEB:
        value = getattr(importlib.import_module(_WEB[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hub.api' has no attribute {name!r}")


def current_settings() -> Settings:
    """The settings of the running web app, inside a request (for register_routes and admin page views)."""
    from hub.admin.app import current_settings as of_the_app

    return of_the_app()
