"""orders and activities: the indexes of mostly empty columns hold only the rows that have a value

- ix_orders_promo_code, ix_orders_company_id, ix_activities_company_id and
  ix_activities_source_order_external_id become partial (WHERE the column IS NOT NULL). Most deals
  carry no promo code and no company, and most calls are logged on no deal and no company, yet
  every row paid an entry in each index: a first sync of a large portal writes hundreds of
  thousands of them. Every lookup compares the column with a value, which no NULL matches, so
  SQLite and PostgreSQL both use the partial indexes for it, and for the ON DELETE SET NULL of the
  company foreign keys too.

Revision ID: 0020
Revises: 0019
"""

from alembic import op
import sqlalchemy as sa

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

# (index, table, columns, the column that must have a value)
PARTIAL = [
    ('ix_orders_promo_code', 'orders', ['promo_code'], 'promo_code'),
    ('ix_orders_company_id', 'orders', ['company_id'], 'company_id'),
    ('ix_activities_company_id', 'activities', ['company_id'], 'company_id'),
    ('ix_activities_source_order_external_id', 'activities', ['source', 'order_external_id'], 'order_external_id'),
]


def upgrade() -> None:
    for name, table, columns, column in PARTIAL:
        op.drop_index(name, table_name=table)
        where = sa.text(f'{column} IS NOT NULL')
        op.create_index(name, table, columns, sqlite_where=where, postgresql_where=where)


def downgrade() -> None:
    for name, table, columns, _column in PARTIAL:
        op.drop_index(name, table_name=table)
        op.create_index(name, table, columns)
