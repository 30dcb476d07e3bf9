"""`hub telegram …` and `hub sandbox telegram`."""

from __future__ import annotations

import functools
from typing import Any, Callable

import click

from hub.api import (App, SettingsError, current_contact_id, emit_json, gettext as _, pass_app, public_url)
from plugins.telegram import config as bot_config
from plugins.telegram import status as bot_status
from plugins.telegram import updates
from plugins.telegram.bot import Bot, BotError


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SettingsError as exc:
            raise click.ClickException(str(exc)) from None
        except BotError as exc:
            raise click.ClickException(_("Telegram answered: %(answer)s", answer=str(exc))) from None
    return wrapper


@click.group("telegram")
def telegram_group() -> None:
    """The shop's Telegram bot: status, links to share, reading updates, the webhook."""


@telegram_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_app
def status_command(app: App, as_json: bool) -> None:
    """Whether the bot answers, how many chats are linked and how updates arrive."""
    found = bot_status.read(app.ready_engine(), app.settings)
    if as_json:
        emit_json(found.as_dict())
        return
    if not found.configured:
        click.echo(_("The bot is not set up: set HUB_TELEGRAM_BOT_TOKEN (docs/telegram.md)."))
    elif not found.connected:
        click.echo(_("The bot does not answer: %(problem)s", problem=found.problem or ""))
    else:
        click.echo(_("Bot @%(name)s is connected.", name=found.bot_name or "?"))
    click.echo(_("Linked chats: %(count)s", count=found.linked_chats))
    modes = {"webhook": _("updates arrive by webhook"), "polling": _("updates are read by the schedule"),
             "off": _("updates are not read")}
    click.echo(modes[found.mode])


@telegram_group.command("link")
@click.argument("contact_id", type=click.IntRange(1, 2**31 - 1))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_app
@user_errors
def link_command(app: App, contact_id: int, as_json: bool) -> None:
    """The deep link that links a person's chat to this contact (send it to them yourself)."""
    with app.ready_engine().connect() as conn:
        current = current_contact_id(conn, contact_id)
    if current is None:
        raise click.ClickException(_("No contact %(id)s (or the person was erased).", id=contact_id))
    url = bot_status.deep_link(app.settings, current)
    if as_json:
        emit_json({"contact_id": current, "url": url})
    else:
        click.echo(url)


@telegram_group.command("poll")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@pass_app
@user_errors
def poll_command(app: App, as_json: bool) -> None:
    """Read the updates waiting for the bot once (what the schedule does when there is no webhook)."""
    counts = updates.poll(app.ready_engine(), app.settings)
    if as_json:
        emit_json(counts)
        return
    click.echo(_("Updates read: %(count)s", count=counts.get("updates", 0)))


@telegram_group.group("webhook")
def webhook_group() -> None:
    """Have Telegram deliver updates to Hub's public address instead of polling."""


@webhook_group.command("set")
@click.option("--url", help="Public address of Hub; default HUB_PUBLIC_URL + /hooks/telegram.")
@pass_app
@user_errors
def webhook_set(app: App, url: str | None) -> None:
    """Tell Telegram where to deliver updates, with HUB_TELEGRAM_WEBHOOK_SECRET as the secret token."""
    config = bot_config.load(app.settings)
    if not config.webhook_secret:
        raise click.ClickException(_("Set HUB_TELEGRAM_WEBHOOK_SECRET first: updates without it are refused."))
    target = url or f"{public_url(app.settings)}/hooks/telegram"
    with Bot(config) as bot:
        bot.call("setWebhook", url=target, secret_token=config.webhook_secret, allowed_updates=["message"])
    click.echo(_("Telegram will deliver updates to %(url)s", url=target))


@webhook_group.command("delete")
@pass_app
@user_errors
def webhook_delete(app: App) -> None:
    """Stop webhook delivery; the schedule reads updates with getUpdates again."""
    with Bot(bot_config.load(app.settings)) as bot:
        bot.call("deleteWebhook")
    click.echo(_("The webhook is removed; updates are read by the schedule."))


@click.command("telegram")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8081, show_default=True, help="Port to listen on.")
def sandbox_telegram(host: str, port: int) -> None:
    """Run a local Telegram Bot API emulator (getMe, sendMessage, getUpdates, webhooks, limits, errors)."""
    from plugins.telegram import sandbox

    sandbox.serve(host, port)
