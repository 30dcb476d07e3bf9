"""A workflow's versions in the admin: the list, one version compared with another, restoring, moving runs.

Everyone may look; restoring a version and moving runs are a marketer's
decisions, each recorded in the audit log (workflows.versions does both and
writes the entry). A campaign's workflow has no versions page: its page is
the campaign's.
"""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from hub.api import whole_number
from hub.api import ActionForm, actor, allow, current_settings, engine, gettext, ngettext, translated_title
from workflows import store, versions
from workflows.admin import bp
from workflows.definition import WorkflowError

MAX_VERSION = 2 ** 31 - 1


def _row_or_404(name: str) -> Any:
    """The workflow's row; an unknown name is a 404, a campaign's workflow goes to its campaign."""
    with engine().connect() as conn:
        found = conn.execute(select(store.workflows_t).where(store.workflows_t.c.name == name)).first()
    if found is None:
        abort(404)
    if found.origin == store.CAMPAIGN_ORIGIN:
        abort(404)
    return found


def _version_or_404(row: Any, version: int) -> None:
    if not 1 <= version <= min(row.version, MAX_VERSION):
        abort(404)


@bp.get("/<name>/versions", endpoint="versions")
@allow(read="viewer")
def versions_page(name: str) -> Any:
    row = _row_or_404(name)
    with engine().connect() as conn:
        found = versions.history(conn, name)
        elsewhere = versions.in_progress_elsewhere(conn, name)
    return render_template("workflows/versions.html", name=name, title=translated_title(row.title) or name,
                           row=row, versions=found, elsewhere=elsewhere,
                           elsewhere_text=versions.counts_text(elsewhere), action=ActionForm(),
                           edit_url=_edit_url(name))


def _edit_url(name: str) -> str | None:
    return url_for("workflows.edit", name=name) if "workflows.edit" in current_app.view_functions else None


@bp.get("/<name>/versions/<int:version>", endpoint="version")
@allow(read="viewer")
def version_page(name: str, version: int) -> Any:
    row = _row_or_404(name)
    _version_or_404(row, version)
    raw = request.args.get("compare", "").strip()
    compare = whole_number(raw, most=row.version)
    if raw and compare is None:
        flash(gettext("Compare with: %(value)s is not a version of this workflow (1 to %(max)s).",
                      value=repr(raw[:20]), max=row.version), "error")
    other = compare if compare is not None else version - 1
    settings = current_settings()
    with engine().connect() as conn:
        found = {v["version"]: v for v in versions.history(conn, name)}
        compared = versions.diff(conn, name, min(other, version), max(other, version), settings=settings) \
            if other >= 1 and other != version else None
        text = versions.to_text(dict(conn.execute(select(store.versions_t.c.definition).where(
            store.versions_t.c.workflow_id == row.id, store.versions_t.c.version == version)).scalar_one()))
    return render_template("workflows/version.html", name=name, title=translated_title(row.title) or name,
                           row=row, this=found[version], other=other if compared else None, compared=compared,
                           text=text, choices=sorted(found, reverse=True), action=ActionForm())


@bp.post("/<name>/versions/<int:version>/restore")
@allow(read=None, write="marketer")
def restore_version(name: str, version: int) -> Any:
    row = _row_or_404(name)
    _version_or_404(row, version)
    if ActionForm().validate_on_submit():
        try:
            with engine().begin() as conn:
                new = versions.restore(conn, current_settings(), name, version, actor())
        except WorkflowError as exc:
            flash(gettext("Version %(num)s was not restored: %(problems)s", num=version,
                          problems="; ".join(exc.problems)), "error")
        else:
            if new == row.version:
                flash(gettext("Version %(num)s is what the workflow already is; nothing to restore.", num=version),
                      "ok")
            elif row.enabled and not _row_or_404(name).enabled:  # it lets others in: confirm as at switch-on
                flash(gettext("The new version is saved. Who enters the workflow changed, so the workflow is "
                              "switched off: check the forecast and switch it on again."), "error")
                return redirect(url_for("workflows.enable_confirm", name=name))
            else:
                flash(gettext("Version %(old)s is restored as version %(new)s. Runs in progress stay on their "
                              "versions until you move them.", old=version, new=new), "ok")
            return redirect(url_for("workflows.versions", name=name))
    return redirect(url_for("workflows.version", name=name, version=version))


@bp.post("/<name>/versions/move-runs")
@allow(read=None, write="marketer")
def move_runs(name: str) -> Any:
    _row_or_404(name)
    if ActionForm().validate_on_submit():
        try:
            with engine().begin() as conn:
                report = versions.move_runs(conn, current_settings(), name, by=actor())
        except WorkflowError as exc:
            flash(gettext("The runs were not moved: %(problems)s", problems="; ".join(exc.problems)), "error")
        else:
            flash(ngettext("%(num)s run moved to version %(version)s.", "%(num)s runs moved to version %(version)s.",
                           report.moved_total, version=report.to_version), "ok")
            for kept in report.kept:
                flash(ngettext("%(num)s run stays on version %(version)s: %(reason)s",
                               "%(num)s runs stay on version %(version)s: %(reason)s", kept["count"],
                               version=kept["version"], reason=kept["reason"]), "error")
    return redirect(url_for("workflows.versions", name=name))
