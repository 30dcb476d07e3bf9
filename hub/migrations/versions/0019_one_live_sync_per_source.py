"""sync runs: at most one live sync of a source at a time, held by the database itself

- uq_sync_runs_live_source: a partial unique index on sync_runs(source) over the rows of a running
  full, incremental or reconcile run (hub.models.EXCLUSIVE_RUN_KINDS). Two `hub sync` processes, a
  cron job and the scheduler, or a worker and the admin's "Sync now" can no longer read the same
  CRM at once: each paced itself alone against the CRM's rate limit, and together they got the
  account blocked. Whoever inserts second is refused by the index, in any process, on SQLite and
  PostgreSQL alike (hub.sync.begin_run turns that into a message naming the live run).
- Before the index can exist, every source keeps at most one such running row: the newest. Older
  ones are marked interrupted, as hub.sync.interrupt_stale_runs would mark a dead run; a run among
  them that is still alive takes its row back at its next page only if no other run of its source
  is live, and otherwise stops (hub.sync.heartbeat).

Revision ID: 0019
Revises: 0018
"""

import datetime as dt

from alembic import op
import sqlalchemy as sa

revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None

# hub.models.EXCLUSIVE_RUN_KINDS, written out: a migration keeps the schema it made.
LIVE = "status = 'running' AND kind IN ('full', 'incremental', 'reconcile')"
KINDS = ('full', 'incremental', 'reconcile')


def upgrade() -> None:
    bind = op.get_bind()
    now = dt.datetime.now(dt.timezone.utc)
    if bind.dialect.name == 'sqlite':
        now = now.replace(tzinfo=None)  # hub.db.UTCDateTime stores naive UTC on SQLite
    runs = sa.table('sync_runs', sa.column('id', sa.Integer), sa.column('source', sa.String),
                    sa.column('kind', sa.String), sa.column('status', sa.String), sa.column('error', sa.Text),
                    sa.column('finished_at', sa.DateTime(timezone=True)))
    newer = runs.alias('newer')
    live_newer = sa.exists().where(newer.c.source == runs.c.source, newer.c.status == 'running',
                                   newer.c.kind.in_(KINDS), newer.c.id > runs.c.id)
    bind.execute(sa.update(runs).where(runs.c.status == 'running', runs.c.kind.in_(KINDS), live_newer).values(
        status='interrupted', error='interrupted: a newer run of the same source was running', finished_at=now))
    op.create_index('uq_sync_runs_live_source', 'sync_runs', ['source'], unique=True,
                    sqlite_where=sa.text(LIVE), postgresql_where=sa.text(LIVE))


def downgrade() -> None:
    op.drop_index('uq_sync_runs_live_source', table_name='sync_runs')
