"""The outbox: every message Hub sends is a row here before any channel sees it.

Three promises, and how they are kept:

- **At most once, and as little in doubt as possible.** A message has a
  unique idempotency key (a workflow uses its run and step); creating it
  again returns the row that exists (compose). A worker claims a batch with a
  lease (claims), so two workers never take the same row. Just before one
  message is handed to its channel, a short transaction commits it as
  `sending` (and, in the same commit, the outcome of the message before it);
  so at any moment a worker holds at most one message in doubt (dispatcher).
  A crash then leaves that one `sending` until `recover_stale` marks it
  `unknown` for a person to review (never a silent second send), while the
  rest of its batch is still `queued` and is sent by the next worker once the
  lease runs out.
- **Permission at send time.** Every message passes the send rules just
  before its channel is called, whoever dispatches it: every implementation
  of the `check_send` hook (the core's consent decision in hub.outbox_hooks,
  quiet hours and the frequency cap in hub.send_limits, a business's own). A skip
  marks it `suppressed` with the reason; a deferral holds it `queued` until then (rules).
- **Nothing lost to a bad moment.** A temporary failure (SMTP 4xx, a gateway
  that is down) defers the message and retries it later with backoff; a
  permanent one fails it, and when the address itself is dead the address is
  suppressed and a consent event records the bounce (dispatcher).

The modules, one concept each:

    outbox      the table, its statuses, looking at messages and settling one in doubt
    channels    what a channel plugin sees and answers (Outgoing, Delivery, Channel)
    rules       send rules: the check_send hook's verdicts and how they combine
    compose     rendering messages for contacts into the outbox, once per key
    sms_parts   how many parts an SMS text takes
    claims      which worker holds which message, and what a dead worker leaves
    dispatcher  handing claimed messages to their channels and writing the outcomes
    feedback    what is heard later (bounces, complaints, clicks, delivery reports) and its effects

The names below are the package's surface (``hub.messaging.dispatch``, ...);
plugins take the channel protocol and Verdict from hub.api.
"""

from __future__ import annotations

from hub.messaging.channels import (DELIVERY_STATUSES, Channel, ChannelUnavailable, Delivery, Outgoing,
                                    channel_factories)
from hub.messaging.claims import CLAIM_LEASE, SENDING_TIMEOUT, claim, recover_stale, worker_name
from hub.messaging.compose import (CreateReport, Created, build_row, contact_contexts, create, create_many, insert,
                                   pick_addresses, prepare)
from hub.messaging.dispatcher import (BACKOFF, DEFAULT_BATCH, MAX_ATTEMPTS, RELEASE_DELAY, DispatchReport,
                                      Dispatcher, backoff, channel_rate, claim_lease, dispatch, dispatch_job,
                                      record_bounce, send)
from hub.messaging.feedback import KINDS as EVENT_KINDS
from hub.messaging.feedback import Heard, Recorded, events_t, record_many, soft_bounce_limit
from hub.messaging.feedback import record as record_event
from hub.messaging.outbox import (DEFERRED, FAILED, QUEUED, RESOLUTIONS, SENDING, SENT, STATUSES, SUPPRESSED,
                                  TRANSACTIONAL, UNKNOWN, MessagingError, counts, find, get, messages_t, resolve,
                                  status_title)
from hub.messaging.rules import SendRules, Verdict, combine
from hub.messaging.sms_parts import text_parts

__all__ = [
    # the outbox
    "messages_t", "QUEUED", "SENDING", "SENT", "FAILED", "SUPPRESSED", "DEFERRED", "UNKNOWN", "STATUSES",
    "TRANSACTIONAL", "RESOLUTIONS", "MessagingError", "get", "find", "counts", "resolve", "status_title",
    # channels
    "Outgoing", "Delivery", "DELIVERY_STATUSES", "Channel", "ChannelUnavailable", "channel_factories",
    # send rules
    "Verdict", "combine", "SendRules",
    # composing
    "Created", "CreateReport", "contact_contexts", "pick_addresses", "build_row", "prepare", "insert", "create",
    "create_many", "text_parts",
    # claims and dispatch
    "CLAIM_LEASE", "SENDING_TIMEOUT", "claim", "recover_stale", "worker_name",
    "MAX_ATTEMPTS", "BACKOFF", "DEFAULT_BATCH", "RELEASE_DELAY", "DispatchReport", "Dispatcher", "backoff",
    "channel_rate", "claim_lease", "dispatch", "send", "dispatch_job", "record_bounce",
    # feedback
    "events_t", "EVENT_KINDS", "Recorded", "Heard", "record_event", "record_many", "soft_bounce_limit",
]
