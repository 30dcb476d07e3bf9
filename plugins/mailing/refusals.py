"""Whether a permanent refusal was about the letter or about the address.

A 5xx answer usually means the address is dead (suppress it). But a
provider also refuses a letter for what it is or who sent it: a spam
filter (Mail.ru's "550 spam message rejected", Yandex's "554 5.7.1 Message
rejected under suspicion of SPAM"), a block list the shop's server landed on
("blocked using Spamhaus"), a sender without SPF/DKIM/DMARC (Gmail's
5.7.26), a relay refusing to relay. RFC 3463 keeps 5.7.x for such security
and policy refusals. Suppressing on them would lose every customer at that
provider the day the shop's server is blocked, so the SMTP channel fails
just that message and the bounce mailbox leaves the report for a person.
An answer that also says the address is gone (Yandex says "5.7.1 No such
user!") is still a dead address.
"""

from __future__ import annotations

import re

_DEAD_ADDRESS = re.compile(
    r"user unknown|unknown user|no such (user|mailbox|recipient|address)|does not exist|doesn't exist|"
    r"recipient not found|recipientnotfound|mailbox unavailable|mailbox not found|invalid (mailbox|recipient)|"
    r"account (has been )?(disabled|deleted)|user not found|нет такого (пользователя|адреса|ящика)|"
    r"пользовател[ья] не (найден|существует)|адрес(а)? не существует|ящик не существует", re.I)
_REFUSED_LETTER = re.compile(
    r"spam|unsolicited|black ?list|block ?list|blocked using|listed (at|on|in|by)|spamhaus|reputation|"
    r"unauthenticated|not authenticated|dmarc|\bspf\b|\bdkim\b|policy|suspicion|suspicious|"
    r"content (rejected|refused|filter)|message (content )?(rejected|refused)|relay access denied|"
    r"спам|подозрени|политик", re.I)
_POLICY_STATUS = re.compile(r"(?<![\d.])5\.7\.\d{1,3}(?![\d.])")


def letter_refused(answer: str, status: str | None = None) -> bool:
    """Whether a permanent failure (`answer`: the server's words; `status`: its enhanced code) refused the letter."""
    if _DEAD_ADDRESS.search(answer):
        return False
    if status is not None:
        policy = status.startswith("5.7.")
    else:
        policy = _POLICY_STATUS.search(answer) is not None
    return policy or _REFUSED_LETTER.search(answer) is not None
