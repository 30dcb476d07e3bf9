"""activities: call_id, the call a note is about, so one call noted twice is counted once

- activities.call_id (nullable): amoCRM notes a call from telephony on the contact and on its lead
  alike, two notes with the same call (`params.uniq`). Both stay, as the CRM keeps both, and the
  segment fields that count calls count each call once.

Revision ID: 0021
Revises: 0020
"""

from alembic import op
import sqlalchemy as sa

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN on both databases: a base of millions of calls is not copied for it.
    op.add_column('activities', sa.Column('call_id', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('activities') as batch_op:
        batch_op.drop_column('call_id')
