"""The GraphQL schema."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.extensions.runner import SchemaExtensionsRunner
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType

from careforall.api.accounts import AccountMutation
from careforall.api.admin import AdminMutation, AdminQuery
from careforall.api.caching import CachedParser
from careforall.api.cost import QueryCost, Validation
from careforall.api.edits import EditMutation, EditQuery
from careforall.api.errors import ErrorCodes
from careforall.api.execution import EventScopedExecutionContext
from careforall.api.extension_runner import ExtensionsRunner
from careforall.api.giving import GivingQuery
from careforall.api.hosted_payments import HostedPaymentMutation
from careforall.api.lean_resolvers import lighten
from careforall.api.limits import DocumentLimits, guard_root_fields
from careforall.api.mail_preferences import (
    MailPreferencesMutation,
    MailPreferencesQuery,
)
from careforall.api.mutations import Mutation
from careforall.api.notifications import (
    NotificationMutation,
    NotificationQuery,
    NotificationSubscription,
)
from careforall.api.observability import Observability
from careforall.api.provider_info import ProviderQuery
from careforall.api.queries import Query
from careforall.api.recurring import RecurringMutation, RecurringQuery
from careforall.api.reviews import ReviewMutation, ReviewQuery
from careforall.api.subscriptions import Subscription
from careforall.api.trust import TrustMutation, TrustQuery


class Schema(strawberry.Schema):
    def create_extensions_runner(
        self, execution_context: ExecutionContext, extensions: list[SchemaExtension]
    ) -> SchemaExtensionsRunner:
        return ExtensionsRunner(execution_context, extensions)

    def process_errors(
        self,
        errors: list[GraphQLError],
        execution_context: ExecutionContext | None = None,
    ) -> None:
        # ErrorCodes logs unexpected errors once; refusals are not worth a traceback.
        return None

    async def execute(  # noqa: PLR0917
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        # One-shot execution (a plain POST) cannot stream: a subscription sent that way
        # is refused as a bad request, not failed inside its resolver. WebSockets use
        # `subscribe`, which this does not touch.
        given = allowed_operation_types
        allowed = set(OperationType if given is None else given)
        allowed.discard(OperationType.SUBSCRIPTION)
        return await super().execute(
            query,
            variable_values,
            context_value,
            root_value,
            operation_name,
            allowed,
            operation_extensions,
        )


def build_schema(**kwargs: Any) -> Schema:
    query = merge_types(
        "Query",
        (
            Query,
            AdminQuery,
            NotificationQuery,
            ProviderQuery,
            MailPreferencesQuery,
            ReviewQuery,
            EditQuery,
            TrustQuery,
            RecurringQuery,
            GivingQuery,
        ),
    )
    mutation = merge_types(
        "Mutation",
        (
            Mutation,
            AdminMutation,
            NotificationMutation,
            AccountMutation,
            MailPreferencesMutation,
            ReviewMutation,
            EditMutation,
            TrustMutation,
            HostedPaymentMutation,
            RecurringMutation,
        ),
    )
    subscription = merge_types("Subscription", (Subscription, NotificationSubscription))
    guard_root_fields(query, mutation, subscription)
    built = Schema(
        query=query,
        mutation=mutation,
        subscription=subscription,
        execution_context_class=EventScopedExecutionContext,
        # Observability first: it finishes last and sees the final error codes.
        extensions=[
            Observability,
            ErrorCodes,
            DocumentLimits,
            # Parsing and validating the same document again is most of the
            # cost of a small query: both are done once per known document
            # (caching.py, a bounded LRU keyed by its text).
            CachedParser,
            # The cost first: a dear document is refused before the rest of
            # validation, which leaves it alone.
            QueryCost,
            Validation,
        ],
        **kwargs,
    )
    # Scalar arguments renamed once, not converted on every request.
    lighten(built)
    return built


schema = build_schema()
