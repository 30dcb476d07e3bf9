"""identities: shared values and their types; merges that can be undone; pairs kept apart

A phone or email several people use (a switchboard, a household landline,
info@, an 8-800 line) may now sit on several contacts: the unique index on
valid values covers personal values only.

Revision ID: 0009
Revises: 0008
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contact_identities') as batch_op:
        batch_op.add_column(sa.Column('label', sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column('shared', sa.String(length=16), nullable=True))
        batch_op.drop_index('uq_contact_identities_valid_value', sqlite_where=sa.text('valid = 1'),
                            postgresql_where=sa.text('valid'))
        batch_op.create_index('uq_contact_identities_valid_value', ['kind', 'value'], unique=True,
                              sqlite_where=sa.text('valid = 1 AND shared IS NULL'),
                              postgresql_where=sa.text('valid AND shared IS NULL'))
        batch_op.create_index('ix_contact_identities_shared_value', ['kind', 'value'],
                              sqlite_where=sa.text('shared IS NOT NULL'),
                              postgresql_where=sa.text('shared IS NOT NULL'))
    with op.batch_alter_table('contact_merges') as batch_op:
        batch_op.add_column(sa.Column('undone_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('undone_by', sa.String(length=200), nullable=True))
    op.create_table(
        'contacts_apart',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('low_id', sa.Integer(), nullable=False),
        sa.Column('high_id', sa.Integer(), nullable=False),
        sa.Column('merge_id', sa.Integer(), nullable=True),
        sa.Column('keys', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
                  nullable=False),
        sa.Column('actor', sa.String(length=200), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_contacts_apart')),
        sa.UniqueConstraint('low_id', 'high_id', name=op.f('uq_contacts_apart_low_id_high_id')),
    )
    with op.batch_alter_table('contacts_apart') as batch_op:
        batch_op.create_index(batch_op.f('ix_contacts_apart_high_id'), ['high_id'], unique=False)


def downgrade() -> None:
    # Before shared values, a valid value belonged to one contact: each shared value stays with the
    # contact that got it first, so the old unique index can be built again.
    op.execute(sa.text(
        "DELETE FROM contact_identities WHERE valid AND shared IS NOT NULL AND id NOT IN ("
        "SELECT MIN(id) FROM contact_identities WHERE valid AND shared IS NOT NULL GROUP BY kind, value)"
        if op.get_bind().dialect.name == "postgresql" else
        "DELETE FROM contact_identities WHERE valid = 1 AND shared IS NOT NULL AND id NOT IN ("
        "SELECT MIN(id) FROM contact_identities WHERE valid = 1 AND shared IS NOT NULL GROUP BY kind, value)"))
    op.drop_table('contacts_apart')
    with op.batch_alter_table('contact_merges') as batch_op:
        batch_op.drop_column('undone_by')
        batch_op.drop_column('undone_at')
    with op.batch_alter_table('contact_identities') as batch_op:
        batch_op.drop_index('ix_contact_identities_shared_value', sqlite_where=sa.text('shared IS NOT NULL'),
                            postgresql_where=sa.text('shared IS NOT NULL'))
        batch_op.drop_index('uq_contact_identities_valid_value', sqlite_where=sa.text('valid = 1 AND shared IS NULL'),
                            postgresql_where=sa.text('valid AND shared IS NULL'))
        batch_op.create_index('uq_contact_identities_valid_value', ['kind', 'value'], unique=True,
                              sqlite_where=sa.text('valid = 1'), postgresql_where=sa.text('valid'))
        batch_op.drop_column('shared')
        batch_op.drop_column('label')
