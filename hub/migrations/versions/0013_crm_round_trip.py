"""the CRM round trip: companies and who works there, activities managers log, custom fields with their
types, where an open deal stands, and what Hub last wrote to each CRM record

Revision ID: 0013
Revises: 0012
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')
UTC = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'companies',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(length=100), nullable=False),
        sa.Column('external_id', sa.String(length=200), nullable=False),
        sa.Column('name', sa.String(length=300), nullable=True),
        sa.Column('inn', sa.String(length=12), nullable=True),
        sa.Column('city', sa.String(length=200), nullable=True),
        sa.Column('phones', JSON, nullable=False),
        sa.Column('emails', JSON, nullable=False),
        sa.Column('responsible_id', sa.String(length=64), nullable=True),
        sa.Column('attributes', JSON, nullable=False),
        sa.Column('orders_count', sa.Integer(), server_default='0', nullable=False),
        sa.Column('revenue', sa.Numeric(precision=14, scale=2), server_default='0', nullable=False),
        sa.Column('created_at', UTC, nullable=False),
        sa.Column('updated_at', UTC, nullable=False),
        sa.Column('deleted_at', UTC, nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_companies')),
        sa.UniqueConstraint('source', 'external_id', name=op.f('uq_companies_source_external_id')),
    )
    op.create_index(op.f('ix_companies_inn'), 'companies', ['inn'])
    op.create_table(
        'company_values',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('company_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('value', sa.String(length=320), nullable=False),
        sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_company_values_company_id_companies'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_company_values')),
        sa.UniqueConstraint('company_id', 'kind', 'value', name=op.f('uq_company_values_company_id_kind_value')),
    )
    op.create_index(op.f('ix_company_values_kind_value'), 'company_values', ['kind', 'value'])
    op.create_table(
        'company_memberships',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(length=100), nullable=False),
        sa.Column('contact_external_id', sa.String(length=200), nullable=False),
        sa.Column('company_external_id', sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_company_memberships')),
        sa.UniqueConstraint('source', 'contact_external_id', 'company_external_id',
                            name='uq_company_memberships_link'),
    )
    op.create_index(op.f('ix_company_memberships_source_company_external_id'), 'company_memberships',
                    ['source', 'company_external_id'])
    op.create_table(
        'contact_companies',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=False),
        sa.Column('company_id', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(length=100), nullable=False),
        sa.Column('created_at', UTC, nullable=False),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_contact_companies_contact_id_contacts'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['company_id'], ['companies.id'],
                                name=op.f('fk_contact_companies_company_id_companies'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_companies')),
        sa.UniqueConstraint('contact_id', 'company_id', name=op.f('uq_contact_companies_contact_id_company_id')),
    )
    op.create_index(op.f('ix_contact_companies_company_id'), 'contact_companies', ['company_id'])
    op.create_table(
        'activities',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(length=100), nullable=False),
        sa.Column('external_id', sa.String(length=200), nullable=False),
        sa.Column('contact_external_id', sa.String(length=200), nullable=True),
        sa.Column('contact_id', sa.Integer(), nullable=True),
        sa.Column('company_external_id', sa.String(length=200), nullable=True),
        sa.Column('company_id', sa.Integer(), nullable=True),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('direction', sa.String(length=8), nullable=True),
        sa.Column('missed', sa.Boolean(), server_default=sa.text('false'), nullable=False),
        sa.Column('done', sa.Boolean(), server_default=sa.text('true'), nullable=False),
        sa.Column('at', UTC, nullable=False),
        sa.Column('duration_s', sa.Integer(), nullable=True),
        sa.Column('subject', sa.String(length=300), nullable=True),
        sa.Column('responsible_id', sa.String(length=64), nullable=True),
        sa.Column('created_at', UTC, nullable=False),
        sa.Column('deleted_at', UTC, nullable=True),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_activities_contact_id_contacts'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['company_id'], ['companies.id'], name=op.f('fk_activities_company_id_companies'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_activities')),
        sa.UniqueConstraint('source', 'external_id', name=op.f('uq_activities_source_external_id')),
    )
    op.create_index(op.f('ix_activities_contact_id_kind_at'), 'activities', ['contact_id', 'kind', 'at'])
    op.create_index(op.f('ix_activities_kind_at'), 'activities', ['kind', 'at'])
    op.create_index(op.f('ix_activities_source_contact_external_id'), 'activities',
                    ['source', 'contact_external_id'])
    op.create_index(op.f('ix_activities_company_id'), 'activities', ['company_id'])
    op.create_table(
        'custom_fields',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('source', sa.String(length=100), nullable=False),
        sa.Column('entity', sa.String(length=16), nullable=False),
        sa.Column('code', sa.String(length=100), nullable=False),
        sa.Column('name', sa.String(length=300), nullable=False),
        sa.Column('type', sa.String(length=16), nullable=False),
        sa.Column('multiple', sa.Boolean(), nullable=False),
        sa.Column('options', JSON, nullable=False),
        sa.Column('updated_at', UTC, nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_custom_fields')),
        sa.UniqueConstraint('source', 'entity', 'code', name=op.f('uq_custom_fields_source_entity_code')),
    )
    with op.batch_alter_table('orders') as batch_op:
        batch_op.add_column(sa.Column('company_external_id', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('company_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('pipeline', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('stage', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('stage_entered_at', UTC, nullable=True))
        batch_op.add_column(sa.Column('responsible_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('attributes', JSON, server_default='{}', nullable=False))
        batch_op.create_foreign_key(op.f('fk_orders_company_id_companies'), 'companies', ['company_id'], ['id'],
                                    ondelete='SET NULL')
        batch_op.create_index(op.f('ix_orders_company_id'), ['company_id'])
        batch_op.create_index(op.f('ix_orders_status_stage_entered_at'), ['status', 'stage_entered_at'])
    with op.batch_alter_table('external_refs') as batch_op:
        batch_op.add_column(sa.Column('responsible_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('pushed', JSON, server_default='{}', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('external_refs') as batch_op:
        batch_op.drop_column('pushed')
        batch_op.drop_column('responsible_id')
    with op.batch_alter_table('orders') as batch_op:
        batch_op.drop_index(op.f('ix_orders_status_stage_entered_at'))
        batch_op.drop_index(op.f('ix_orders_company_id'))
        batch_op.drop_constraint(op.f('fk_orders_company_id_companies'), type_='foreignkey')
        for column in ('attributes', 'responsible_id', 'stage_entered_at', 'stage', 'pipeline', 'company_id',
                       'company_external_id'):
            batch_op.drop_column(column)
    op.drop_table('custom_fields')
    op.drop_table('activities')
    op.drop_table('contact_companies')
    op.drop_table('company_values')
    op.drop_table('company_memberships')
    op.drop_table('companies')
