"""Per-operation metrics, span and log fields for GraphQL (a schema extension).

Operation names come from clients, so only the first `OPERATION_NAME_LIMIT`
distinct names of valid operations become metric label values; any later one
counts as "other", and an operation without a name as "anonymous".
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from typing import Any

from graphql import (
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    get_operation_ast,
)
from strawberry.extensions import SchemaExtension

from careforall import metrics, tracing
from careforall.domain.errors import Unauthenticated
from careforall.logs import current_request

ANONYMOUS = "anonymous"
OTHER = "other"
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,63}")


class OperationNames:
    """Bounded label values for operation names (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def label(self, name: str | None, *, valid: bool) -> str:
        """The label for `name`; only a valid operation may take a free slot."""
        if not name:
            return ANONYMOUS
        if name in self._seen:
            return name
        if not valid or not _NAME.fullmatch(name):
            return OTHER
        with self._lock:
            if name in self._seen or len(self._seen) < self.limit:
                self._seen.add(name)
                return name
        return OTHER


OPERATION_NAMES = OperationNames(metrics.OPERATION_NAME_LIMIT)


def principal_kind(context: Any) -> tuple[str, str | None]:
    """("none" | "anon" | "user" | "admin" | "invalid", the user id for users)."""
    if getattr(context, "token", None) is None:
        return "none", None
    try:
        principal = context.principal
    except Unauthenticated:
        return "invalid", None
    if principal is None:
        return "none", None
    if principal.is_admin:
        return "admin", principal.id
    if principal.is_user:
        return "user", principal.id
    return "anon", None  # anonymous donors stay unlinkable in the logs


def _root_fields(operation: OperationDefinitionNode | None) -> list[str]:
    if operation is None:
        return []
    return [
        selection.name.value
        for selection in operation.selection_set.selections
        if isinstance(selection, FieldNode)
    ][:10]


def count_cached_answer(
    operation_name: str | None, elapsed: float, *, token_sent: bool
) -> None:
    """A public query answered from the response cache: counted and logged
    as the operation it answers (it was valid and ran without errors). A
    token sent with it was not checked: the answer is the same for anyone."""
    label = OPERATION_NAMES.label(operation_name, valid=True)
    metrics.labelled(metrics.GRAPHQL_OPERATIONS, label, "query", "ok").inc()
    metrics.labelled(metrics.GRAPHQL_LATENCY, label, "query").observe(elapsed)
    entry = current_request()
    if entry is not None:
        entry.operation = (operation_name or ANONYMOUS)[:100]
        entry.operation_type = "query"
        entry.principal = "unchecked" if token_sent else "none"


class Observability(SchemaExtension):
    """Counts and times each operation, traces it, and fills in its log line.

    Listed before ErrorCodes, so it finishes after it and sees the final codes.
    """

    _valid = False  # parsed and validated

    def on_validate(self) -> Iterator[None]:
        yield
        self._valid = not self.execution_context.pre_execution_errors

    def on_operation(self) -> Iterator[None]:
        start = time.perf_counter()
        with tracing.span("graphql") as span:
            yield
            elapsed = time.perf_counter() - start
            context = self.execution_context
            document = context.graphql_document
            operation = (
                get_operation_ast(document, context.operation_name)
                if document is not None
                else None
            )
            valid = operation is not None and self._valid
            name = context.operation_name
            kind = operation.operation.value if operation is not None else "unknown"
            label = OPERATION_NAMES.label(name, valid=valid)
            errors: list[GraphQLError] = list(
                getattr(context.result, "errors", None) or []
            )
            outcome = "error" if errors else "ok"
            metrics.labelled(metrics.GRAPHQL_OPERATIONS, label, kind, outcome).inc()
            if kind != "subscription":  # a subscription lasts as long as it is open
                metrics.labelled(metrics.GRAPHQL_LATENCY, label, kind).observe(elapsed)
            codes = [str((e.extensions or {}).get("code")) for e in errors][:10]
            if span.is_recording():
                span.update_name(f"{kind} {name}" if name else kind)
                span.set_attribute("graphql.operation.type", kind)
                if name:
                    span.set_attribute("graphql.operation.name", name[:100])
                span.set_attribute("graphql.root_fields", _root_fields(operation))
                if codes:
                    tracing.fail(span, ",".join(codes))
            entry = current_request()
            if entry is not None:
                entry.operation = (name or ANONYMOUS)[:100]
                entry.operation_type = kind
                entry.principal, entry.user_id = principal_kind(context.context)
                entry.errors = codes
