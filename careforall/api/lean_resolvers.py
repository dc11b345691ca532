"""Resolvers whose arguments are plain scalars, called without Strawberry's
per-request argument conversion.

For every field with a resolver, Strawberry's wrapper converts the arguments
on each request: it renames each one (its camelCase name worked out again),
asks what type it has, runs each field extension, and chains the resolve
steps through `functools.partial`: about 30 Python calls for a
`campaignTotals(campaignId: $id)`, a tenth of what such a read costs beyond
`{ __typename }`. When every argument is a scalar (a string, an ID, a number,
a boolean, or one of them optional) that conversion only renames them, so the
renaming is worked out once, when the schema is built, and each request calls
the resolver with it.

Only fields that Strawberry would resolve the same way are changed: a
resolver, no field extension taking part in resolving (those with only
`map_arguments`, as `limits.PlainText`, still run, in order), no exception
handlers on the schema. Everything else keeps Strawberry's wrapper. An async
resolver stays inside a coroutine of its own, as Strawberry's wrapper runs
it, so its errors are raised (and ordered) as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import strawberry
from graphql import GraphQLObjectType, GraphQLResolveInfo
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.base import StrawberryMaybe, StrawberryOptional
from strawberry.types.field import StrawberryField
from strawberry.utils.await_maybe import await_maybe

# The names of the wrappers Strawberry gives a field with a resolver: only
# those are replaced (a subscription's or a plain attribute's are not).
STRAWBERRY_WRAPPERS = frozenset({"_resolver", "_async_resolver"})

# Argument types whose conversion is the value itself (strawberry.ID is a
# NewType of str; GlobalID, enums, lists and inputs are converted).
_AS_IS: tuple[object, ...] = (str, int, float, bool, strawberry.ID)


def _as_is(type_: object) -> bool:
    if isinstance(type_, StrawberryMaybe):
        return False
    if isinstance(type_, StrawberryOptional):
        type_ = type_.of_type
    return any(type_ is plain for plain in _AS_IS)


def lean_resolver(
    schema: strawberry.Schema, field: StrawberryField
) -> Callable[..., Any] | None:
    """The field's resolver called with its arguments renamed, or None when
    Strawberry's own wrapper must convert them."""
    resolver = field.base_resolver
    if resolver is None or field.is_subscription or not callable(resolver.wrapped_func):
        return None
    if any(extension.has_resolver for extension in field.extensions):
        return None
    if not all(_as_is(argument.type) for argument in field.arguments):
        return None
    config = schema.config
    names = tuple(
        (config.name_converter.from_argument(argument), argument.python_name)
        for argument in field.arguments
    )
    extensions = tuple(field.extensions)  # map_arguments only
    function = resolver.wrapped_func
    takes_self = resolver.self_parameter is not None
    source_names = tuple(
        parameter.name
        for parameter in (resolver.parent_parameter, resolver.root_parameter)
        if parameter is not None
    )
    info_name = resolver.info_parameter.name if resolver.info_parameter else None
    info_class = config.info_class

    def resolve(source: Any, info: GraphQLResolveInfo[Any], **given: Any) -> Any:
        kwargs = {python: given[name] for name, python in names if name in given}
        for extension in extensions:
            kwargs = extension.map_arguments(kwargs)
        for name in source_names:
            kwargs[name] = source
        if info_name is not None:
            kwargs[info_name] = info_class(_raw_info=info, _field=field)
        if takes_self:
            return function(source, **kwargs)
        return function(**kwargs)

    if not field.is_async:
        return resolve

    async def resolve_async(
        source: Any, info: GraphQLResolveInfo[Any], **given: Any
    ) -> Any:
        return await await_maybe(resolve(source, info, **given))

    return resolve_async


def lighten(schema: strawberry.Schema) -> int:
    """Give each field that allows it its lean resolver; how many did."""
    if schema.schema_converter.exception_handlers:
        return 0
    changed = 0
    for named in schema._schema.type_map.values():
        if not isinstance(named, GraphQLObjectType) or named.name.startswith("__"):
            continue
        for field_def in named.fields.values():
            field = field_def.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
            if (
                not isinstance(field, StrawberryField)
                or getattr(field_def.resolve, "__name__", None)
                not in STRAWBERRY_WRAPPERS
            ):
                continue
            lean = lean_resolver(schema, field)
            if lean is not None:
                field_def.resolve = lean
                changed += 1
    return changed
