"""the marketer's desk: template versions, segment sizes by day, notes on contacts, messages by origin

`messages.origin` is the workflow (or campaign) that wrote a message, copied
from its meta so the message log and the daily reports can filter on a column.

Revision ID: 0011
Revises: 0010
"""

from alembic import op
import sqlalchemy as sa

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'message_template_versions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('subject', sa.Text(), nullable=True),
        sa.Column('body_text', sa.Text(), nullable=False),
        sa.Column('body_html', sa.Text(), nullable=True),
        sa.Column('saved_by', sa.String(length=200), nullable=False),
        sa.Column('saved_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_message_template_versions')),
        sa.UniqueConstraint('name', 'version', name=op.f('uq_message_template_versions_name_version')),
    )
    op.create_table(
        'segment_sizes',
        sa.Column('segment_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('members', sa.Integer(), nullable=False),
        sa.Column('measured_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['segment_id'], ['segments.id'], name=op.f('fk_segment_sizes_segment_id_segments'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('segment_id', 'day', name=op.f('pk_segment_sizes')),
    )
    op.create_table(
        'contact_notes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('contact_id', sa.Integer(), nullable=False),
        sa.Column('author', sa.String(length=200), nullable=False),
        sa.Column('body', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_contact_notes_contact_id_contacts'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_contact_notes')),
    )
    with op.batch_alter_table('contact_notes') as batch_op:
        batch_op.create_index(batch_op.f('ix_contact_notes_contact_id'), ['contact_id'], unique=False)
    with op.batch_alter_table('messages') as batch_op:
        batch_op.add_column(sa.Column('origin', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_messages_origin'), ['origin'], unique=False)
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("UPDATE messages SET origin = meta->>'workflow' WHERE meta ? 'workflow'")
    else:
        op.execute("UPDATE messages SET origin = json_extract(meta, '$.workflow') "
                   "WHERE json_extract(meta, '$.workflow') IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table('messages') as batch_op:
        batch_op.drop_index(batch_op.f('ix_messages_origin'))
        batch_op.drop_column('origin')
    op.drop_table('contact_notes')
    op.drop_table('segment_sizes')
    op.drop_table('message_template_versions')
