"""The GraphQL schema."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext

from careforall.api.errors import ErrorCodes
from careforall.api.mutations import Mutation
from careforall.api.queries import Query
from careforall.api.subscriptions import Subscription


class Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        # ErrorCodes logs unexpected errors once; refusals are not worth a traceback.
        return None


def build_schema(**kwargs: Any) -> Schema:
    return Schema(
        query=Query, mutation=Mutation, subscription=Subscription, extensions=[ErrorCodes], **kwargs
    )


schema = build_schema()
