"""`hub mail`: the mail setup and what comes back (bounces, complaints).

The subcommands live beside what they drive and are added here.
"""

from __future__ import annotations

import click

from hub.api import lazy_gettext


@click.group("mail", help=lazy_gettext("Mail: check the sender's setup, read bounces and complaints."))
def mail_group() -> None:
    pass


from plugins.mailing.mail_check import check_command  # noqa: E402 - beside what it checks

mail_group.add_command(check_command)

from plugins.mailing.bounces.commands import bounces_command  # noqa: E402 - beside what it reads

mail_group.add_command(bounces_command)
