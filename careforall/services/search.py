"""Full-text matching of campaigns' titles and stories, in each database's own way.

SQLite reads the FTS5 table `campaign_search` (migration 0013 fills it and
its triggers keep it in step with `campaigns`); PostgreSQL matches the
generated column `campaigns.search_vector` (GIN index `ix_campaigns_search`).
Either way the query is built from plain words (`domain.search.search_words`),
each quoted, so nothing a user types is read as the databases' query syntax.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Double,
    Subquery,
    cast,
    column,
    func,
    literal_column,
    select,
    table,
)
from sqlmodel import Session, col

from careforall.models import Campaign

# The FTS5 table as a Core table: the table-named column is FTS5's way of
# matching against every indexed column at once.
_FTS = table("campaign_search", column("campaign_id"), column("campaign_search"))
# Weights of bm25 per column: campaign_id (never searched), title, description.
# A word in the title says more about a campaign than one in its story.
_BM25_WEIGHTS = (0.0, 4.0, 1.0)


# PostgreSQL's generated column: not in the model (the ORM never reads it).
_VECTOR: ColumnElement[Any] = literal_column("campaigns.search_vector")


def fts5_query(words: Sequence[str]) -> str:
    """`{title description} : ("w1" "w2"*)`: every word, the last as a prefix,
    in the title or the story (not the indexed id); quotes make each a plain
    string whatever it holds (words have no quotes of their own)."""
    quoted = [f'"{w}"' for w in words]
    return "{title description} : (" + " ".join(quoted) + "*)"


def tsquery(words: Sequence[str]) -> str:
    """`'w1' & 'w2':*`, the same meaning in PostgreSQL's syntax."""
    quoted = [f"'{w}'" for w in words]
    return " & ".join(quoted) + ":*"


def matches(session: Session, words: Sequence[str]) -> Subquery:
    """The campaigns matching every word: (campaign_id, relevance), where a
    higher relevance is a better match."""
    if session.get_bind().dialect.name == "sqlite":
        rank = func.bm25(_FTS.c.campaign_search, *_BM25_WEIGHTS)
        fts = select(
            _FTS.c.campaign_id.label("campaign_id"), (-rank).label("relevance")
        ).where(_FTS.c.campaign_search.op("MATCH")(fts5_query(words)))
        return fts.subquery("matched")
    query = func.to_tsquery(literal_column("'simple'::regconfig"), tsquery(words))
    document = _VECTOR
    pg = select(
        col(Campaign.id).label("campaign_id"),
        # ts_rank is a real; as a double its text is exact, so the value a
        # cursor keeps compares equal to the one computed again.
        cast(func.ts_rank(document, query), Double).label("relevance"),
    ).where(document.op("@@")(query))
    return pg.subquery("matched")
