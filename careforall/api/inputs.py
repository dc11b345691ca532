"""GraphQL input types and their conversion to service data."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

import strawberry
from strawberry.types.arguments import InputContext
from strawberry.types.base import StrawberryOptional, get_object_definition

from careforall.api.mapping import from_attributes
from careforall.services.campaigns import CampaignData
from careforall.services.pledges import PledgeData


@strawberry.input
class CampaignInput:
    title: str
    description: str
    category: str
    goal_cents: int
    currency: str = "USD"
    ends_at: datetime | None = None

    def to_data(self) -> CampaignData:
        return from_attributes(CampaignData, self)


T = TypeVar("T", bound=type)

# Scalars Strawberry hands to an input unchanged (graphql-core parsed them).
_PLAIN_SCALARS: frozenset[object] = frozenset(
    {str, int, float, bool, strawberry.ID, datetime}
)


def _is_plain(type_: object) -> bool:
    # Exactly StrawberryOptional: a Maybe (its subclass) is converted and checked.
    if type(type_) is StrawberryOptional:
        type_ = type_.of_type
    return type_ in _PLAIN_SCALARS


def plain_input(cls: T) -> T:
    """Build `cls` from its GraphQL value without Strawberry's converter.

    Strawberry converts an input field by field, resolving each field's type
    on every request: on createPledge that was a tenth of the request's
    Python. When every field is a built-in scalar (or an optional one), that
    conversion is the identity on each value, so the class is built from the
    value directly: the fields given, None for a field without a default
    that is left out (graphql-core already refused a missing required one),
    and the class's defaults for the rest, exactly as Strawberry builds it.
    """
    definition = get_object_definition(cls, strict=True)
    for field in definition.fields:
        if not _is_plain(field.resolve_type(type_definition=definition)):
            raise TypeError(f"{cls.__name__}.{field.python_name} is not a plain scalar")
    implicit = {
        field.python_name: None
        for field in definition.fields
        if field.default_value is dataclasses.MISSING
        and field.default_factory is dataclasses.MISSING
    }
    # (GraphQL name, Python name) of each field, under the schema's config
    # (whose name converter published the names); made on the first request.
    named: list[tuple[object, tuple[tuple[str, str], ...]]] = []

    def from_input(type_: type, value: Mapping[str, Any], context: InputContext) -> Any:
        if not named or named[0][0] is not context.config:
            converter = context.config.name_converter
            named[:] = [
                (
                    context.config,
                    tuple(
                        (converter.from_field(field), field.python_name)
                        for field in definition.fields
                    ),
                )
            ]
        kwargs = dict(implicit)
        for graphql_name, python_name in named[0][1]:
            if graphql_name in value:
                kwargs[python_name] = value[graphql_name]
        return type_(**kwargs)

    definition.from_input = from_input
    return cls


@plain_input
@strawberry.input
class PledgeInput:
    campaign_id: strawberry.ID
    amount_cents: int
    currency: str = "USD"
    idempotency_key: str
    donor_name: str | None = None
    message: str | None = None
    donor_email: str | None = strawberry.field(
        default=None,
        description="Where a guest's receipt goes (optional); never shown "
        "publicly. Verifying this address later brings the donation into the "
        "account.",
    )
    campaign_updates: bool = strawberry.field(
        default=False,
        description="Email me this campaign's updates: the donor asks for the "
        "organiser's updates by mail (to the account's address, or to "
        "donorEmail for a guest), sent while the donation stands. Never on "
        "unless asked.",
    )

    def to_data(self) -> PledgeData:
        return from_attributes(PledgeData, self, campaign_id=str(self.campaign_id))
