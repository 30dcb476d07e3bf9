"""erasures: who was erased, when and why (the core reads it: an erased id acts on nobody)

Revision ID: 0004
Revises: 0003

Until the GDPR plugin had migrations of its own, this revision also created
consent_requests and erased_keys; they moved to plugins/gdpr/migrations,
whose first revision creates them where they are missing (see hub.migrations).
"""

from alembic import op
import sqlalchemy as sa

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('erasures',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('contact_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('erased_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_erasures')),
    sa.UniqueConstraint('contact_id', name=op.f('uq_erasures_contact_id'))
    )


def downgrade() -> None:
    op.drop_table('erasures')
