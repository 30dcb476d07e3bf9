"""`hub dedupe`: merge what the identity rules say, list look-alikes, merge a checked pair by hand."""

from __future__ import annotations

import click

from hub import dedupe
from hub.cli import App, emit_json, pass_app


@click.command("dedupe")
@click.option("--merge", "merge_pair", nargs=2, type=int, metavar="SURVIVOR OTHER",
              help="Merge OTHER into SURVIVOR (a look-alike you have checked).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def dedupe_cmd(app: App, merge_pair: tuple[int, int] | None, as_json: bool) -> None:
    """Merge what the identity rules say; list same-name look-alikes for review."""
    engine = app.ready_engine()
    if merge_pair:
        try:
            result = dedupe.merge_by_hand(engine, *merge_pair, actor="cli", settings=app.settings)
        except ValueError as exc:  # a refused merge (dedupe.MergeRefused) or a wrong id: one line
            raise click.ClickException(str(exc)) from None
        if as_json:
            emit_json(result)
        else:
            click.echo(f"Merged #{result['merged']} into #{result['survivor']}.")
        return
    report = dedupe.run(engine, app.settings)
    if as_json:
        emit_json(report.as_dict())
        return
    click.echo(f"Re-read {report.reparsed} flagged values; merged {len(report.merged)} contacts by rule.")
    if report.suggestions:
        click.echo(f"{len(report.suggestions)} groups share a name only (never merged automatically):")
        for s in report.suggestions[:30]:
            ids = ", ".join(f"#{i}" for i in s["contact_ids"])
            click.echo(f"  {s['name']}: {ids} — {', '.join(s['evidence'])}")
        click.echo("Merge a checked pair with: hub dedupe --merge SURVIVOR OTHER")
