"""Limits on a GraphQL document: tokens, depth and aliases; introspection on or off;
and the checks every root field's arguments pass (text, rate limits).

Each request reads the app's settings, so one schema serves apps with different
limits. Strawberry ships QueryDepthLimiter and MaxAliasesLimiter, but they walk a
fragment again at every spread (a 100-token document of nested fragments takes
seconds) and fail on an unknown fragment name; the rule here measures each
fragment once. The token limit is graphql-core's own (`parse(max_tokens=...)`),
refused as GRAPHQL_PARSE_FAILED like any document the parser gives up on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)
from graphql.validation import NoSchemaIntrospectionCustomRule
from strawberry.extensions import FieldExtension, SchemaExtension
from strawberry.types import Info

from careforall.api.context import Context
from careforall.api.ratelimit import check as rate_limit
from careforall.api.ratelimit import limited
from careforall.domain.errors import BadUserInput
from careforall.settings import Settings

DEFAULTS = Settings()


def settings_of(context: Any) -> Settings:
    """The app's settings; the defaults when the schema runs without an app."""
    if isinstance(context, Context):
        return context.runtime.settings
    return DEFAULTS


class _Shape:
    """Depth and alias count of selection sets, each fragment measured once.

    Depth follows graphql-depth-limit: root fields are at depth 0 and every
    nested selection adds one, so `{ me { id } }` has depth 1. Introspection
    fields (`__schema`, `__type`) do not count; graphql-core's
    MaxIntrospectionDepthRule bounds those.
    """

    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        self.measured: dict[str, tuple[int, int]] = {}
        self.measuring: set[str] = set()

    def of(self, selection_set: SelectionSetNode) -> tuple[int, int]:
        depth = aliases = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                aliases += selection.alias is not None
                if selection.selection_set is not None:
                    inner, more = self.of(selection.selection_set)
                    aliases += more
                    if not selection.name.value.startswith("__"):
                        depth = max(depth, inner + 1)
            elif isinstance(selection, InlineFragmentNode):
                inner, more = self.of(selection.selection_set)
                depth, aliases = max(depth, inner), aliases + more
            elif isinstance(selection, FragmentSpreadNode):
                inner, more = self.fragment(selection.name.value)
                depth, aliases = max(depth, inner), aliases + more
        return depth, aliases

    def fragment(self, name: str) -> tuple[int, int]:
        if name in self.measured:
            return self.measured[name]
        definition = self.fragments.get(name)
        if definition is None or name in self.measuring:
            # Unknown fragments and cycles are reported by graphql-core's rules.
            return 0, 0
        self.measuring.add(name)
        self.measured[name] = self.of(definition.selection_set)
        self.measuring.discard(name)
        return self.measured[name]


@lru_cache(maxsize=16)
def shape_rule(max_depth: int, max_aliases: int) -> type[ValidationRule]:
    """A validation rule refusing documents deeper or with more aliases than this."""

    class DocumentShapeRule(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            definitions = context.document.definitions
            shape = _Shape(
                {
                    d.name.value: d
                    for d in definitions
                    if isinstance(d, FragmentDefinitionNode)
                }
            )
            try:
                measured = [
                    shape.of(d.selection_set)
                    for d in definitions
                    if isinstance(d, OperationDefinitionNode)
                ]
            except RecursionError:
                context.report_error(
                    GraphQLError("The document nests its fragments too deeply.")
                )
                return
            depth = max((d for d, _ in measured), default=0)
            aliases = sum(a for _, a in measured)
            if depth > max_depth:
                context.report_error(
                    GraphQLError(
                        f"The query is nested {depth} levels deep; at most "
                        f"{max_depth} are allowed."
                    )
                )
            if aliases > max_aliases:
                context.report_error(
                    GraphQLError(
                        f"The document uses {aliases} aliases; at most "
                        f"{max_aliases} are allowed."
                    )
                )

    return DocumentShapeRule


class DocumentLimits(SchemaExtension):
    """Token, depth and alias limits, and introspection when turned off."""

    def on_operation(self) -> Iterator[None]:
        settings = settings_of(self.execution_context.context)
        self.execution_context.parse_options["max_tokens"] = settings.graphql_max_tokens
        rules = [shape_rule(settings.graphql_max_depth, settings.graphql_max_aliases)]
        if not settings.introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        self.execution_context.validation_rules = (
            *self.execution_context.validation_rules,
            *rules,
        )
        yield


def _has_nul(value: Any) -> bool:
    """Whether any text in a field's arguments holds a NUL character."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        parts: Iterable[Any] = value.values()
    elif isinstance(value, list | tuple):
        parts = value
    else:
        names = _field_names(type(value))
        if not names:
            return False
        parts = [getattr(value, name) for name in names]
    for part in parts:
        if _has_nul(part):
            return True
    return False


# An input's fields by class (every root field's arguments are looked through).
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    """A dataclass's (an input's) field names; none for any other class."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        is_input = dataclasses.is_dataclass(cls)
        names = _FIELD_NAMES[cls] = (
            tuple(f.name for f in dataclasses.fields(cls)) if is_input else ()
        )
    return names


def _refuse_nul(arguments: dict[str, Any]) -> dict[str, Any]:
    if _has_nul(arguments):
        raise BadUserInput(
            "Text may not contain NUL (U+0000) characters; nothing was changed."
        )
    return arguments


class PlainText(FieldExtension):
    """A root field's arguments may not hold a NUL character.

    PostgreSQL cannot store one, and no name, message, key or id needs one, so
    both databases answer alike. Checked as the arguments are converted, so it
    adds nothing to the resolve chain of the fields below the root.
    """

    def map_arguments(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return _refuse_nul(kwargs)


class RateLimited(PlainText):
    """A mutation counts against its rate limits (each alias too) before it runs."""

    def resolve(
        self, next_: Callable[..., Any], source: Any, info: Info, **kwargs: Any
    ) -> Any:
        self._count(info, kwargs)
        return next_(source, info, **kwargs)

    async def resolve_async(
        self, next_: Callable[..., Any], source: Any, info: Info, **kwargs: Any
    ) -> Any:
        if not isinstance(info.context, Context):
            return await next_(source, info, **kwargs)
        return await limited(
            info.context, info.field_name, kwargs, lambda: next_(source, info, **kwargs)
        )

    @staticmethod
    def _count(info: Info, kwargs: dict[str, Any]) -> None:
        if isinstance(info.context, Context):
            rate_limit(info.context, info.field_name, kwargs)


def guard_root_fields(query: type, mutation: type, subscription: type) -> None:
    """Put the root-field checks on every root field, once (see the classes).

    Field extensions rather than a schema-wide `resolve` hook: that hook would
    run for every field of every response, nested ones included.
    """
    for root, extension in (
        (query, PlainText),
        (mutation, RateLimited),
        (subscription, PlainText),
    ):
        for field in root.__strawberry_definition__.fields:  # type: ignore[attr-defined]
            if not any(isinstance(e, PlainText) for e in field.extensions):
                field.extensions.append(extension())
