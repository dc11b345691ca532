"""Plain inputs (`api/inputs.py` `plain_input`) are built exactly as
Strawberry's own converter builds them, for every shape of value a request
can give, and the GraphQL answers around them stay the same."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
import strawberry
from strawberry.types.arguments import convert_argument
from strawberry.types.base import get_object_definition

from careforall.api.inputs import PledgeInput, plain_input
from careforall.api.schema import schema

VALUES: list[dict[str, Any]] = [
    # The fewest fields a request may give.
    {"campaignId": "cmp_1", "amountCents": 1000, "idempotencyKey": "k"},
    # Every field.
    {
        "campaignId": "cmp_1",
        "amountCents": 250,
        "currency": "EUR",
        "idempotencyKey": "key-2",
        "donorName": "Ada",
        "message": "Good luck",
        "donorEmail": "ada@example.org",
        "campaignUpdates": True,
    },
    # Explicit nulls for the optional fields.
    {
        "campaignId": "cmp_1",
        "amountCents": 1,
        "idempotencyKey": "k",
        "donorName": None,
        "message": None,
        "donorEmail": None,
    },
    # Values the service refuses later (their errors come from there alike).
    {"campaignId": "", "amountCents": -5, "idempotencyKey": " ", "currency": "xx"},
    {"campaignId": "cmp_1", "amountCents": 1, "idempotencyKey": "k\x00"},
]


@contextmanager
def strawberry_conversion(cls: type) -> Iterator[None]:
    """Strawberry's own converter for `cls` while inside."""
    definition = get_object_definition(cls, strict=True)
    fast = definition.from_input
    definition.from_input = None
    try:
        yield
    finally:
        definition.from_input = fast


def convert(cls: type, value: dict[str, Any]) -> Any:
    return convert_argument(
        value,
        cls,
        scalar_registry=schema.schema_converter.scalar_registry,
        config=schema.config,
    )


@pytest.mark.parametrize("value", VALUES)
def test_pledge_input_is_built_as_strawberry_builds_it(value: dict[str, Any]) -> None:
    fast = convert(PledgeInput, value)
    with strawberry_conversion(PledgeInput):
        slow = convert(PledgeInput, value)
    assert type(fast) is PledgeInput
    assert fast == slow
    assert fast.to_data() == slow.to_data()


def test_pledge_input_takes_the_plain_path() -> None:
    assert get_object_definition(PledgeInput, strict=True).from_input is not None


def test_only_plain_scalar_inputs_may_skip_the_converter() -> None:
    @strawberry.input
    class Inner:
        n: int

    @strawberry.input
    class Nested:
        inner: Inner

    @strawberry.input
    class Listed:
        names: list[str]

    @strawberry.input
    class Maybe:
        note: strawberry.Maybe[str]

    for cls in (Nested, Listed, Maybe):
        with pytest.raises(TypeError, match="not a plain scalar"):
            plain_input(cls)


def test_a_plain_input_keeps_its_defaults_and_python_names() -> None:
    @plain_input
    @strawberry.input
    class Example:
        when: datetime | None = None
        ratio: float = 0.5
        required_text: str
        named: str = strawberry.field(name="otherName", default="x")

    value = {"requiredText": "t", "otherName": "y"}
    fast = convert(Example, value)
    with strawberry_conversion(Example):
        assert fast == convert(Example, value)
    assert (fast.when, fast.ratio, fast.required_text, fast.named) == (
        None,
        0.5,
        "t",
        "y",
    )
