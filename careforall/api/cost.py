"""The cost of a query: how many values its answer may hold, with the size of
every list multiplied through the lists around it.

Depth, aliases and tokens bound a document's text, not its answer: thirty
aliases of `campaigns(first: 100)` with `recentDonations(first: 50)` inside
are a short document whose answer holds about a million values. Each field
costs one, times the items of the lists it sits in:

- a list with a `first` argument (`recentDonations`) holds `first` items;
- a connection's `edges` hold its field's `first` (`campaigns(first: 100)`);
- another list holds what it can at most (`history`: one item per pledge
  state), else a page's maximum.

`first` is read from the literal, else the request's variables, else the
variable's or the field's default; a value out of range counts as the
largest page (the resolver refuses it anyway). Introspection fields count one
each: graphql-core's MaxIntrospectionDepthRule bounds those.

The check runs in the validation phase, before graphql-core's rules, with
the request's variables (which a validation rule never sees), so a refusal is
GRAPHQL_VALIDATION_FAILED like the depth and alias limits. The walk copes
with an invalid document (an unknown field costs one, an unknown fragment
nothing); the rules that run after it refuse that.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValueNode,
    VariableNode,
    get_named_type,
    get_nullable_type,
    is_list_type,
)
from strawberry.extensions import SchemaExtension

from careforall.api.caching import KNOWN, validated
from careforall.api.limits import settings_of
from careforall.api.notifications import PUSH_LIMIT
from careforall.api.pagination import DEFAULT_PAGE
from careforall.domain.money import MINOR_UNIT_EXPONENTS
from careforall.domain.states import PledgeStatus
from careforall.services.discovery import MAX_CATEGORIES
from careforall.services.pagination import MAX_PAGE
from careforall.services.payouts import PAYOUTS_SHOWN
from careforall.services.recurring import PLANS_SHOWN
from careforall.services.reviews import ORGANISER_HISTORY

# The most items a list without a `first` argument holds (type, field).
LIST_SIZES: dict[tuple[str, str], int] = {
    ("Pledge", "history"): len(PledgeStatus),
    ("AdminStats", "pledgesByStatus"): len(PledgeStatus),
    ("AdminStats", "raisedToday"): len(MINOR_UNIT_EXPONENTS),
    ("AdminStats", "raisedTotal"): len(MINOR_UNIT_EXPONENTS),
    ("PledgeStatusStats", "amounts"): len(MINOR_UNIT_EXPONENTS),
    ("NotificationUpdate", "notifications"): PUSH_LIMIT,
    ("ReviewQueueEntry", "organiserCampaigns"): ORGANISER_HISTORY,
    ("Campaign", "payouts"): PAYOUTS_SHOWN,
    ("Query", "categories"): MAX_CATEGORIES,
    ("Query", "myRecurringDonations"): PLANS_SHOWN,
}


# The fields of a selection set by response key: the nodes merged under each
# key (by id, so a fragment spread many times adds its fields once), each with
# the type it is selected on.
Fields = dict[str, dict[int, tuple[FieldNode, GraphQLNamedType | None]]]


# Fields a measure may visit: a document with a few hundred fields visits a
# few thousand; one built to explode is stopped after a few milliseconds.
MAX_VISITS = 20_000


class TooLongToMeasure(Exception):
    """The document's fields, fragments unfolded, are too many to walk."""


def _merge(into: Fields, more: Fields) -> None:
    for key, nodes in more.items():
        into.setdefault(key, {}).update(nodes)


