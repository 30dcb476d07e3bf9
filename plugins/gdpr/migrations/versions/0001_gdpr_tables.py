"""gdpr: consent requests (double opt-in) and erased people's tombstone keys

Revision ID: 0001
Revises:

The first revision of the GDPR plugin's own chain. Databases made before the
plugin had migrations got these tables from the core's revision 0004, rows
and all: a table already there is adopted as it is, so only a missing one is
created (hub.migrations explains the move).
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')


def upgrade() -> None:
    missing = {'consent_requests', 'erased_keys'} - set(sa.inspect(op.get_bind()).get_table_names())
    if 'consent_requests' in missing:
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
    if 'erased_keys' in missing:
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
    with op.batch_alter_table('consent_requests', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_consent_requests_created_at'))
        batch_op.drop_index(batch_op.f('ix_consent_requests_contact_id'))
    op.drop_table('consent_requests')
