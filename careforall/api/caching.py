"""Known documents: each GraphQL document text parsed once, and what does not
depend on the request worked out once for it.

A busy client sends the same few documents again and again (persisted
queries make the set of documents known). For each, a bounded LRU keeps the
parsed DocumentNode and a memo of facts about it that depend only on the
document and the server's settings: its validation errors for a set of rules
(the depth and alias limits are rules, so each limit keeps its own answer),
the static cost of an operation, and whether an operation is a public query
(the response cache). The variables and the caller are never in a key: a
cost that reads a variable is measured again on every request.

Strawberry's ParserCache raises a syntax error from inside its hook, where it
escapes the error-code extension; this one leaves a document it cannot parse
to Strawberry, which reports it as GRAPHQL_PARSE_FAILED like any other. Its
ValidationCache is keyed by the document, whose hash walks the whole tree on
every request; here the document's entry is found by its text, once.

Bounded: a client sending endless distinct documents evicts the least
recently used ones, and a document too long is not kept at all.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any, TypeVar

from graphql import DocumentNode, GraphQLError, GraphQLSchema, parse
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

T = TypeVar("T")

DEFAULT_MAX_ENTRIES = 512
# Longer documents are rare, and parsing them again is cheap beside their
# size: a client cannot fill memory with a few huge texts.
MAX_DOCUMENT_CHARS = 64 * 1024


class KnownDocument:
    """One parsed document and its memo (facts computed once, by key)."""

    __slots__ = ("_memo", "document")

    def __init__(self, document: DocumentNode) -> None:
        self.document = document
        self._memo: dict[Hashable, Any] = {}

    def remember(self, key: Hashable, make: Callable[[], T]) -> T:
        """The value kept under `key`, made by `make` the first time. A value
        made twice at once by two threads is the same value: either is kept."""
        try:
            value: T = self._memo[key]
        except KeyError:
            value = self._memo[key] = make()
        return value

    def recall(self, key: Hashable) -> Any | None:
        """The value kept under `key`, else None."""
        return self._memo.get(key)

    def keep(self, key: Hashable, value: object) -> None:
        self._memo[key] = value


class KnownDocuments:
    """Documents by (text, token limit), the most recently used kept
    (thread-safe). Also found by the DocumentNode they hold, for the hooks
    that see only the parsed document."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._by_text: OrderedDict[tuple[str, int | None], KnownDocument] = (
            OrderedDict()
        )
        # id() of a kept DocumentNode: the entry holds the node, so its id is
        # not reused while it is kept.
        self._by_node: dict[int, KnownDocument] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._by_text)

    def get(self, query: str, max_tokens: int | None) -> KnownDocument:
        """The known document for `query`, parsed now if it is new (raises
        GraphQLError when it does not parse: nothing is kept then)."""
        key = (query, max_tokens)
        with self._lock:
            known = self._by_text.get(key)
            if known is not None:
                self._by_text.move_to_end(key)
                return known
        known = KnownDocument(parse(query, max_tokens=max_tokens))
        if len(query) > MAX_DOCUMENT_CHARS:
            return known
        with self._lock:
            kept = self._by_text.get(key)
            if kept is not None:  # parsed meanwhile by another thread
                return kept
            self._by_text[key] = known
            self._by_node[id(known.document)] = known
            while len(self._by_text) > self.max_entries:
                _, dropped = self._by_text.popitem(last=False)
                del self._by_node[id(dropped.document)]
        return known

    def of(self, document: DocumentNode) -> KnownDocument | None:
        """The entry holding this very node, if it is still kept."""
        known = self._by_node.get(id(document))
        return known if known is not None and known.document is document else None

    def clear(self) -> None:
        with self._lock:
            self._by_text.clear()
            self._by_node.clear()


KNOWN = KnownDocuments()


def parse_cached(query: str, max_tokens: int | None) -> DocumentNode:
    """The document for `query`, parsed once (raises GraphQLError)."""
    return KNOWN.get(query, max_tokens).document


def validated(
    schema: GraphQLSchema,
    document: DocumentNode,
    rules: tuple[type[Any], ...],
) -> list[GraphQLError]:
    """The document's validation errors under these rules (none: valid),
    worked out once per known document and set of rules."""
    known = KNOWN.of(document)
    if known is None:
        return validate_document(schema, document, rules)
    return known.remember(
        ("validation", schema, rules),
        lambda: validate_document(schema, document, rules),
    )


class CachedParser(SchemaExtension):
    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        if context.query and context.graphql_document is None:
            try:
                context.graphql_document = parse_cached(
                    context.query, context.parse_options.get("max_tokens")
                )
            except GraphQLError:
                pass  # parsed again by Strawberry, which reports the error
        yield
