"""How this plugin's audit entries read on the audit log page and in the command's summary.

The log keeps each entry's details as technical keys and values (``removed``,
``results: [{"result": "failed: unreachable"}]``), so that scripts and later
code can read them. People read sentences: what an erasure removed, what each
CRM answered and what to do about it. The audit page asks for these through
``AdminPage.audit_details``, the same door a stranger's plugin has.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from hub.api import format_number, gettext, ngettext
from plugins.gdpr import erasure, export

# What erasure removed, by kind (erasure's report keys), as counted things in the reader's language.
REMOVED: dict[str, Callable[[int], str]] = {
    "identities": lambda n: ngettext("%(num)s phone or email", "%(num)s phones and emails", n,
                                     num=format_number(n)),
    "external_refs": lambda n: ngettext("%(num)s CRM reference", "%(num)s CRM references", n,
                                        num=format_number(n)),
    "consent_events": lambda n: ngettext("%(num)s consent event", "%(num)s consent events", n,
                                         num=format_number(n)),
    "consent_requests": lambda n: ngettext("%(num)s signup request", "%(num)s signup requests", n,
                                           num=format_number(n)),
    "messages": lambda n: ngettext("%(num)s message", "%(num)s messages", n, num=format_number(n)),
    "orders": lambda n: ngettext("%(num)s order", "%(num)s orders", n, num=format_number(n)),
    "merges": lambda n: ngettext("%(num)s merge", "%(num)s merges", n, num=format_number(n)),
    "notes": lambda n: ngettext("%(num)s note on the card", "%(num)s notes on the card", n, num=format_number(n)),
    "activities": lambda n: ngettext("%(num)s call, meeting or letter logged in the CRM",
                                     "%(num)s calls, meetings and letters logged in the CRM", n,
                                     num=format_number(n)),
}

# What a retention run did, by its report's keys, in the reader's language.
RETENTION: dict[str, Callable[[int], str]] = {
    "messages": lambda n: ngettext("%(num)s message anonymized", "%(num)s messages anonymized", n,
                                   num=format_number(n)),
    "sync_runs": lambda n: ngettext("%(num)s sync run deleted", "%(num)s sync runs deleted", n,
                                    num=format_number(n)),
    "merge_snapshots": lambda n: ngettext("%(num)s merge snapshot cleared", "%(num)s merge snapshots cleared", n,
                                          num=format_number(n)),
    "consent_requests": lambda n: ngettext("%(num)s signup request deleted", "%(num)s signup requests deleted", n,
                                           num=format_number(n)),
    "inactive_contacts": lambda n: ngettext("%(num)s inactive contact anonymized",
                                            "%(num)s inactive contacts anonymized", n, num=format_number(n)),
}


def removed(counts: Mapping[str, Any]) -> str:
    """What an erasure removed, as a list of counted things ("2 телефона и e-mail, 3 заказа")."""
    parts = []
    for kind, n in counts.items():
        if not isinstance(n, int) or not n:
            continue
        parts.append(REMOVED[kind](n) if kind in REMOVED else f"{format_number(n)} {kind.replace('_', ' ')}")
    return ", ".join(parts) or gettext("nothing but the name")


def _count(n: Any) -> int:
    return n if isinstance(n, int) else 0


def erased(details: Mapping[str, Any]) -> str:
    """A `gdpr.erase` entry: what went, what keeps the person out, and whether the CRMs are to be asked."""
    suppressed, keys = _count(details.get("suppressed")), _count(details.get("tombstone_keys"))
    if details.get("already_erased") and not any(v for v in (details.get("removed") or {}).values()):
        parts = [gettext("already erased; nothing of theirs was left")]
    else:
        parts = [gettext("removed: %(what)s", what=removed(details.get("removed") or {})),
                 ngettext("%(num)s phone or email suppressed", "%(num)s phones and emails suppressed",
                          suppressed, num=format_number(suppressed)),
                 ngettext("%(num)s key keeps the person from coming back",
                          "%(num)s keys keep the person from coming back", keys, num=format_number(keys))]
    crms = sorted({erasure.product(str(ref.get("source", ""))) for ref in details.get("crm_refs") or ()
                   if isinstance(ref, Mapping)})
    if details.get("delete_in_sources"):  # which CRMs and what they answered: the next entry, gdpr.erase.sources
        parts.append(gettext("the CRMs were asked to erase the person too"))
    elif crms:
        parts.append(gettext("still in %(crms)s: not asked to erase there", crms=", ".join(crms)))
    return "; ".join(parts)


def erased_in_sources(details: Mapping[str, Any]) -> str:
    """A `gdpr.erase.sources` entry: each CRM's answer as a sentence, with what to do when it failed."""
    answers = [erasure.describe({"source": str(item.get("source", "")), "result": str(item.get("result", ""))})
               for item in details.get("results") or () if isinstance(item, Mapping)]
    return "; ".join(answers) or gettext("no CRM was left to ask")


def anonymized(details: Mapping[str, Any]) -> str:
    """A `gdpr.anonymize` entry (retention's erasure): what went."""
    return gettext("removed: %(what)s", what=removed(details.get("removed") or {}))


def exported(details: Mapping[str, Any]) -> str:
    """A `gdpr.export` entry: the sections the export held, with their sizes."""
    sections = details.get("sections") or {}
    parts = [f"{export.section_title(str(name))}: {format_number(n)}" for name, n in sections.items()
             if isinstance(n, int) and n]
    return ", ".join(parts) or gettext("nothing but the contact")


def retention_run(details: Mapping[str, Any]) -> str:
    """A `gdpr.retention` entry: what each rule deleted or anonymized."""
    parts = [say(details[key]) for key, say in RETENTION.items() if isinstance(details.get(key), int)
             and details[key]]
    return ", ".join(parts) or gettext("nothing was past its age")


# The audit page's door (AdminPage.audit_details): this plugin's actions and how their details read.
AUDIT_DETAILS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "gdpr.erase": erased, "gdpr.erase.sources": erased_in_sources, "gdpr.anonymize": anonymized,
    "gdpr.export": exported, "gdpr.retention": retention_run,
}
