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

from hub.cli import App, emit_json, pass_app, progress_bar
from hub.config import Settings, SettingsError
from hub.credentials import CredentialError
from hub.credentials import load as load_credentials
from hub.credentials import lock as lock_credentials
from hub.credentials import redact as redact_credentials
from hub.credentials import save as save_credentials
from hub.db import get_engine, utcnow
from hub.hookspecs import hookimpl
from hub.messaging import Channel, ChannelUnavailable, Delivery, Outgoing
from hub.models import Contact, ExternalRef, Order
from hub.queue import enqueue
from hub.ratelimit import SendWindow, limiter
from hub.records import ContactRecord, Deletion, OrderRecord
from hub.retry import CUT_OFF_ERRORS, TRANSIENT_ERRORS, back_off, backoff_delay, is_cut_off
from hub.sampledata import Person, people
from hub.sandbox import RunningSandbox
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
    "RunningSandbox", "Person", "people",
    # secrets a plugin stores (encrypted with HUB_SECRET_KEY)
    "save_credentials", "load_credentials", "lock_credentials", "redact_credentials", "CredentialError",
    # talking to other systems politely
    "limiter", "SendWindow", "enqueue",
    "back_off", "backoff_delay", "is_cut_off", "TRANSIENT_ERRORS", "CUT_OFF_ERRORS",
    # segment rules
    "SegmentField", "SegmentOperator", "FieldContext", "Contact", "Order", "ExternalRef",
    # channels
    "Channel", "Outgoing", "Delivery", "ChannelUnavailable",
    # recurring work (register_schedules)
    "Schedule", "ScheduledRun",
    # commands and web routes
    "App", "pass_app", "emit_json", "progress_bar", "current_settings",
]


def current_settings() -> Settings:
    """The settings of the running web app, inside a request (for register_routes views)."""
    from hub.admin.app import current_settings as of_the_app

    return of_the_app()
