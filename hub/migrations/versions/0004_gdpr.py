"""gdpr: consent requests (double opt-in), erasures and their tombstone keys

Revision ID: 0004
Revises: 0003
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')


def upgrade() -> None:
    op.create_table('consent_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=32), nullable=False),
    sa.Column('topics', JSON, nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('evidence', JSON, nullable=False),
    sa.Column('token_digest', sa.String(length=64), nullable=True),
    sa.Column('message_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_consent_requests_contact_id_contacts'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_consent_requests')),
    sa.UniqueConstraint('token_digest', name=op.f('uq_consent_requests_token_digest'))
    )
    with op.batch_alter_table('consent_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_consent_requests_contact_id'), ['contact_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_consent_requests_created_at'), ['created_at'], unique=False)

    op.create_table('erasures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_erasures')),
    sa.UniqueConstraint('contact_id', name=op.f('uq_erasures_contact_id'))
    )
    op.create_table('erased_keys',
    sa.Column('value_hash', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('erasure_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['erasure_id'], ['erasures.id'], name=op.f('fk_erased_keys_erasure_id_erasures'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('value_hash', name=op.f('pk_erased_keys'))
    )
    with op.batch_alter_table('erased_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_erased_keys_erasure_id'), ['erasure_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('erased_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_erased_keys_erasure_id'))
    op.drop_table('erased_keys')
    op.drop_table('erasures')
    with op.batch_alter_table('consent_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consent_requests_created_at'))
        batch_op.drop_index(batch_op.f('ix_consent_requests_contact_id'))
    op.drop_table('consent_requests')
