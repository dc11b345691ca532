"""search and discovery: a full-text index over campaigns' titles and stories,
a category index, and captures by time for the trending sort

SQLite: an FTS5 table `campaign_search` holding its own copy of each
campaign's id, title and description, kept in step by triggers; filled here
from the campaigns already there. (Not an external-content table over
`campaigns`: that would key on the rowid of a table whose primary key is
text, which VACUUM may renumber.) The id is indexed too, so a trigger finds
a campaign's row through the index (an unindexed id meant reading the whole
table on every edit: 20 ms on 10,000 campaigns); searches match the title
and description columns only.
PostgreSQL: a stored generated tsvector column `search_vector` (the title
weighted above the story) with a GIN index; the database keeps it in step.
Stored rather than an expression index because ranking reads each matching
row's vector, and computing it again per row cost a second on 10,000
campaigns.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 13:05:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The index row of the campaign a trigger saw (ids hold letters, digits and
# "_" only, so quoting them as an FTS5 phrase is safe).
_ROW_OF_OLD = (
    "SELECT rowid FROM campaign_search WHERE campaign_search MATCH "
    "'campaign_id : \"' || old.id || '\"'"
)
SQLITE_UP = [
    "CREATE VIRTUAL TABLE campaign_search USING fts5("
    "campaign_id, title, description, "
    "tokenize = 'unicode61 remove_diacritics 2')",
    "CREATE TRIGGER campaign_search_insert AFTER INSERT ON campaigns BEGIN "
    "INSERT INTO campaign_search (campaign_id, title, description) "
    "VALUES (new.id, new.title, new.description); END",
    "CREATE TRIGGER campaign_search_update AFTER UPDATE OF title, description "
    "ON campaigns BEGIN "
    f"DELETE FROM campaign_search WHERE rowid IN ({_ROW_OF_OLD}); "
    "INSERT INTO campaign_search (campaign_id, title, description) "
    "VALUES (new.id, new.title, new.description); END",
    "CREATE TRIGGER campaign_search_delete AFTER DELETE ON campaigns BEGIN "
    f"DELETE FROM campaign_search WHERE rowid IN ({_ROW_OF_OLD}); END",
    "INSERT INTO campaign_search (campaign_id, title, description) "
    "SELECT id, title, description FROM campaigns",
]
SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS campaign_search_delete",
    "DROP TRIGGER IF EXISTS campaign_search_update",
    "DROP TRIGGER IF EXISTS campaign_search_insert",
    "DROP TABLE IF EXISTS campaign_search",
]
POSTGRES_UP = [
    "ALTER TABLE campaigns ADD COLUMN search_vector tsvector GENERATED ALWAYS AS ("
    "setweight(to_tsvector('simple'::regconfig, title), 'A') || "
    "setweight(to_tsvector('simple'::regconfig, description), 'B')) STORED",
    "CREATE INDEX ix_campaigns_search ON campaigns USING gin (search_vector)",
]
POSTGRES_DOWN = [
    "DROP INDEX IF EXISTS ix_campaigns_search",
    "ALTER TABLE campaigns DROP COLUMN IF EXISTS search_vector",
]


def upgrade() -> None:
    op.create_index("ix_campaigns_category", "campaigns", ["category", "id"])
    op.create_index(
        "ix_pledge_transitions_to_status_at", "pledge_transitions", ["to_status", "at"]
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE_UP if sqlite else POSTGRES_UP:
        op.execute(statement)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for statement in SQLITE_DOWN if sqlite else POSTGRES_DOWN:
        op.execute(statement)
    op.drop_index("ix_pledge_transitions_to_status_at", "pledge_transitions")
    op.drop_index("ix_campaigns_category", "campaigns")
