"""Error codes for clients: DomainError -> `extensions.code`; everything else masked."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

from graphql import GraphQLError
from strawberry.extensions import SchemaExtension

from careforall import metrics
from careforall.domain.errors import DomainError, RateLimited

log = logging.getLogger("careforall.api")

INTERNAL_MESSAGE = "Something went wrong on our side; nothing was changed. Try again."

# graphql-core's validation and coercion messages end with suggestions of
# names the schema has (" Did you mean 'pledge'?"); with introspection off,
# they would hand out the schema one guess at a time.
_SUGGESTION = re.compile(r" ?Did you mean [^?]*\?")


def without_suggestions(error: GraphQLError) -> GraphQLError:
    """The error with graphql-core's "Did you mean ...?" taken out."""
    message = _SUGGESTION.sub("", error.message)
    if message == error.message:
        return error
    return GraphQLError(
        message=message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        extensions=error.extensions,
    )


def _with_code(
    error: GraphQLError, code: str, message: str | None = None, **extra: object
) -> GraphQLError:
    return GraphQLError(
        message=message if message is not None else error.message,
        nodes=error.nodes,
        source=error.source,
        positions=error.positions,
        path=error.path,
        original_error=None,
        extensions={"code": code, **extra},
    )


def classify(error: GraphQLError, phase: str) -> GraphQLError:
    """The client's view of one error, given the phase it came from."""
    original = error.original_error
    if isinstance(original, RateLimited):
        return _with_code(
            error,
            original.code,
            original.message,
            retryAfterSeconds=original.retry_after_seconds,
        )
    if isinstance(original, DomainError):
        return _with_code(error, original.code, original.message)
    if isinstance(original, GraphQLError):
        # graphql-core refusing a variable's value (1.5 for an Int): bad input.
        return _with_code(error, "BAD_USER_INPUT")
    if original is not None:
        log.error("unexpected error in resolver", exc_info=original)
        return _with_code(error, "INTERNAL_SERVER_ERROR", INTERNAL_MESSAGE)
    if error.extensions and "code" in error.extensions:
        return error
    if phase == "parse":
        return _with_code(error, "GRAPHQL_PARSE_FAILED")
    if phase == "validate":
        return _with_code(error, "GRAPHQL_VALIDATION_FAILED")
    # Raised by graphql-core itself while executing: bad variable values.
    return _with_code(error, "BAD_USER_INPUT")


class ErrorCodes(SchemaExtension):
    """Gives every error a contract code and masks anything unexpected."""

    # Where an error without a code came from: "parse" until validation
    # begins (Strawberry makes an instance per operation from the class the
    # schema lists). Each hook costs every request a context manager, so one
    # hook marks both later phases.
    phase = "parse"
    _streamed = False  # set once a result went out through on_stream_result

    def on_validate(self) -> Iterator[None]:
        self.phase = "validate"
        yield
        if not self.execution_context.pre_execution_errors:
            self.phase = "execute"

    def on_operation(self) -> Iterator[None]:
        self._streamed = False
        yield
        if not self._streamed:
            self._classify(self.execution_context.result)

    def on_stream_result(self, result: Any) -> Iterator[None]:
        # Subscriptions send each result before on_operation resumes; code them here.
        self._streamed = True
        self._classify(result)
        yield

    def _classify(self, result: Any) -> None:
        errors = getattr(result, "errors", None)
        if result is None or not errors:
            return
        classified = [classify(error, self.phase) for error in errors]
        if not _introspection(self.execution_context.context):
            classified = [without_suggestions(error) for error in classified]
        for error in classified:
            metrics.GRAPHQL_ERRORS.labels(
                str((error.extensions or {}).get("code"))
            ).inc()
        result.errors = classified


def _introspection(context: Any) -> bool:
    """Whether the app lets clients read the schema (CAREFORALL_INTROSPECTION)."""
    runtime = getattr(context, "runtime", None)
    return bool(runtime is None or runtime.settings.introspection)
