"""GraphQL over HTTP, as its specification asks beyond what Strawberry does.

- The answer's media type follows the request's Accept header:
  `application/graphql-response+json` when the client prefers it, else
  `application/json` (also for clients that send no Accept, as the spec's
  legacy rule asks).
- With `application/graphql-response+json`, a request that never reached
  execution (a document that does not parse or validate, variables that do
  not coerce) answers 400 without a `data` entry; with `application/json` it
  stays 200, which older clients expect.
- Queries sent with GET carry cache headers: a public query (the root fields
  that never read the caller) may be kept by a proxy or CDN for a second,
  anything else is private and not stored.
"""

from __future__ import annotations

from contextvars import ContextVar

from graphql import GraphQLError

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"

# How long a proxy may keep a public query's answer: as long as the server's
# own response cache keeps it (CAREFORALL_RESPONSE_CACHE_SECONDS).
PUBLIC_GET = "public, max-age={seconds}"
PRIVATE_GET = "private, no-store"

# The media type of the request being answered (set when the request comes in,
# read where Strawberry builds the answer; both run in the request's task).
ANSWER_TYPE: ContextVar[str] = ContextVar("graphql_answer_type", default=JSON)


def negotiate(accept: str | None) -> str:
    """The media type to answer with, from an Accept header.

    `application/graphql-response+json` wins when it is accepted at least as
    much as `application/json`; wildcards and anything unknown get JSON.
    """
    if not accept:
        return JSON
    weights: dict[str, float] = {}
    for part in accept.split(","):
        kind, _, params = part.strip().partition(";")
        kind = kind.strip().lower()
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if kind in (GRAPHQL_RESPONSE, JSON, "application/*", "*/*"):
            weights[kind] = max(weights.get(kind, 0.0), weight)
    wildcard = max(weights.get("application/*", 0.0), weights.get("*/*", 0.0))
    wanted = weights.get(GRAPHQL_RESPONSE, 0.0)
    plain = weights.get(JSON, wildcard)
    return GRAPHQL_RESPONSE if wanted > 0 and wanted >= plain else JSON


def never_executed(data: object, errors: list[GraphQLError] | None) -> bool:
    """Whether an answer is a request error: no data, and no error of a field
    (graphql-core gives every field's error a path, and request errors none)."""
    return data is None and bool(errors) and all(e.path is None for e in errors or ())


def get_cache_control(*, public: bool, max_age: float) -> str:
    """The Cache-Control of a query answered to a GET."""
    if not public:
        return PRIVATE_GET
    return PUBLIC_GET.format(seconds=max(1, int(max_age)))
