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
from typing import TYPE_CHECKING, Any

from hub.admin.audit import actor_title
from hub.admin.audit import record as record_audit
from hub.admin.registry import PUBLIC, AdminPage
from hub.cli import ROW_ID, App, emit_json, pass_app, progress_bar, stderr
from hub.config import Settings, SettingsError, load_settings
from hub.consent import OWN_ADDRESS, TRANSACTIONAL, can_contact, kind_for_channel
from hub.consent import addresses as contact_addresses
from hub.consent import channels as consent_channels
from hub.consent import channel_title as consent_channel_title
from hub.consent import current as current_consent
from hub.consent import purposes as consent_purposes
from hub.consent import purpose_title as consent_purpose_title
from hub.consent import status_title as consent_status_title
from hub.consent import record as record_consent
from hub.contacts import card as contact_card
from hub.credentials import CredentialError
from hub.credentials import delete as delete_credentials
from hub.credentials import load as load_credentials
from hub.credentials import lock as lock_credentials
from hub.credentials import redact as redact_credentials
from hub.credentials import save as save_credentials
from hub.db import MAX_ROW_ID, analyze, bulk_insert, chunks, get_engine, insert_for, utcnow, whole_number
from hub.hookspecs import hookimpl
from hub.events import settled_event_id
from hub.formats import date as format_date
from hub.formats import duration as format_length
from hub.formats import money as format_money
from hub.formats import moment as format_moment
from hub.formats import number as format_number
from hub.formats import percent as format_percent
from hub.formats import phone as format_phone
from hub.i18n import N_, current_language, gettext, lazy_gettext, ngettext, pgettext, use_language
from hub.i18n import title as translated_title
from hub.identity import ContactKey, current_contact_id, find_contact, find_contacts, shared_keys
from hub.links import public_url, unsubscribe_mailto
from hub.localtime import (QuietHours, contact_zones, end_of_local_day, format_duration, next_local_time,
                           parse_duration, parse_time_of_day)
from hub.message_templates import TemplateError, company, local_time
from hub.messaging.channels import Channel, ChannelUnavailable, Delivery, Outgoing
from hub.messaging.feedback import KINDS as MESSAGE_EVENT_KINDS
from hub.messaging.feedback import Heard as HeardAboutMessage
from hub.messaging.feedback import record_many as record_message_events
from hub.messaging.feedback import Recorded as RecordedMessageEvent
from hub.messaging.feedback import record as record_message_event
from hub.messaging.rules import Verdict
from hub.messaging.sms_parts import text_parts
from hub.messaging.sms_cost import cost_text as sms_cost_text
from hub.messaging.sms_cost import estimate as sms_estimate
from hub.messaging.sms_cost import price as sms_price
from hub.messaging.sms_cost import size_text as sms_size_text
from hub.messaging.sms_cost import total_text as sms_total_text
from hub.normalize import email as normalize_email
from hub.normalize import person_name
from hub.spreadsheet import split_full_name
from hub.normalize import phones as normalize_phones
from hub.models import (NAMING_CONVENTION, TYPE_ANNOTATION_MAP, Activity, Company, ContactCompany, Contact,
                        ContactIdentity, CustomField, Event, ExternalRef, Message, MessageEvent, Order)
from hub.queue import enqueue, redis_connection
from hub.ratelimit import Limiter, SendWindow, limiter
from hub.records import (ACTIVITY_KINDS, FIELD_TYPES, ActivityRecord, CompanyRecord, ContactRecord, Deletion,
                         FieldDefinition, OrderRecord, OrderStatus, clean_text, without_nul)
from hub.retry import (CUT_OFF_ERRORS, TRANSIENT_ERRORS, Retries, TimedRetries, back_off, backoff_delay, is_cut_off,
                       no_answer)
from hub.sampledata import Person, people
from hub.sandbox import BackgroundServer, EmulatorHTTPServer, RunningSandbox, serve_until_interrupted
from hub.schedule import Schedule, ScheduledRun
from hub.schedule import interval as schedule_interval
from hub.segments.fields import FieldContext, SegmentField, SegmentOperator
from hub.send_limits import (IGNORE_QUIET_HOURS, NOT_COUNTED, QUIET_HOURS_META, FrequencyCap, SendLimits, Slot,
                              cap_until, first_allowed, ignores_quiet_hours)
from hub.send_limits import load as load_send_limits
from hub.send_reasons import ReasonShape, reason_text
from hub.sync import Page, ReconcilingSource, Source, SyncError, TargetedSource
from hub.webapi.endpoints import ApiError, Call as ApiCall, Endpoint as ApiEndpoint
from hub.webapi.endpoints import cursor_after as api_cursor_after
from hub.webapi.endpoints import read_cursor as api_read_cursor
from hub.webhooks import publish as publish_webhook_event
from hub.writeback import Erasing, FieldBatches, NoCrmHolds, WriteBack, WriteBackError
from hub.unmerge import UnmergeRefused, unmerge
from hub.writeback import apply as write_back

