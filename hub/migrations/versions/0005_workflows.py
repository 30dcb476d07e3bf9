"""workflows: nothing now; the workflows plugin creates its tables in its own chain

Revision ID: 0005
Revises: 0004

Until the workflows plugin had migrations of its own, this revision created
its tables (workflows, workflow_versions, workflow_runs, step_results,
promo_codes, interactions, workflow_state). It keeps its id so databases at
any revision upgrade as before; workflows/migrations' first revision creates
the tables where they are missing and adopts them where this revision made
them (see hub.migrations).
"""

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
