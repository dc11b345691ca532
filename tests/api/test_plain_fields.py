"""Plain fields (an attribute, a scalar or enum, no resolver) are read without
graphql-core's per-field machinery (api/execution.py), and resolvers whose
arguments are scalars are called without Strawberry's conversion
(api/lean_resolvers.py): the answers and the errors are the usual ones."""

from __future__ import annotations

import asyncio
import enum
from datetime import UTC, datetime
from typing import Any

import pytest
import strawberry
from graphql import GraphQLObjectType
from strawberry.extensions import FieldExtension, SchemaExtension

from careforall.api.execution import EventScopedExecutionContext, plain_field
from careforall.api.lean_resolvers import lighten
from careforall.api.schema import schema as app_schema


def graphql_type(name: str) -> GraphQLObjectType:
    found = app_schema._schema.type_map[name]
    assert isinstance(found, GraphQLObjectType)
    return found


def test_the_totals_fields_are_plain_and_the_others_are_not() -> None:
    """Guards the fast path itself: should Strawberry rename its basic
    resolver, nothing would be plain (still correct, but slow again)."""
    totals = graphql_type("CampaignTotals")
    assert all(plain_field(totals, name) for name in totals.fields)
    query = graphql_type("Query")
    assert plain_field(query, "campaignTotals") is None  # a resolver, arguments
    assert plain_field(query, "version") is None  # a resolver
    assert plain_field(totals, "__typename") is None
    campaign = graphql_type("Campaign")
    assert plain_field(campaign, "totals") is None  # an object


class Colour(enum.Enum):
    RED = "red"


@strawberry.type
class Item:
    name: str
    count: int
    ratio: float
    flag: bool
    at: datetime
    colour: Colour
    note: str | None
    # Wrong values on purpose: each must fail as graphql-core fails it.
    missing: str
    not_a_number: int
    huge: int
    bad_colour: Colour
    tags: list[str]

    @strawberry.field
    def shout(self, loud: bool = False) -> str:
        return self.name.upper() if loud else self.name


def make_item() -> Item:
    return Item(
        name="a",
        count=3,
        ratio=0.5,
        flag=True,
        at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        colour=Colour.RED,
        note=None,
        missing=None,  # type: ignore[arg-type]
        not_a_number="x",  # type: ignore[arg-type]
        huge=2**40,
        bad_colour="purple",  # type: ignore[arg-type]
        tags=["x", "y"],
    )


@strawberry.type
class Query:
    @strawberry.field
    def item(self) -> Item:
        return make_item()

    @strawberry.field
    async def later(self) -> Item | None:
        return make_item()

    @strawberry.field
    def items(self) -> list[Item]:
        return [make_item(), make_item()]


class CountsResolves(SchemaExtension):
    """An extension wrapping every resolver (a middleware): it must see all."""

    seen: list[str] = []

    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kw: Any) -> Any:
        CountsResolves.seen.append(info.field_name)
        return _next(root, info, *args, **kw)


DOCUMENTS = [
    "{ item { name count ratio flag at colour note __typename } }",
    "{ item { n: name c: count name } later { name at } }",
    "{ item { name missing } }",
    "{ item { count notANumber } }",
    "{ item { huge } }",
    "{ item { badColour } }",
    "{ items { name tags shout(loud: true) } }",
    "query($yes: Boolean!) { item { name @include(if: $yes) count @skip(if: $yes) } }",
    "{ item { ...F } } fragment F on Item { name count }",
]


def run(schema: strawberry.Schema, document: str) -> dict[str, Any]:
    result = asyncio.run(schema.execute(document, variable_values={"yes": True}))
    return {
        "data": result.data,
        "errors": [(e.message, e.path, e.locations) for e in result.errors or []],
    }


@pytest.mark.parametrize("document", DOCUMENTS)
def test_plain_fields_answer_and_fail_as_graphql_core_does(document: str) -> None:
    usual = strawberry.Schema(Query)
    fast = strawberry.Schema(Query, execution_context_class=EventScopedExecutionContext)
    item = fast._schema.type_map["Item"]
    assert isinstance(item, GraphQLObjectType)
    assert plain_field(item, "name") is not None
    assert plain_field(item, "tags") is None  # a list: graphql-core's path
    assert run(fast, document) == run(usual, document)


def test_an_extension_that_wraps_resolvers_still_sees_every_field() -> None:
    fast = strawberry.Schema(
        Query,
        execution_context_class=EventScopedExecutionContext,
        extensions=[CountsResolves],
    )
    CountsResolves.seen = []
    answer = run(fast, "{ item { name count } }")
    assert answer["data"] == {"item": {"name": "a", "count": 3}}
    assert CountsResolves.seen == ["item", "name", "count"]


# --- resolvers with scalar arguments (api/lean_resolvers.py)


class NoNul(FieldExtension):
    """Like limits.PlainText: refuses an argument, maps the others."""

    def map_arguments(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if "\x00" in str(kwargs.get("text")):
            raise ValueError("no NUL")
        return {**kwargs, "mapped": True} if "mapped" in kwargs else kwargs


@strawberry.type
class Lookups:
    @strawberry.field(extensions=[NoNul()])
    def echo(
        self,
        info: strawberry.Info,
        id: strawberry.ID,
        text: str | None = None,
        times: int = 1,
        mapped: bool = False,
    ) -> str | None:
        return f"{info.field_name}:{id}:{text}:{times}:{mapped}"

    @strawberry.field(extensions=[NoNul()])
    async def later(self, text: str, ratio: float | None = None) -> str | None:
        if text == "boom":
            raise RuntimeError("failed later")
        return f"{text}:{ratio}"

    @strawberry.field
    def colour(self, colour: Colour) -> str:  # an enum: converted, not lean
        return colour.name


DOCUMENTS_WITH_ARGUMENTS = [
    '{ echo(id: "1") a: echo(id: 2, text: "t", times: 3, mapped: true) }',
    'query($t: String) { echo(id: "x", text: $t) later(text: "ok") }',
    '{ echo(id: "x", text: "a\\u0000b") later(text: "boom") colour(colour: RED) }',
    '{ later(text: "a\\u0000") b: later(text: "boom", ratio: 0.5) }',
]


def run_lookups(document: str, *, lean: bool) -> dict[str, Any]:
    schema = strawberry.Schema(Lookups)
    if lean:
        assert lighten(schema) == 2  # echo and later; colour keeps Strawberry's
    result = asyncio.run(schema.execute(document, variable_values={"t": None}))
    return {
        "data": result.data,
        "errors": [(e.message, e.path) for e in result.errors or []],
    }


@pytest.mark.parametrize("document", DOCUMENTS_WITH_ARGUMENTS)
def test_lean_resolvers_answer_and_fail_as_strawberrys_wrapper(document: str) -> None:
    assert run_lookups(document, lean=True) == run_lookups(document, lean=False)


def test_the_app_resolvers_with_scalar_arguments_are_lean() -> None:
    query = graphql_type("Query")
    for name in ("campaignTotals", "campaign", "version"):
        resolve = query.fields[name].resolve
        assert getattr(resolve, "__name__", None) in {"resolve", "resolve_async"}
    # An enum argument (campaigns' status and sort) is converted by Strawberry.
    assert query.fields["campaigns"].resolve.__name__ == "_async_resolver"  # type: ignore[union-attr]
    # Mutations count against rate limits in a resolve step: left alone.
    mutation = graphql_type("Mutation")
    assert mutation.fields["createPledge"].resolve.__name__ == "_async_resolver"  # type: ignore[union-attr]
