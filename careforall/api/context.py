"""The per-request GraphQL context and the Starlette view that builds it."""

from __future__ import annotations

import json
import time
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from careforall import metrics
from careforall.api.loaders import Loaders
from careforall.api.notification_hub import NotificationHub
from careforall.api.observability import count_cached_answer
from careforall.api.response_cache import Misses, ResponseCache, public_query
from careforall.api.response_size import encode_within
from careforall.broadcaster import Broadcaster
from careforall.domain.errors import Unauthenticated
from careforall.domain.rules import Principal
from careforall.runtime import Runtime
from careforall.services.auth import authenticate, bearer_token
from careforall.services.tokens import (
    RENEWED_TOKEN_HEADER,
    read_token,
    renewed_token,
)


@dataclass
class Context:
    request: Request | WebSocket
    response: Response | None
    runtime: Runtime
    broadcaster: Broadcaster[Any]
    token: str | None = None
    # graphql-transport-ws: the connection_init payload (set by Strawberry).
    connection_params: dict[str, Any] | None = None

    @cached_property
    def loaders(self) -> Loaders:
        """Made on first use: most requests and every subscription never batch
        a lookup, and each loader is a dozen objects to make and to keep."""
        return Loaders(self.runtime.db)

    @cached_property
    def _principal(self) -> Principal | Unauthenticated | None:
        if self.token is None:
            return None
        try:
            principal = authenticate(self.runtime.db, self.runtime.keys, self.token)
        except Unauthenticated as exc:
            return exc
        self._renew(principal)
        return principal

    def _renew(self, principal: Principal) -> None:
        """An anonymous token that is more than a day old and still current
        comes back renewed in the RENEWED_TOKEN_HEADER of the response: a guest
        who keeps coming back keeps the session (tokens.renewed_token)."""
        if principal.is_user or not isinstance(self.response, Response):
            return
        keys = self.runtime.keys
        assert self.token is not None
        fresh = renewed_token(keys, read_token(keys, self.token))
        if fresh is not None:
            self.response.headers[RENEWED_TOKEN_HEADER] = fresh

    @property
    def notifications(self) -> NotificationHub:
        hub: NotificationHub = self.request.app.state.notifications
        return hub

    def answer_is_personal(self) -> None:
        """This answer depends on who asks (a campaign hidden from the public,
        a note for its organiser): the response cache never keeps it."""
        self.request.state.personal_answer = True

    @property
    def principal(self) -> Principal | None:
        """The caller; a token that was sent but is not valid is refused."""
        value = self._principal
        if isinstance(value, Unauthenticated):
            raise value
        return value