class _Walk:
    """The cost of one operation. Fields are merged by response key first, as
    graphql-core merges them in the answer: `{ ...F ...F }` answers F's fields
    once. Each fragment and selection set is collected once."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
        defaults: Mapping[str, ValueNode],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.defaults = defaults
        self.read_variables = False
        self.collected: dict[int, Fields] = {}
        self.collecting: set[str] = set()
        # Fragments spread under fields are walked again at every spread, so
        # a short document can ask for a walk that doubles with each level:
        # past this many fields visited it is refused unmeasured.
        self.visits_left = MAX_VISITS

    def type_named(self, name: str) -> GraphQLNamedType | None:
        return self.schema.type_map.get(name)

    def collect(
        self, selection_set: SelectionSetNode, parent: GraphQLNamedType | None
    ) -> Fields:
        """The fields of a selection set (its fragments' included), by key."""
        known = self.collected.get(id(selection_set))
        if known is not None:
            return known
        fields: Fields = {}
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                key = (selection.alias or selection.name).value
                fields.setdefault(key, {})[id(selection)] = selection, parent
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.type_named(condition.name.value) if condition else parent
                _merge(fields, self.collect(selection.selection_set, inner))
            elif isinstance(selection, FragmentSpreadNode):
                _merge(fields, self.fragment(selection.name.value))
        self.collected[id(selection_set)] = fields
        return fields

    def fragment(self, name: str) -> Fields:
        definition = self.fragments.get(name)
        if definition is None or name in self.collecting:
            return {}  # unknown fragments and cycles: graphql-core's rules refuse
        self.collecting.add(name)
        parent = self.type_named(definition.type_condition.name.value)
        fields = self.collect(definition.selection_set, parent)
        self.collecting.discard(name)
        return fields

    def of(self, fields: Fields, page: int | None) -> int:
        """The cost of these fields; `page`: the `first` of the connection
        whose fields they are."""
        return sum(self.field(nodes, page) for nodes in fields.values())

    def field(
        self,
        nodes: dict[int, tuple[FieldNode, GraphQLNamedType | None]],
        page: int | None,
    ) -> int:
        self.visits_left -= 1
        if self.visits_left < 0:
            raise TooLongToMeasure()
        node, parent = next(iter(nodes.values()))
        name = node.name.value
        if name.startswith("__") or not isinstance(
            parent, GraphQLObjectType | GraphQLInterfaceType
        ):
            return 1
        definition = parent.fields.get(name)
        if definition is None:
            return 1  # an unknown field: graphql-core's rules refuse it
        first = self.first(node, definition.args.get("first"))
        if is_list_type(get_nullable_type(definition.type)):
            if first is not None:
                size = first
            elif page is not None:
                size = page
            else:
                size = LIST_SIZES.get((parent.name, name), MAX_PAGE)
            first = None
        else:
            size = 1
        child = get_named_type(definition.type)
        inner: Fields = {}
        for merged, _ in nodes.values():
            if merged.selection_set is not None:
                _merge(inner, self.collect(merged.selection_set, child))
        return size * (1 + self.of(inner, first))

    def first(self, node: FieldNode, argument: Any) -> int | None:
        """The `first` this field is asked for; None when it takes none."""
        if argument is None:
            return None
        value: object = argument.default_value
        for given in node.arguments or ():
            if given.name.value == "first":
                value = self.value(given.value)
        if value is None:
            return DEFAULT_PAGE
        if not isinstance(value, int) or isinstance(value, bool):
            return MAX_PAGE
        return value if 0 <= value <= MAX_PAGE else MAX_PAGE

    def value(self, node: ValueNode) -> object:
        if isinstance(node, VariableNode):
            self.read_variables = True
            name = node.name.value
            if name in self.variables:
                return self.variables[name]
            default = self.defaults.get(name)
            return self.value(default) if default is not None else None
        if isinstance(node, IntValueNode):
            return int(node.value)
        return None  # null, or a value of the wrong type (refused elsewhere)


def query_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None = None,
    variables: Mapping[str, Any] | None = None,
) -> int:
    """The cost of the operation that runs (of the dearest when none is named).

    A cost that reads no variable is kept with the known document (see
    caching.py): measured once, not on every request."""
    known = KNOWN.of(document)
    key = ("cost", schema, operation_name)
    kept = known.recall(key) if known is not None else None
    if isinstance(kept, int):
        return kept
    cost, reads_variables = _measure(schema, document, operation_name, variables)
    if known is not None and not reads_variables:
        known.keep(key, cost)
    return cost


def _measure(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
) -> tuple[int, bool]:
    """The cost, and whether it read any variable."""
    fragments = {
        d.name.value: d
        for d in document.definitions
        if isinstance(d, FragmentDefinitionNode)
    }
    cost = 0
    reads_variables = False
    for operation in _operations(document, operation_name):
        defaults = {
            v.variable.name.value: v.default_value
            for v in operation.variable_definitions or ()
            if v.default_value is not None
        }
        walk = _Walk(schema, fragments, variables or {}, defaults)
        root = schema.get_root_type(operation.operation)
        cost = max(cost, walk.of(walk.collect(operation.selection_set, root), None))
        reads_variables = reads_variables or walk.read_variables
    return cost, reads_variables


def _operations(
    document: DocumentNode, name: str | None
) -> Iterator[OperationDefinitionNode]:
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            name is None or (definition.name and definition.name.value == name)
        ):
            yield definition


class QueryCost(SchemaExtension):
    """Refuse a document whose cost is over `graphql_max_cost`.

    Measured before graphql-core's own rules run (a millisecond against their
    fifteen for a dear document), so a refusal costs the event loop little;
    `Validation` then leaves the refused document alone.
    """

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        limit = settings_of(context.context).graphql_max_cost
        if limit and document is not None and context.pre_execution_errors is None:
            try:
                cost = query_cost(
                    context.schema._schema,
                    document,
                    context.operation_name,
                    context.variables,
                )
            except RecursionError:
                cost = 0  # nested too deeply: the depth limit refuses it
            except TooLongToMeasure:
                context.pre_execution_errors = [
                    GraphQLError(
                        "The query unfolds into more than "
                        f"{MAX_VISITS:,} fields; at most {limit:,} values are "
                        "allowed. Use fewer nested fragments."
                    )
                ]
                cost = 0
            if cost > limit:
                context.pre_execution_errors = [
                    GraphQLError(
                        f"The query may return {cost:,} values; at most "
                        f"{limit:,} are allowed. Ask for fewer items (a smaller "
                        "`first`) or fewer fields."
                    )
                ]
        yield


class Validation(SchemaExtension):
    """Validation worked out once per known document and set of rules
    (caching.py), and skipped for a document already refused."""

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if not context.pre_execution_errors and document is not None:
            context.pre_execution_errors = validated(
                context.schema._schema, document, tuple(context.validation_rules)
            )
        yield
