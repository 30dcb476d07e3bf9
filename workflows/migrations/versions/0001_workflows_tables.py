"""workflows: definitions and their versions, runs, step results, promo codes, interactions, scheduler state

Revision ID: 0001
Revises:

The first revision of the workflows plugin's own chain. Databases made before
the plugin had migrations got these tables from the core's revision 0005,
rows and all: a table already there is adopted as it is, so only a missing
one is created (hub.migrations explains the move).
"""

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), 'postgresql')
TABLES = [
    'workflow_state', 'workflows', 'workflow_versions', 'workflow_runs', 'step_results', 'promo_codes',
    'interactions',
]


def upgrade() -> None:
    missing = set(TABLES) - set(sa.inspect(op.get_bind()).get_table_names())
    if 'workflow_state' in missing:
        op.create_table('workflow_state',
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('holder', sa.String(length=200), nullable=True),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('value', JSON, nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('name', name=op.f('pk_workflow_state'))
        )
    if 'workflows' in missing:
        op.create_table('workflows',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('title', sa.String(length=300), nullable=True),
        sa.Column('origin', sa.String(length=16), nullable=False),
        sa.Column('definition', JSON, nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('enabled', sa.Boolean(), nullable=False),
        sa.Column('enabled_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('state', JSON, nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_workflows')),
        sa.UniqueConstraint('name', name=op.f('uq_workflows_name'))
        )
    if 'workflow_versions' in missing:
        op.create_table('workflow_versions',
        sa.Column('workflow_id', sa.Integer(), nullable=False),
        sa.Column('version', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('definition', JSON, nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['workflow_id'], ['workflows.id'], name=op.f('fk_workflow_versions_workflow_id_workflows'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('workflow_id', 'version', name=op.f('pk_workflow_versions'))
        )
    if 'workflow_runs' in missing:
        op.create_table('workflow_runs',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('workflow_id', sa.Integer(), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=False),
        sa.Column('cycle', sa.Integer(), nullable=False),
        sa.Column('holdout', sa.Boolean(), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('step', sa.Integer(), nullable=False),
        sa.Column('next_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('trigger', sa.String(length=100), nullable=False),
        sa.Column('trigger_key', sa.String(length=200), nullable=True),
        sa.Column('context', JSON, nullable=False),
        sa.Column('lease_token', sa.String(length=64), nullable=True),
        sa.Column('lease_until', sa.DateTime(timezone=True), nullable=True),
        sa.Column('job_id', sa.String(length=64), nullable=True),
        sa.Column('enqueued_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_workflow_runs_contact_id_contacts'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['workflow_id'], ['workflows.id'], name=op.f('fk_workflow_runs_workflow_id_workflows'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_workflow_runs')),
        sa.UniqueConstraint('workflow_id', 'contact_id', 'cycle',
                            name=op.f('uq_workflow_runs_workflow_id_contact_id_cycle')),
        sa.UniqueConstraint('workflow_id', 'trigger_key', name=op.f('uq_workflow_runs_workflow_id_trigger_key')),
        sqlite_autoincrement=True
        )
        with op.batch_alter_table('workflow_runs', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_workflow_runs_contact_id'), ['contact_id'], unique=False)
            batch_op.create_index(batch_op.f('ix_workflow_runs_status_next_at'), ['status', 'next_at'], unique=False)
    if 'step_results' in missing:
        op.create_table('step_results',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('run_id', sa.Integer(), nullable=False),
        sa.Column('step', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('message_id', sa.Integer(), nullable=True),
        sa.Column('detail', sa.Text(), nullable=True),
        sa.Column('result', JSON, nullable=False),
        sa.Column('deferrals', sa.Integer(), server_default='0', nullable=False),
        sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['message_id'], ['messages.id'], name=op.f('fk_step_results_message_id_messages'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['run_id'], ['workflow_runs.id'], name=op.f('fk_step_results_run_id_workflow_runs'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_step_results')),
        sa.UniqueConstraint('run_id', 'step', name=op.f('uq_step_results_run_id_step'))
        )
        with op.batch_alter_table('step_results', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_step_results_message_id'), ['message_id'], unique=False)
    if 'promo_codes' in missing:
        op.create_table('promo_codes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('code', sa.String(length=32), nullable=False),
        sa.Column('prefix', sa.String(length=16), nullable=True),
        sa.Column('discount', sa.Numeric(precision=5, scale=2), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=True),
        sa.Column('workflow_id', sa.Integer(), nullable=True),
        sa.Column('run_id', sa.Integer(), nullable=True),
        sa.Column('step', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('redeemed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('order_id', sa.Integer(), nullable=True),
        sa.Column('redeemed_by', sa.String(length=100), nullable=True),
        sa.Column('crm_field', sa.String(length=100), nullable=True),
        sa.Column('written_back_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('writeback_error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_promo_codes_contact_id_contacts'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_promo_codes_order_id_orders'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['run_id'], ['workflow_runs.id'], name=op.f('fk_promo_codes_run_id_workflow_runs'),
                                ondelete='SET NULL'),
        sa.ForeignKeyConstraint(['workflow_id'], ['workflows.id'], name=op.f('fk_promo_codes_workflow_id_workflows'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_promo_codes')),
        sa.UniqueConstraint('code', name=op.f('uq_promo_codes_code')),
        sa.UniqueConstraint('run_id', 'step', name=op.f('uq_promo_codes_run_id_step'))
        )
        with op.batch_alter_table('promo_codes', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_promo_codes_contact_id'), ['contact_id'], unique=False)
            batch_op.create_index(batch_op.f('ix_promo_codes_expires_at'), ['expires_at'], unique=False)
    if 'interactions' in missing:
        op.create_table('interactions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('value', sa.Integer(), nullable=True),
        sa.Column('comment', sa.Text(), nullable=True),
        sa.Column('run_id', sa.Integer(), nullable=True),
        sa.Column('source', sa.String(length=100), nullable=False),
        sa.Column('meta', JSON, nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_interactions_contact_id_contacts'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['run_id'], ['workflow_runs.id'], name=op.f('fk_interactions_run_id_workflow_runs'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_interactions')),
        sa.UniqueConstraint('run_id', 'kind', name=op.f('uq_interactions_run_id_kind'))
        )
        with op.batch_alter_table('interactions', schema=None) as batch_op:
            batch_op.create_index(batch_op.f('ix_interactions_contact_id'), ['contact_id'], unique=False)


def downgrade() -> None:
    op.drop_table('interactions')
    op.drop_table('promo_codes')
    op.drop_table('step_results')
    op.drop_table('workflow_runs')
    op.drop_table('workflow_versions')
    op.drop_table('workflows')
    op.drop_table('workflow_state')
