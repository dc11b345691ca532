"""One object built from another's attributes of the same names."""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import TYPE_CHECKING, TypeVar

import strawberry

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

D = TypeVar("D", bound="DataclassInstance")


@cache
def _init_fields(cls: type[DataclassInstance]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.init)


def from_attributes(cls: type[D], source: object, /, **given: object) -> D:
    """A `cls` (a dataclass: a Strawberry type, a service's data) whose fields
    are `source`'s attributes of the same names, but for those `given`, which
    convert or compute."""
    copied = {
        name: getattr(source, name) for name in _init_fields(cls) if name not in given
    }
    return cls(**copied, **given)


def optional_id(value: str | None) -> strawberry.ID | None:
    """An optional reference as a GraphQL ID; empty or missing is null."""
    return strawberry.ID(value) if value else None
