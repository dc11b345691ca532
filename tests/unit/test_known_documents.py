"""The known-documents cache (careforall/api/caching.py): bounded, and only
what parses is kept."""

from __future__ import annotations

import pytest
from graphql import GraphQLError

from careforall.api.caching import MAX_DOCUMENT_CHARS, KnownDocuments


def test_the_least_recently_used_documents_are_evicted_past_the_bound() -> None:
    known = KnownDocuments(max_entries=3)
    first = known.get("{ a }", None)
    for name in "bcd":
        known.get(f"{{ {name} }}", None)

    assert len(known) == 3
    assert known.of(first.document) is None  # evicted, and not found by node
    assert known.get("{ a }", None) is not first  # parsed anew


def test_a_document_used_again_stays_while_newer_ones_come_and_go() -> None:
    known = KnownDocuments(max_entries=2)
    kept = known.get("{ a }", None)
    for name in "bcdefg":
        known.get(f"{{ {name} }}", None)
        assert known.get("{ a }", None) is kept

    assert len(known) == 2
    assert known.of(kept.document) is kept


def test_endless_distinct_documents_keep_memory_bounded() -> None:
    known = KnownDocuments(max_entries=50)
    for n in range(1_000):
        known.get(f"{{ a{n}: version }}", None)

    assert len(known) == 50
    assert len(known._by_node) == 50


def test_a_document_that_does_not_parse_is_not_kept() -> None:
    known = KnownDocuments()
    with pytest.raises(GraphQLError):
        known.get("{ a ", None)
    with pytest.raises(GraphQLError):
        known.get("{ a b c d e f }", 3)  # over its token limit

    assert len(known) == 0


def test_the_token_limit_is_part_of_the_key() -> None:
    known = KnownDocuments()
    known.get("{ a b c d e f }", None)

    with pytest.raises(GraphQLError):
        known.get("{ a b c d e f }", 3)


def test_a_huge_document_is_parsed_but_not_kept() -> None:
    known = KnownDocuments()
    query = "{ " + "a " * MAX_DOCUMENT_CHARS + "}"

    assert known.get(query, None).document.definitions
    assert len(known) == 0


def test_a_fact_is_made_once_per_key() -> None:
    entry = KnownDocuments().get("{ a }", None)
    made: list[int] = []

    def make() -> int:
        made.append(1)
        return 7

    assert entry.remember("cost", make) == 7
    assert entry.remember("cost", make) == 7
    assert entry.recall("cost") == 7
    assert entry.recall("other") is None
    assert made == [1]
