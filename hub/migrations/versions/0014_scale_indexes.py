"""indexes for a base of millions: open deals by how long they stand in a stage; fragment search on PostgreSQL

- ix_orders_open_stage: the open deals alone (a tenth of the orders), by when they entered their stage,
  with the contact: "a deal stuck for 14 days" reads this small index instead of every order, and the
  planner knows how many open deals there are instead of multiplying two guesses.
- On PostgreSQL only, for segments over millions: ix_consent_events_answers (the answers of one channel
  and purpose by status, so "whose latest answer is granted" reads the granted answers and the few
  withdrawals as two index ranges) and ix_contacts_live_last_order (live contacts by their last order,
  with the order count and the id: dormant_90d's contacts from the index alone).
- On PostgreSQL only, pg_trgm GIN indexes for the admin's contact search: a piece of a phone number,
  an email or a name (LIKE '%…%') that no b-tree can serve. SQLite keeps its plain scans.

Plain CREATE INDEX (not CONCURRENTLY): it holds writes to the table while it builds; see
bench/README.md ("## scale_postgres.py") for how long that is on five million contacts.

Revision ID: 0014
Revises: 0013
"""

from alembic import op
import sqlalchemy as sa

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

# (name, table, column, WHERE or None): GIN trigram indexes, PostgreSQL only.
TRIGRAM = [
    ('ix_contact_identities_value_trgm', 'contact_identities', 'value', None),
    ('ix_contact_identities_raw_trgm', 'contact_identities', 'raw', "kind = 'phone'"),
    ('ix_contacts_name_key_trgm', 'contacts', 'name_key', None),
    ('ix_contacts_middle_name_trgm', 'contacts', 'middle_name', None),
]


def upgrade() -> None:
    op.create_index('ix_orders_open_stage', 'orders', ['stage_entered_at', 'contact_id'],
                    sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))
    if op.get_bind().dialect.name == 'postgresql':
        op.create_index('ix_consent_events_answers', 'consent_events',
                        ['channel', 'purpose', 'status', 'contact_id', 'at', 'id'])
        op.create_index('ix_contacts_live_last_order', 'contacts', ['last_order_at'],
                        postgresql_include=['orders_count', 'id'], postgresql_where=sa.text('deleted_at IS NULL'))
        # Trusted since PostgreSQL 13: the database's owner may create it without being a superuser.
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
        for name, table, column, where in TRIGRAM:
            op.create_index(name, table, [column], postgresql_using='gin', postgresql_ops={column: 'gin_trgm_ops'},
                            postgresql_where=sa.text(where) if where else None)


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        for name, table, _column, _where in TRIGRAM:
            op.drop_index(name, table_name=table)  # the extension stays: something else may use it
        op.drop_index('ix_contacts_live_last_order', table_name='contacts')
        op.drop_index('ix_consent_events_answers', table_name='consent_events')
    op.drop_index('ix_orders_open_stage', table_name='orders')
