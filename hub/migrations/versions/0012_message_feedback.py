"""what comes back about sent messages: clicks, opens, bounces, complaints, delivery reports; the cost of a message

Revision ID: 0012
Revises: 0011
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')


def upgrade() -> None:
    op.create_table(
        'message_events',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('message_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('url', sa.Text(), nullable=True),
        sa.Column('detail', JSON, nullable=False),
        sa.Column('uid', sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_message_events_message_id_messages'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_message_events')),
        sa.UniqueConstraint('uid', name=op.f('uq_message_events_uid')),
    )
    op.create_index(op.f('ix_message_events_message_id_kind_at'), 'message_events', ['message_id', 'kind', 'at'])
    op.create_index(op.f('ix_message_events_kind_at'), 'message_events', ['kind', 'at'])
    with op.batch_alter_table('messages') as batch_op:
        batch_op.add_column(sa.Column('cost', sa.Numeric(precision=12, scale=4), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('messages') as batch_op:
        batch_op.drop_column('cost')
    op.drop_table('message_events')
