"""Answers to public queries, kept until the data may have changed.

A busy campaign page asks the same few questions thousands of times a second
(its totals, the campaign, the list), and every caller gets the same answer:
the public root fields below, and every field under them, never read who is
asking (tests/api/test_response_cache.py lists those fields, so a new one is
reviewed for this). Executing each request again cost most of it; the
answer's bytes are kept instead, keyed by the exact request body.

What may be kept: a POST with a JSON body whose operation is a query asking
only for the public root fields, and whose answer is a 200 without errors.
An answer is served only while the database's data version is the one read
before it was made (any commit in this process, or a notification from
another one, moves it) and for at most `max_age` seconds, which bounds what
no notification announces: a campaign's deadline passing, a write by a
command-line tool.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    OperationType,
    get_operation_ast,
)

from careforall.api.caching import KNOWN

# Root fields whose answer depends on the data alone, never on the caller.
PUBLIC_ROOT_FIELDS = frozenset(
    {"version", "campaign", "campaigns", "campaignTotals", "categories"}
)
DEFAULT_MAX_ENTRIES = 1024
# Larger requests and answers are rare and cheap to make again relative to
# their size; and a request padded with unused variables cannot fill memory.
MAX_REQUEST_BYTES = 4 * 1024
MAX_BODY_BYTES = 64 * 1024
# What all kept requests and answers may hold together.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class PublicQuery:
    """A request body that asks a public query: what its metrics call it."""

    operation_name: str | None


@dataclass(frozen=True)
class CachedAnswer:
    body: bytes
    query: PublicQuery
    data_version: int
    expires: float


def public_query(body: bytes, *, max_tokens: int | None) -> PublicQuery | None:
    """The body's operation when it is a public query, else None."""
    try:
        request = json.loads(body)
    except ValueError:
        return None
    if not isinstance(request, dict):
        return None
    query, name = request.get("query"), request.get("operationName")
    if not isinstance(query, str) or not (name is None or isinstance(name, str)):
        return None
    try:
        known = KNOWN.get(query, max_tokens)
    except GraphQLError:
        return None
    # The verdict depends on the document and the name alone: worked out once.
    return known.remember(("public", name), lambda: _public(known.document, name))


def _public(document: DocumentNode, name: str | None) -> PublicQuery | None:
    operation = get_operation_ast(document, name)
    if operation is None or operation.operation is not OperationType.QUERY:
        return None
    for selection in operation.selection_set.selections:
        # Fragments at the root are not worth following: not kept.
        if not isinstance(selection, FieldNode):
            return None
        if selection.name.value not in PUBLIC_ROOT_FIELDS:
            return None
    # Named as Strawberry names it: by the document when the body does not.
    return PublicQuery(operation_name=operation.name.value if operation.name else None)


class ResponseCache:
    """A bounded LRU of answers (thread-safe)."""

    def __init__(
        self,
        *,
        max_age: float,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_age = max_age
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self._entries: OrderedDict[bytes, CachedAnswer] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def may_keep(self, key: bytes) -> bool:
        """Whether an answer to this request could be kept at all.

        A body that says "mutation" anywhere is passed by at once: the writes
        (createPledge above all) skip the lookup and the parse that would
        only find out so. A query that merely mentions the word is not kept.
        """
        return (
            self.max_age > 0
            and len(key) <= MAX_REQUEST_BYTES
            and b"mutation" not in key
        )

    def get(self, key: bytes, data_version: int) -> CachedAnswer | None:
        """The answer kept for `key`, if it is still current."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.data_version != data_version or entry.expires <= self.clock():
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry

    def put(
        self,
        key: bytes,
        body: bytes,
        query: PublicQuery,
        *,
        data_version: int,
        read_at: float,
    ) -> CachedAnswer | None:
        """Keep an answer made from data read at `data_version`, from `read_at`
        (the clock before it was made) on: its age counts from the read.
        Returns what was kept (None: too large to keep)."""
        if not self.may_keep(key) or len(body) > MAX_BODY_BYTES:
            return None
        entry = CachedAnswer(
            body=body,
            query=query,
            data_version=data_version,
            expires=read_at + self.max_age,
        )
        with self._lock:
            self._drop(key)
            self._entries[key] = entry
            self._bytes += len(key) + len(body)
            while self._entries and (
                len(self._entries) > self.max_entries or self._bytes > self.max_bytes
            ):
                self._drop(next(iter(self._entries)))
        return entry

    def _drop(self, key: bytes) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= len(key) + len(entry.body)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """What the kept requests and answers hold."""
        return self._bytes


class Misses:
    """Requests that miss together share the first one's answer.

    A commit drops every kept answer, and the next moment each viewer of a
    busy page asks again: without this, each would execute the same query.
    The first miss for a (body, data version) leads and executes; the others
    wait for what it kept. Event-loop only.
    """

    def __init__(self) -> None:
        self._leaders: dict[tuple[bytes, int], asyncio.Future[CachedAnswer | None]] = {}

    async def follow(self, key: bytes, data_version: int) -> CachedAnswer | None:
        """The answer a running leader keeps; None when none runs, or when
        its answer could not be kept (then execute it yourself)."""
        leader = self._leaders.get((key, data_version))
        if leader is None:
            return None
        # Shielded: a follower that gives up does not cancel the others' wait.
        return await asyncio.shield(leader)

    @contextmanager
    def lead(
        self, key: bytes, data_version: int
    ) -> Iterator[Callable[[CachedAnswer | None], None]]:
        """Around the leader's execution; call what it yields with the answer
        kept. Followers are released however the leader ends."""
        slot = (key, data_version)
        leader: asyncio.Future[CachedAnswer | None] = (
            asyncio.get_running_loop().create_future()
        )
        self._leaders[slot] = leader
        kept: list[CachedAnswer | None] = [None]

        def done(answer: CachedAnswer | None) -> None:
            kept[0] = answer

        try:
            yield done
        finally:
            if self._leaders.get(slot) is leader:
                del self._leaders[slot]
            leader.set_result(kept[0])

    def __len__(self) -> int:
        return len(self._leaders)
