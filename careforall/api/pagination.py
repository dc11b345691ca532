"""Relay-style connections over service pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import strawberry

from careforall.services.pagination import Page

DEFAULT_PAGE = 20


def page_size(first: int | None) -> int:
    """The contract's `first: Int = 20`; an explicit null means the default too."""
    return DEFAULT_PAGE if first is None else first


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


T = TypeVar("T")
M = TypeVar("M")


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type
class Connection(Generic[T]):
    """`Connection[X]` is published as `XConnection` (and `XEdge`)."""

    edges: list[Edge[T]]
    page_info: PageInfo


def connection(page: Page[M], node: Callable[[M], T]) -> Connection[T]:
    return Connection(
        edges=[
            Edge(cursor=c, node=node(row))
            for row, c in zip(page.items, page.cursors, strict=True)
        ],
        page_info=PageInfo(
            has_next_page=page.has_next_page, end_cursor=page.end_cursor
        ),
    )
