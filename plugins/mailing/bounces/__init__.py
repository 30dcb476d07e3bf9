"""Bounces and spam complaints, read from the mailbox they are mailed to.

The flow, every HUB_BOUNCE_INTERVAL_S seconds (default 300) once
HUB_BOUNCE_IMAP_HOST is set, or now with `hub mail bounces`:

1. imap: the letters waiting in the bounce mailbox, in batches;
2. dsn: what each says (a hard or soft bounce, a complaint, an auto-reply,
   or nothing Hub understands);
3. match: which message it is about: the signed VERP return path, else the
   original's exact Message-ID, and only if the recipient is that message's;
4. process: one transaction per batch records each through
   ``hub.api.record_message_event``, which suppresses dead addresses and
   withdraws the consent of complainers; then the handled letters are moved
   to the done folder and the rest are flagged for a person. Nothing is
   deleted.
"""

from __future__ import annotations

import datetime as dt

from hub.api import N_, Schedule, Settings


def schedule(settings: Settings) -> Schedule | None:
    """The "mail-bounces" schedule, or None while no bounce mailbox is set (HUB_BOUNCE_IMAP_HOST)."""
    if not str(settings.extra.get("bounce_imap_host") or "").strip():
        return None
    from plugins.mailing.bounces import process

    return Schedule(dt.timedelta(seconds=process.interval_s(settings)), process.scheduled,
                    N_("read bounces and spam complaints from the bounce mailbox ([HUB_BOUNCE_INTERVAL_S])"),
                    N_("Bounces and complaints"))
