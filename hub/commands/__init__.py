"""The core's own commands, added to `hub` through register_commands like any plugin's.

A default plugin (hub.plugins.DEFAULT_PLUGINS), as datasette's default
plugins are: the root command (hub.cli) knows no command, so a reader finds
each one where its name says (`hub X` in hub/commands/X.py; `hub import` in
importing.py, `hub connect` and `hub sandbox` in sync.py), and a command
module imports its helpers from hub.cli without the root importing it back.
`hub segments` lives with the segments (hub.segments.commands) and `hub
plugin new` with the scaffold (hub.scaffold).

The implementation runs first (tryfirst), so a plugin's register_commands
finds the core's groups, such as `hub connect`, to add its subcommands to.
The command modules are imported only here, when a command line is built,
so loading the plugins (the admin does it too) stays cheap.
"""

from __future__ import annotations

import click

from hub.hookspecs import hookimpl


@hookimpl(tryfirst=True)
def register_commands(cli: click.Group) -> None:
    from hub.commands import (admin, consent, contacts, dedupe, demo, importing, init, plugins, sample, scheduler,
                              sync, users, webhooks, worker)
    from hub.scaffold import plugin_group
    from hub.segments.commands import segments_group

    for command in (init.init, importing.import_group, contacts.contacts_group, dedupe.dedupe_cmd,
                    consent.consent_group, segments_group, sync.sync_cmd, worker.worker_cmd,
                    scheduler.scheduler_cmd, admin.admin_cmd, users.users_group, sample.sample_group, demo.demo_cmd,
                    plugins.plugins_cmd, plugin_group, webhooks.webhooks_group):
        cli.add_command(command)
    from hub.commands import api_keys

    cli.add_command(api_keys.api_keys_group)
    from hub.commands import crm

    cli.add_command(crm.crm_group)
    for group in sync.crm_groups():
        if group.name not in cli.commands:  # a command line built again keeps what plugins added
            cli.add_command(group)
