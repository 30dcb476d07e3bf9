"""campaigns: one-off sends to a segment, carried by a workflow of their own

Revision ID: 0002
Revises: 0001
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'campaigns',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('title', sa.String(length=300), nullable=False),
        sa.Column('segment', sa.String(length=64), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('template', sa.String(length=100), nullable=False),
        sa.Column('purpose', sa.String(length=64), nullable=False),
        sa.Column('promo', JSON, nullable=True),
        sa.Column('holdout', sa.Integer(), server_default='0', nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('scheduled_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('workflow_id', sa.Integer(), nullable=True),
        sa.Column('created_by', sa.String(length=200), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['workflow_id'], ['workflows.id'], name=op.f('fk_campaigns_workflow_id_workflows'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_campaigns')),
        sa.UniqueConstraint('name', name=op.f('uq_campaigns_name')),
    )
    with op.batch_alter_table('campaigns') as batch_op:
        batch_op.create_index(batch_op.f('ix_campaigns_status_scheduled_at'), ['status', 'scheduled_at'], unique=False)


def downgrade() -> None:
    op.drop_table('campaigns')
