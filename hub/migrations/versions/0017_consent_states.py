"""the current consent answer per contact, channel and purpose, kept beside the ledger

- consent_states: one row per (contact, channel, purpose) with the status of the ledger's latest event
  (by the date the answer was given, then by recording order), the event's id and date. Derived from
  consent_events and written with it by hub.consent; the ledger stays the evidence and stays
  append-only. A segment's "consent is granted" becomes one range of
  ix_consent_states_channel_purpose_status_contact_id instead of an anti-join of every answer against
  the later ones (dormant_90d at five million contacts: 1.85 s → 1.2 s; bench/README.md).
- Filled from the ledger in one statement: 63 s in all for 7.1 million answers at five million
  contacts on PostgreSQL (bench/README.md, scale_postgres.py). Autovacuum's next pass (set off by the
  inserts) sets the visibility map that lets segments read the index alone.

Revision ID: 0017
Revises: 0016
"""

from alembic import op
import sqlalchemy as sa

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

# The latest answer per key, as hub.consent.current decides it; written for both SQLite and PostgreSQL.
FILL = """
INSERT INTO consent_states (contact_id, channel, purpose, status, event_id, at)
SELECT contact_id, channel, purpose, status, id, at FROM (
    SELECT contact_id, channel, purpose, status, id, at,
           row_number() OVER (PARTITION BY contact_id, channel, purpose ORDER BY at DESC, id DESC) AS rank
    FROM consent_events) AS ranked
WHERE rank = 1
"""


def upgrade() -> None:
    op.create_table(
        'consent_states',
        sa.Column('contact_id', sa.Integer(), nullable=False),
        sa.Column('channel', sa.String(length=32), nullable=False),
        sa.Column('purpose', sa.String(length=64), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('event_id', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['contact_id'], ['contacts.id'], name=op.f('fk_consent_states_contact_id_contacts'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('contact_id', 'channel', 'purpose', name=op.f('pk_consent_states')),
    )
    op.execute(FILL)
    op.create_index(op.f('ix_consent_states_channel_purpose_status_contact_id'), 'consent_states',
                    ['channel', 'purpose', 'status', 'contact_id'])
    if op.get_bind().dialect.name == 'postgresql':
        # The planner's statistics at once: until autovacuum comes by, it would take the table for an empty one.
        op.execute('ANALYZE consent_states')


def downgrade() -> None:
    op.drop_index(op.f('ix_consent_states_channel_purpose_status_contact_id'), table_name='consent_states')
    op.drop_table('consent_states')
