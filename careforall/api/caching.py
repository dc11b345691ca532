"""A bounded cache of parsed GraphQL documents.

Strawberry's ParserCache raises a syntax error from inside its hook, where it
escapes the error-code extension; this one leaves a document it cannot parse
to Strawberry, which reports it as GRAPHQL_PARSE_FAILED like any other.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from graphql import DocumentNode, GraphQLError, parse
from strawberry.extensions import SchemaExtension


@lru_cache(maxsize=512)
def parse_cached(query: str, max_tokens: int | None) -> DocumentNode:
    """The document for `query`, parsed once (raises GraphQLError)."""
    return parse(query, max_tokens=max_tokens)


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
