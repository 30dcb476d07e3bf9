"""workflow_versions.created_by: who saved each version, so a marketer can see who changed what

Revision ID: 0003
Revises: 0002
"""

from alembic import op
import sqlalchemy as sa

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('workflow_versions') as batch:
        batch.add_column(sa.Column('created_by', sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('workflow_versions') as batch:
        batch.drop_column('created_by')