__all__ = [
    # writing a plugin
    "hookimpl", "Settings", "SettingsError", "load_settings", "get_engine", "utcnow",
    # speaking the reader's language (register_translations ships the catalogs)
    "gettext", "ngettext", "pgettext", "lazy_gettext", "N_", "current_language", "use_language",
    "format_date", "format_moment", "format_number", "format_money", "format_percent", "format_phone",
    "format_length",  # a length of time for people ("14 дней"); format_duration writes it for files ("14d")
    "translated_title",
    # sources: what they read and hand over
    "Source", "TargetedSource", "ReconcilingSource", "Page", "ContactRecord", "OrderRecord", "Deletion",
    "OrderStatus", "SyncError", "WriteBack", "WriteBackError", "NoCrmHolds", "person_name",
    # the CRM round trip: companies, the activities managers log, custom fields with their types
    "CompanyRecord", "ActivityRecord", "FieldDefinition", "ACTIVITY_KINDS", "FIELD_TYPES",
    "clean_text", "without_nul",  # NUL out of a CRM's text (PostgreSQL refuses it), a string or a whole record
    "FieldBatches",  # a source writing many records' fields in few requests (scores pushed on change)
    "Erasing",  # a source that erases a person in its CRM (deletes, or anonymises where it cannot delete)
    "split_full_name",  # (first, last, middle) from one ФИО written as Russians do ("Иванов Иван Иванович")
    # people: who a contact is now (after merges), their card, their consent, their local time
    "current_contact_id", "contact_card", "ContactIdentity", "unmerge", "UnmergeRefused",
    # finding a person by what another system knows: a phone or email as Hub normalizes it
    "find_contact", "normalize_phones", "normalize_email",
    # which live contact ids, references (source, external_id) or normalized phones and emails name, set-wise
    "find_contacts", "ContactKey", "MAX_ROW_ID",
    # an id or count typed or sent as text (ASCII digits, within bounds), or None: never a ValueError
    "whole_number",
    # which phones and emails are several people's (they name nobody, and are not unknown either)
    "shared_keys",
    "can_contact", "current_consent", "record_consent", "consent_channels", "consent_purposes", "kind_for_channel",
    "consent_status_title", "consent_channel_title", "consent_purpose_title",
    "contact_addresses", "TRANSACTIONAL",
    "OWN_ADDRESS",  # a channel factory's address_kind when the channel finds the person itself (a linked chat)
    "QuietHours", "contact_zones", "next_local_time", "end_of_local_day", "parse_time_of_day",
    "parse_duration", "format_duration",
    # writing back to the CRMs that hold a contact (set a field, add a comment or a task)
    "write_back",
    # emulators for the demo and tests
    "RunningSandbox", "BackgroundServer", "EmulatorHTTPServer", "serve_until_interrupted", "Person", "people",
    # secrets a plugin stores (encrypted with HUB_SECRET_KEY)
    "save_credentials", "load_credentials", "lock_credentials", "redact_credentials", "delete_credentials",
    "CredentialError",
    # talking to other systems politely
    "limiter", "Limiter", "SendWindow", "enqueue", "redis_connection",
    "Retries", "TimedRetries", "no_answer", "back_off", "backoff_delay", "is_cut_off", "TRANSIENT_ERRORS",
    "CUT_OFF_ERRORS",
    # segment rules
    "SegmentField", "SegmentOperator", "FieldContext", "Contact", "Order", "Event", "ExternalRef",
    "Company", "ContactCompany", "Activity", "CustomField",
    # channels and send rules (check_send)
    "Channel", "Outgoing", "Delivery", "ChannelUnavailable", "Verdict", "Message", "text_parts", "unsubscribe_mailto",
    # what an SMS costs before it is sent: its parts and HUB_SMS_PRICE, in words
    "sms_price", "sms_estimate", "sms_size_text", "sms_cost_text", "sms_total_text",
    "load_send_limits", "SendLimits", "FrequencyCap", "cap_until", "first_allowed", "Slot", "NOT_COUNTED",
    "ignores_quiet_hours", "QUIET_HOURS_META", "IGNORE_QUIET_HOURS",
    "ReasonShape", "reason_text",
    # what is heard about a sent message later (bounce, complaint, click, open, delivery report) and its effects
    "record_message_event", "RecordedMessageEvent", "MESSAGE_EVENT_KINDS", "MessageEvent",
    "record_message_events", "HeardAboutMessage",  # the same for a batch: a bounce mailbox holds thousands
    # message templates: their errors, the company details and local times they show, public links
    "TemplateError", "company", "local_time", "public_url",
    # recurring work (register_schedules); schedule_interval reads HUB_<KEY> seconds, 0 = off
    "Schedule", "ScheduledRun", "schedule_interval",
    # a plugin's own tables (register_migrations): declare them like the core's; analyze one a long
    # transaction is filling, so the planner sees its size
    "NAMING_CONVENTION", "TYPE_ANNOTATION_MAP", "insert_for", "bulk_insert", "chunks", "analyze",
    # commands and web routes
    "App", "pass_app", "emit_json", "progress_bar", "stderr", "ROW_ID", "current_settings",
    # the HTTP API (register_api_endpoints) and webhooks out (publish_webhook_event, in the caller's transaction)
    "ApiEndpoint", "ApiCall", "ApiError", "api_cursor_after", "api_read_cursor", "publish_webhook_event",
    # events other systems sent: the id below which every one is committed (read them by id up to it)
    "settled_event_id",
    # admin pages (register_admin_pages): who may use a view, who is asking, the audit log
    "AdminPage", "allow", "PUBLIC", "current_user", "actor", "engine", "record_audit", "actor_title", "local_path",
    "ActionForm",
    # a rendered letter as its own sandboxed page, for an <iframe sandbox> (its inline styles show)
    "letter_response",
]


# Views' helpers live beside Flask; they are imported on first use so that loading a plugin (and
# every `hub` command, which loads them all) does not load the web framework.
if TYPE_CHECKING:
    from hub.admin.access import actor, allow, current_user, engine, local_path
    from hub.admin.forms import ActionForm
    from hub.admin.letter_frame import letter_response

_WEB = {name: "hub.admin.access" for name in ("allow", "current_user", "actor", "engine", "local_path")}
_WEB["ActionForm"] = "hub.admin.forms"  # a button's form: only the CSRF token
_WEB["letter_response"] = "hub.admin.letter_frame"


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