class GraphQLView(GraphQL[Context, None]):
    """Reads the app's runtime (made in the lifespan) for each request."""

    def __init__(
        self,
        broadcaster: Broadcaster[Any],
        response_cache: ResponseCache | None = None,
        **kwargs: Any,
    ) -> None:
        from careforall.api.schema import schema

        super().__init__(schema, **kwargs)
        self.broadcaster = broadcaster
        self.response_cache = response_cache
        self.misses = Misses()

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None = None
    ) -> Context:
        token = bearer_token(request.headers.get("authorization"))
        return Context(
            request=request,
            response=response if isinstance(response, Response) else None,
            runtime=request.app.state.runtime,
            broadcaster=self.broadcaster,
            token=token,
        )

    async def on_ws_connect(
        self, context: Context
    ) -> UnsetType | dict[str, object] | None:
        """A browser cannot set headers on a WebSocket: it may send its token as
        connection_init's payload, {"Authorization": "Bearer <token>"}."""
        if context.token is None and context.connection_params:
            header = context.connection_params.get("Authorization")
            context.token = bearer_token(header if isinstance(header, str) else None)
        unset: UnsetType = UNSET
        return unset

    def parse_json(self, data: str | bytes) -> Any:
        # Strawberry lets bad UTF-8 and a bare number or string through as a 500.
        try:
            value = json.loads(data)
            # A lone surrogate ("\ud800", or its bytes ED A0 80: json.loads
            # lets both through) decodes, but no database can store it. A UTF-8
            # body with neither an escape nor an ED byte cannot hold one.
            if (
                isinstance(data, str)
                or b"\\u" in data
                or b"\xed" in data
                or json.detect_encoding(data) != "utf-8"  # UTF-16 or UTF-32
            ):
                json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise HTTPException(
                400,
                "The request body has a lone surrogate (a \\uD800-\\uDFFF escape "
                "or its bytes), which is no Unicode character.",
            ) from None
        except ValueError:
            raise HTTPException(400, "The request body is not valid JSON.") from None
        if not isinstance(value, dict | list):
            raise HTTPException(
                400, 'The request body must be a JSON object like {"query": "..."}.'
            )
        return value

    async def run(
        self,
        request: Request | WebSocket,
        context: Any = UNSET,
        root_value: Any = UNSET,
    ) -> Any:
        """A malformed HTTP request gets a GraphQL error body, not a plain-text 400."""
        if isinstance(request, WebSocket):
            return await self._run_socket(request, context, root_value)
        cache = self.response_cache
        if (
            cache is not None
            and isinstance(request, Request)
            and _may_share_answer(request)
            and cache.may_keep(await request.body())
        ):
            return await self._run_cached(request, cache)
        return await self._run(request, context, root_value)

    async def _run(
        self, request: Request | WebSocket, context: Any, root_value: Any
    ) -> Any:
        try:
            return await super().run(request, context, root_value)
        except HTTPException as exc:
            if isinstance(request, WebSocket):
                raise
            error = {"message": exc.reason, "extensions": {"code": "BAD_REQUEST"}}
            return JSONResponse({"errors": [error]}, status_code=exc.status_code)

    async def _run_cached(self, request: Request, cache: ResponseCache) -> Any:
        """A public query: the kept answer, or a new one kept."""
        start = time.perf_counter()
        read_at = cache.clock()
        body = await request.body()  # already read whole by BodySizeLimit
        runtime: Runtime = request.app.state.runtime
        data_version = runtime.db.data_version
        kept = cache.get(body, data_version)
        if kept is None:
            kept = await self.misses.follow(body, data_version)
        if kept is not None:
            metrics.GRAPHQL_RESPONSE_CACHE.labels("hit").inc()
            count_cached_answer(
                kept.query.operation_name,
                time.perf_counter() - start,
                token_sent="authorization" in request.headers,
            )
            return Response(kept.body, media_type="application/json")
        query = public_query(body, max_tokens=runtime.settings.graphql_max_tokens)
        if query is None:
            return await self._run(request, UNSET, UNSET)
        metrics.GRAPHQL_RESPONSE_CACHE.labels("miss").inc()
        with self.misses.lead(body, data_version) as done:
            response = await self._run(request, UNSET, UNSET)
            answer = getattr(response, "body", None)
            if (
                response.status_code == 200
                and isinstance(answer, bytes)
                and b'"errors"' not in answer  # any error: never kept
                and not getattr(request.state, "personal_answer", False)
            ):
                done(
                    cache.put(
                        body,
                        answer,
                        query,
                        data_version=data_version,
                        read_at=read_at,
                    )
                )
        return response

    # --- what one answer or connection may cost (api/sockets.py, api/cost.py)

    async def _run_socket(
        self, socket: WebSocket, context: Any, root_value: Any
    ) -> Any:
        # Imported here: sockets reads client_address from ratelimit, which
        # imports this module.
        from careforall.api.sockets import admit_socket

        return await admit_socket(
            socket, lambda: self._run(socket, context, root_value)
        )

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        settings = request.app.state.runtime.settings
        _MAX_RESPONSE_BYTES.set(settings.graphql_max_response_bytes)
        return await super().process_result(request, result)

    def encode_json(self, data: object) -> str:
        return encode_within(data, _MAX_RESPONSE_BYTES.get())


# The answer size limit of the request being answered (set in process_result,
# read in encode_json, both run by the request's task); 0 is no limit.
_MAX_RESPONSE_BYTES: ContextVar[int] = ContextVar("max_response_bytes", default=0)


def _may_share_answer(request: Request) -> bool:
    """A JSON POST: the only requests whose answers are kept. A token does not
    matter: the public root fields never read the caller (a test keeps it so),
    but where one hidden from the public is concerned (Context.answer_is_personal)."""
    return request.method == "POST" and request.headers.get(
        "content-type", ""
    ).startswith("application/json")
