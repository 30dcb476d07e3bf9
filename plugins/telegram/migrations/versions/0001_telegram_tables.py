"""telegram: linked chats and the getUpdates offset

Revision ID: 0001
Revises:
"""

from alembic import op
import sqlalchemy as sa

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('telegram_chats',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('chat_id', sa.BigInteger(), nullable=False),
    sa.Column('user_id', sa.BigInteger(), nullable=True),
    sa.Column('username', sa.String(length=64), nullable=True),
    sa.Column('linked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('update_id', sa.BigInteger(), nullable=True),
    sa.Column('merge_id', sa.Integer(), nullable=True),
    sa.Column('previous_contact_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_telegram_chats_contact_id_contacts'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_telegram_chats')),
    sa.UniqueConstraint('contact_id', name=op.f('uq_telegram_chats_contact_id')),
    sa.UniqueConstraint('chat_id', name=op.f('uq_telegram_chats_chat_id')),
    )
    op.create_table('telegram_state',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_telegram_state')),
    )


def downgrade() -> None:
    op.drop_table('telegram_state')
    op.drop_table('telegram_chats')
