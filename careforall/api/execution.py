"""graphql-core's executor, with each subscription event's memos its own, and
plain fields read without the per-field machinery.

For every event of a subscription, graphql-core (3.3) copies the
subscription's executor shallowly, and the copies share its memos of collected
subfields and execution plans. Those are keyed by lists and field sets made
anew for each event, so every push added entries that lived as long as the
subscription: about 1.4 KB a push. On a viral campaign page (5,000 open
subscriptions) that was 7 MB more for every donation, never given back.

Most fields of an answer are plain: an attribute of the object, a scalar or
an enum, no arguments, no resolver (Strawberry's `_get_basic_result`).
graphql-core still gives each one a path, a resolve info, an awaitable check
and a recursive completion: about 45,000 instructions a field, a quarter of a
`campaignTotals` read. Here such a field is read and serialised straight
away, with the very resolver and serialiser graphql-core would call. Anything
unusual about a value (null where the schema says non-null, a serialiser that
fails or gives nothing, an exception, an awaitable) sends that field down
graphql-core's own path, which reads the attribute again and reports it
exactly as before; so does any field with a resolver, arguments or
directives, and every field when an extension wraps resolvers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple
from weakref import WeakKeyDictionary

from graphql import (
    GraphQLLeafType,
    GraphQLObjectType,
    Undefined,
    is_leaf_type,
    is_non_null_type,
)
from graphql.execution import Executor
from graphql.execution.collect_fields import GroupedFieldSet
from graphql.pyutils import AwaitableOrValue, Path, gather_with_cancel
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry.types.field import StrawberryField

# The executor's attributes that memoize within one execution: graphql-core's
# private names, so its version is bounded in pyproject.toml. Should a release
# rename one, every subscription fails at its first push (and
# tests/api/test_subscription_memory.py with it) rather than leak unseen.
MEMOS = (
    "_relevant_sub_fields",
    "_stream_usages",
    "_initial_execution_plans",
    "_deferred_execution_plans",
)

# The resolver Strawberry gives a field with no resolver, no extensions and
# no exception handlers: it reads the attribute and needs no resolve info.
# Should Strawberry rename it, no field is plain (all take the usual path)
# and tests/api/test_plain_fields.py fails.
BASIC_RESOLVER = "_get_basic_result"


class PlainField(NamedTuple):
    # What Strawberry's basic resolver calls: the configured default resolver
    # (getattr) with the attribute's Python name.
    read: Callable[[Any, str], Any]
    name: str
    leaf: GraphQLLeafType
    non_null: bool


# Per object type, its fields' verdicts (None: not plain), worked out on first
# use. Weak: a schema built for a test goes with its types.
_PLANS: WeakKeyDictionary[GraphQLObjectType, dict[str, PlainField | None]] = (
    WeakKeyDictionary()
)


def plans_of(parent_type: GraphQLObjectType) -> dict[str, PlainField | None]:
    plans = _PLANS.get(parent_type)
    if plans is None:
        plans = _PLANS.setdefault(parent_type, {})
    return plans


def plain_field(parent_type: GraphQLObjectType, name: str) -> PlainField | None:
    """How to read `name` of `parent_type` directly, or None when graphql-core
    must execute it (a resolver, arguments, an object or list type, a meta
    field such as __typename)."""
    plans = plans_of(parent_type)
    try:
        return plans[name]
    except KeyError:
        pass
    field = parent_type.fields.get(name)
    plan = None
    if field is not None and not field.args and field.resolve is not None:
        definition = field.extensions.get(GraphQLCoreConverter.DEFINITION_BACKREF)
        return_type = field.type
        non_null = is_non_null_type(return_type)
        inner = return_type.of_type if non_null else return_type
        if (
            getattr(field.resolve, "__name__", None) == BASIC_RESOLVER
            and isinstance(definition, StrawberryField)
            and definition.base_resolver is None
            and definition.python_name
            and is_leaf_type(inner)
        ):
            # StrawberryField.get_result without a resolver, as it reads it.
            plan = PlainField(
                definition.default_resolver,
                definition.python_name,
                inner,
                non_null,
            )
    plans[name] = plan
    return plan


_SLOW = object()  # a value graphql-core must complete itself


def _read(plan: PlainField, source: Any, is_awaitable: Callable[[Any], bool]) -> Any:
    """The field's completed value, or _SLOW when anything is unusual."""
    try:
        value = plan.read(source, plan.name)
        if value is None:
            return _SLOW if plan.non_null else None
        if value is Undefined or isinstance(value, Exception) or is_awaitable(value):
            return _SLOW
        coerced = plan.leaf.coerce_output_value(value)
    except Exception:
        return _SLOW
    return _SLOW if coerced is None or coerced is Undefined else coerced


class EventScopedExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def build_per_event_executor(self, payload: Any) -> Executor[Any]:
        executor = super().build_per_event_executor(payload)
        for name in MEMOS:
            # Empty and of the same kind: the event's execution fills it.
            setattr(executor, name, type(getattr(executor, name))())
        return executor

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: GroupedFieldSet,
        position_context: Any,
    ) -> AwaitableOrValue[dict[str, Any]]:
        manager = self.middleware_manager
        if manager is not None and manager.middlewares:
            # An extension's `resolve` must see every field.
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        # graphql-core's loop (Executor.execute_fields), but for plain fields.
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        plans = plans_of(parent_type)
        try:
            for response_name, field_details_list in grouped_field_set.items():
                node = field_details_list[0].node
                if not node.arguments and not node.directives:
                    name = node.name.value
                    plan = (
                        plans[name] if name in plans else plain_field(parent_type, name)
                    )
                    if plan is not None:
                        value = _read(plan, source_value, is_awaitable)
                        if value is not _SLOW:
                            results[response_name] = value
                            continue
                result = self.execute_field(
                    parent_type,
                    source_value,
                    field_details_list,
                    Path(path, response_name, parent_type.name),
                    position_context,
                )
                if result is not Undefined:
                    results[response_name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(response_name)
        except Exception:
            if awaitable_fields:
                self.settle_in_background(
                    [results[field] for field in awaitable_fields]
                )
            raise
        if not awaitable_fields:
            return results
        return self._gather(results, awaitable_fields)

    async def _gather(
        self, results: dict[str, Any], awaitable_fields: list[str]
    ) -> dict[str, Any]:
        if len(awaitable_fields) == 1:
            field = awaitable_fields[0]
            results[field] = await results[field]
            return results
        awaited = await gather_with_cancel(*(results[f] for f in awaitable_fields))
        results.update(zip(awaitable_fields, awaited, strict=True))
        return results
