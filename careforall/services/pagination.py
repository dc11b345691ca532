"""Keyset pages over id-ordered rows, newest (or oldest) first, with opaque cursors."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Select, and_, or_
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from careforall.domain.errors import BadUserInput

T = TypeVar("T")
M = TypeVar("M", bound=Any)
MAX_PAGE = 100


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    cursors: Sequence[str]
    has_next_page: bool

    @property
    def end_cursor(self) -> str | None:
        return self.cursors[-1] if self.cursors else None


def encode_cursor(row_id: str) -> str:
    return base64.urlsafe_b64encode(f"v1:{row_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    if not raw.startswith("v1:") or len(raw) > 100:
        raise BadUserInput("'after' is not a cursor from this list; start again.")
    return raw[3:]


def int_cursor(after: str | None) -> int | None:
    """The integer id a cursor of a list by integer ids stands for."""
    raw = decode_cursor(after)
    if raw is None:
        return None
    row_id = parse_row_id(raw)
    if row_id is None:
        raise BadUserInput("'after' is not a cursor from this list; start again.")
    return row_id


def parse_row_id(raw: str) -> int | None:
    """An integer id as the API shows it; None for anything the database's
    64-bit ids cannot hold (a larger number overflowed into a 5xx)."""
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if -(2**63) <= value < 2**63 else None


def check_first(first: int) -> int:
    if not 1 <= first <= MAX_PAGE:
        raise BadUserInput(f"'first' must be from 1 to {MAX_PAGE}.")
    return first


def newest_first(
    session: Session, query: SelectOfScalar[M], *, first: int, after: str | None
) -> Page[M]:
    """One page of `query`'s rows by descending string id (ids sort by creation)."""
    first = check_first(first)
    after_id = decode_cursor(after)
    entity = query.column_descriptions[0]["entity"]
    id_column = col(entity.id)
    if after_id is not None:
        query = query.where(id_column < after_id)
    rows = session.exec(query.order_by(id_column.desc()).limit(first + 1)).all()
    return make_page(rows, first, [r.id for r in rows])


def oldest_first(
    session: Session, query: SelectOfScalar[M], *, first: int, after: str | None
) -> Page[M]:
    """One page of `query`'s rows by ascending string id: a queue, served in
    the order it filled."""
    first = check_first(first)
    after_id = decode_cursor(after)
    id_column = col(query.column_descriptions[0]["entity"].id)
    if after_id is not None:
        query = query.where(id_column > after_id)
    rows = session.exec(query.order_by(id_column.asc()).limit(first + 1)).all()
    return make_page(rows, first, [r.id for r in rows])


def newest_by_int_id(
    session: Session, query: SelectOfScalar[M], *, first: int, after: str | None
) -> Page[M]:
    """One page of `query`'s rows by descending integer id (logs, mails)."""
    first = check_first(first)
    after_id = int_cursor(after)
    id_column = col(query.column_descriptions[0]["entity"].id)
    if after_id is not None:
        query = query.where(id_column < after_id)
    rows = session.exec(query.order_by(id_column.desc()).limit(first + 1)).all()
    return make_page(rows, first, [str(r.id) for r in rows])


def make_page(rows: Sequence[T], first: int, ids: Sequence[str]) -> Page[T]:
    """`rows` was fetched with limit first + 1: the extra row means more follow."""
    has_next = len(rows) > first
    return Page(
        items=rows[:first],
        cursors=[encode_cursor(i) for i in ids[:first]],
        has_next_page=has_next,
    )


def encode_keyed_cursor(kind: str, key: int | float, row_id: str) -> str:
    raw = f"v2:{kind}:{key!r}:{row_id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_keyed_cursor(
    cursor: str | None, kind: str, key_type: type[int] | type[float]
) -> tuple[int | float, str] | None:
    """The (sort key, id) after which a page of a list ordered by `kind`
    starts; a cursor of another order, or none of ours, is refused."""
    if cursor is None:
        return None
    wrong = BadUserInput(
        "'after' is not a cursor from this list in this order; start again."
    )
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise wrong from None
    parts = raw.split(":")
    if len(raw) > 200 or len(parts) != 4 or parts[:2] != ["v2", kind]:
        raise wrong
    try:
        key = key_type(parts[2])
    except ValueError:
        raise wrong from None
    if key != key or abs(key) > 2**62:  # NaN, infinities, overflow
        raise wrong
    return key, parts[3]


def keyed_page(
    session: Session,
    query: Select[Any],
    *,
    key: ColumnElement[Any],
    kind: str,
    key_type: type[int] | type[float],
    first: int,
    after: str | None,
) -> Page[Any]:
    """One page of `query`'s entity by descending `key`, ties by descending
    id: the cursor holds both. The ordering reads ids and keys only; the page's
    rows are loaded after (sorting thousands of whole rows, stories included,
    cost most of a search that matches them)."""
    first = check_first(first)
    start = decode_keyed_cursor(after, kind, key_type)
    entity = query.column_descriptions[0]["entity"]
    id_column = col(entity.id)
    if start is not None:
        after_key, after_id = start
        query = query.where(
            or_(key < after_key, and_(key == after_key, id_column < after_id))
        )
    ordered = (
        query.with_only_columns(id_column, key)
        .order_by(key.desc(), id_column.desc())
        .limit(first + 1)
    )
    keys = session.execute(ordered).all()
    has_next = len(keys) > first
    keys = keys[:first]
    wanted = [row[0] for row in keys]
    loaded = session.exec(select(entity).where(id_column.in_(wanted)))
    by_id = {row.id: row for row in loaded}
    return Page(
        items=[by_id[row_id] for row_id in wanted],
        cursors=[encode_keyed_cursor(kind, k, row_id) for row_id, k in keys],
        has_next_page=has_next,
    )
