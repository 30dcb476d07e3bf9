"""the admin's search by full name on PostgreSQL: one pg_trgm index on the folded whole name

- On PostgreSQL only, ix_contacts_full_name_trgm: a GIN trigram index on "фамилия имя отчество" as the
  search reads it (name_key, a space, the patronymic lowercased with ё→е; hub.models.FOLDED_FULL_NAME).
  Every word of "Иванов Иван Петрович" is then a condition on one indexed expression, and GIN intersects
  their trigrams in one scan. Before, each word
  was "in name_key or in middle_name": a bitmap per word and column, and a patronymic matched with "_" for
  each е/ё, whose trigrams were so few that "Алексей" read 600,000 patronymics (bench/README.md, the
  checks' search). SQLite keeps its plain scans.

Plain CREATE INDEX (not CONCURRENTLY), like 0014: it holds writes to contacts while it builds (6.7 s
at a million contacts, 28.5 s at five million; see bench/README.md).

Revision ID: 0015
Revises: 0014
"""

from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

# The same expression as hub.models.FOLDED_FULL_NAME renders: the planner uses the index only for it.
FOLDED_FULL_NAME = "textcat(textcat(coalesce(name_key, ''), ' '), replace(lower(coalesce(middle_name, '')), 'ё', 'е'))"


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')  # 0014 made it; a base restored without it too
        op.execute(f'CREATE INDEX ix_contacts_full_name_trgm ON contacts USING gin (({FOLDED_FULL_NAME}) gin_trgm_ops)')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('DROP INDEX ix_contacts_full_name_trgm')
