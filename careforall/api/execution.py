"""graphql-core's executor, with each subscription event's memos its own.

For every event of a subscription, graphql-core (3.3) copies the
subscription's executor shallowly, and the copies share its memos of collected
subfields and execution plans. Those are keyed by lists and field sets made
anew for each event, so every push added entries that lived as long as the
subscription: about 1.4 KB a push. On a viral campaign page (5,000 open
subscriptions) that was 7 MB more for every donation, never given back.
"""

from __future__ import annotations

from typing import Any

from graphql.execution import Executor
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

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


class EventScopedExecutionContext(StrawberryGraphQLCoreExecutionContext):
    def build_per_event_executor(self, payload: Any) -> Executor[Any]:
        executor = super().build_per_event_executor(payload)
        for name in MEMOS:
            # Empty and of the same kind: the event's execution fills it.
            setattr(executor, name, type(getattr(executor, name))())
        return executor
