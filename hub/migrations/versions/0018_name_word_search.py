"""the admin's search by name on PostgreSQL: the beginnings of a name's words in one GIN index

- hub_name_prefixes(text): every beginning (2 to 32 letters) of every word of a name, words split at
  spaces and hyphens. IMMUTABLE, so an index can hold it.
- ix_contacts_name_prefixes: a GIN index on hub_name_prefixes of the folded whole name
  (hub.models.NAME_PREFIXES). Each typed word must begin a word of the surname, first name or
  patronymic; "Морозов Андрей Андреевич" is one index condition, three keys whose posting lists GIN
  intersects. The trigram index it replaces (ix_contacts_full_name_trgm, 0015) made the same search
  out of a dozen trigrams each in hundreds of thousands of names: 66 ms of index scan at five million
  contacts, against 10 ms here (bench/README.md).
- ix_contacts_full_name_trgm is dropped: nothing reads a name by any piece but a word's beginning now.

Plain CREATE INDEX, like 0014 and 0015: it holds writes to contacts while it builds (see
bench/README.md for the time at five million contacts). SQLite keeps its plain scans.

Revision ID: 0018
Revises: 0017
"""

from alembic import op

revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

# The same expression as hub.models.FOLDED_FULL_NAME renders: the planner uses the index only for it.
FOLDED_FULL_NAME = "textcat(textcat(coalesce(name_key, ''), ' '), replace(lower(coalesce(middle_name, '')), 'ё', 'е'))"

# GIN drops repeated keys itself, so the beginnings need no DISTINCT (a sort per name). 32 is
# hub.models.NAME_PREFIX_MAX, written out: a migration keeps the schema it made.
PREFIXES = """
CREATE OR REPLACE FUNCTION hub_name_prefixes(name text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(left(word, n)), '{}')
    FROM unnest(string_to_array(translate(name, '-', ' '), ' ')) AS word,
         generate_series(2, least(length(word), 32)) AS n
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(PREFIXES)
        op.execute(f'CREATE INDEX ix_contacts_name_prefixes ON contacts USING gin (hub_name_prefixes({FOLDED_FULL_NAME}))')
        op.execute('DROP INDEX IF EXISTS ix_contacts_full_name_trgm')
        # The index's expression has no statistics until contacts are analyzed, and nothing here changes a
        # row that would set autovacuum off: without them "Иванов" is planned as 25,000 names, not 400,000.
        op.execute('ANALYZE contacts')


def downgrade() -> None:
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(f'CREATE INDEX ix_contacts_full_name_trgm ON contacts USING gin (({FOLDED_FULL_NAME}) gin_trgm_ops)')
        op.execute('DROP INDEX ix_contacts_name_prefixes')
        op.execute('DROP FUNCTION hub_name_prefixes(text)')
