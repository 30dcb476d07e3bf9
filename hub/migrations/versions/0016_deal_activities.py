"""activities logged on a deal or lead: the deal's id beside the contact's

- activities.order_external_id: the source's id of the deal (Bitrix24) or lead (amoCRM) a call or task
  was logged on. Such an activity reaches the contact the deal belongs to (orders.contact_id), and
  follows it when the deal arrives later or changes hands.
- ix_activities_source_order_external_id: an order just written finds its activities by it.

Revision ID: 0016
Revises: 0015
"""

from alembic import op
import sqlalchemy as sa

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('activities') as batch:
        batch.add_column(sa.Column('order_external_id', sa.String(length=200), nullable=True))
    op.create_index(op.f('ix_activities_source_order_external_id'), 'activities', ['source', 'order_external_id'])


def downgrade() -> None:
    op.drop_index(op.f('ix_activities_source_order_external_id'), table_name='activities')
    with op.batch_alter_table('activities') as batch:
        batch.drop_column('order_external_id')
