"""The per-request GraphQL context and the Starlette view that builds it."""

from __future__ import annotations

import json
import time
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cached_property, partial
from typing import Any

from cross_web import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET, UnsetType

from careforall import metrics
from careforall.api.fanout import Fanout
from careforall.api.http_transport import (
    ANSWER_TYPE,
    GRAPHQL_RESPONSE,
    get_cache_control,
    negotiate,
    never_executed,
)
from careforall.api.loaders import Loaders
from careforall.api.notification_hub import NotificationHub
from careforall.api.observability import count_cached_answer
from careforall.api.persisted_queries import (
    NOT_FOUND,
    PersistedQueries,
    PersistedQueryError,
    fill_in,
)
from careforall.api.response_cache import Misses, ResponseCache, public_query
from careforall.api.response_size import encode_within
from careforall.api.transport_ws import GraphQLWSHandler, TransportWSHandler
from careforall.broadcaster import Broadcaster
from careforall.concurrency import in_thread
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
    # A known public subscription run once for every socket that asked for it
    # (api/fanout.py): each of those sockets counts its own subscription.
    shared: bool = False

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

    def still_signed_in(self) -> None:
        """Refuse (UNAUTHENTICATED) once the caller's token has been ended since
        the subscription began: a signed-out or deleted account's socket must
        not keep receiving its private pushes. Blocking: call in a thread."""
        if self.token is not None:
            authenticate(self.runtime.db, self.runtime.keys, self.token)

    def answer_is_personal(self) -> None:
        """This answer depends on who asks (a campaign hidden from the public,
        a note for its organiser): the response cache never keeps it."""
        self.request.state.personal_answer = True

    async def check_token(self) -> None:
        """Check the caller's token now, in a worker thread: the check reads the
        database, and PostgreSQL's read is a round trip that would hold the
        event loop (and every other request) meanwhile."""
        if self.token is not None and "_principal" not in self.__dict__:
            await in_thread(lambda: self._principal)

    @property
    def principal(self) -> Principal | None:
        """The caller; a token that was sent but is not valid is refused."""
        value = self._principal
        if isinstance(value, Unauthenticated):
            raise value
        return value


class GraphQLView(GraphQL[Context, None]):
    """Reads the app's runtime (made in the lifespan) for each request."""

    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = GraphQLWSHandler

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
        self.persisted_queries = PersistedQueries()
        # Known public subscriptions, run once for all the sockets asking.
        self.fanout = Fanout(self)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None = None
    ) -> Context:
        token = bearer_token(request.headers.get("authorization"))
        if isinstance(request, WebSocket):
            _keep_forwarded_for_only(request)
        context = Context(
            request=request,
            response=response if isinstance(response, Response) else None,
            runtime=request.app.state.runtime,
            broadcaster=self.broadcaster,
            token=token,
        )
        if (
            token is not None
            and context.runtime.db.is_postgres
            and not isinstance(request, WebSocket)
        ):
            # Resolvers, rate limits and the log line read the caller on the
            # event loop; on SQLite that read is local and cheaper than a hop.
            await context.check_token()
        return context

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
            # Imported here: sockets reads client_address from ratelimit,
            # which imports this module. Straight to Strawberry's run: each
            # frame between stays on the stack of every open socket.
            from careforall.api.sockets import admit_socket

            return await admit_socket(
                request, partial(super().run, request, context, root_value)
            )
        ANSWER_TYPE.set(negotiate(request.headers.get("accept")))
        try:
            await fill_in(request, self.persisted_queries)
        except PersistedQueryError as refused:
            # Apollo's clients read NOT_FOUND from the body and send the
            # document; the spec's media type has no `data`, so it is a 400.
            status = 200 if refused.code == NOT_FOUND else 400
            return _refusal(refused.code, refused.message, status)
        cache = self.response_cache
        if (
            cache is not None
            and _may_share_answer(request)
            and cache.may_keep(await request.body())
        ):
            return await self._run_cached(request, cache)
        response = await self._run(request, context, root_value)
        if request.method == "GET" and isinstance(response, Response):
            _cache_headers(request, response)
        return response

    async def _run(
        self, request: Request | WebSocket, context: Any, root_value: Any
    ) -> Any:
        try:
            return await super().run(request, context, root_value)
        except HTTPException as exc:
            if isinstance(request, WebSocket):
                raise
            if request.method == "GET" and isinstance(exc.__cause__, _WrongOperation):
                # The spec: a mutation sent with GET is 405; POST would work.
                return _refusal("BAD_REQUEST", exc.reason, 405, {"Allow": "POST"})
            if exc.status_code == 405:
                return _refusal("BAD_REQUEST", exc.reason, 405, {"Allow": "GET, POST"})
            return _refusal("BAD_REQUEST", exc.reason, exc.status_code)

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
            _CACHE_HIT.inc()
            count_cached_answer(
                kept.query.operation_name,
                time.perf_counter() - start,
                token_sent="authorization" in request.headers,
            )
            return Response(kept.body, media_type=ANSWER_TYPE.get())
        query = public_query(body, max_tokens=runtime.settings.graphql_max_tokens)
        if query is None:
            return await self._run(request, UNSET, UNSET)
        _CACHE_MISS.inc()
        # Set before: a missing attribute costs State an exception to say so.
        request.state.personal_answer = False
        with self.misses.lead(body, data_version) as done:
            response = await self._run(request, UNSET, UNSET)
            answer = getattr(response, "body", None)
            if (
                response.status_code == 200
                and isinstance(answer, bytes)
                and b'"errors"' not in answer  # any error: never kept
                and not request.state.personal_answer
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

    # --- what one answer may cost (api/response_size.py, api/cost.py)

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        settings = request.app.state.runtime.settings
        _MAX_RESPONSE_BYTES.set(settings.graphql_max_response_bytes)
        answer = await super().process_result(request, result)
        if ANSWER_TYPE.get() == GRAPHQL_RESPONSE and never_executed(
            result.data, result.errors
        ):
            # A request error: the spec's media type has no `data` and a 400.
            answer.pop("data", None)
        return answer

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        media_type = ANSWER_TYPE.get()
        response.headers["content-type"] = media_type
        if (
            media_type == GRAPHQL_RESPONSE
            and isinstance(response_data, dict)
            and "data" not in response_data
            and response.status_code == 200
        ):
            response.status_code = 400
        return response

    async def execute_single(self, *args: Any, **kwargs: Any) -> ExecutionResult:
        try:
            return await super().execute_single(*args, **kwargs)
        except HTTPException as exc:
            if isinstance(exc.__cause__, InvalidOperationTypeError):
                raise HTTPException(exc.status_code, exc.reason) from _WrongOperation()
            raise

    def encode_json(self, data: object) -> str:
        return encode_within(data, _MAX_RESPONSE_BYTES.get())


def _keep_forwarded_for_only(socket: WebSocket) -> None:
    """Let an open socket's request headers go, once its token is read, but
    X-Forwarded-For (its address, for the rate limits of what it sends
    later): each socket of a watching page kept them all (about 1.2 KB) for
    its life. Emptied in place: the scope and its readers share the list."""
    headers = socket.scope.get("headers")
    if isinstance(headers, list):
        headers[:] = [h for h in headers if h[0].lower() == b"x-forwarded-for"]


# Looked up once: a labelled child's lookup takes a lock on every call.
_CACHE_HIT = metrics.GRAPHQL_RESPONSE_CACHE.labels("hit")
_CACHE_MISS = metrics.GRAPHQL_RESPONSE_CACHE.labels("miss")

# The answer size limit of the request being answered (set in process_result,
# read in encode_json, both run by the request's task); 0 is no limit.
_MAX_RESPONSE_BYTES: ContextVar[int] = ContextVar("max_response_bytes", default=0)


class _WrongOperation(Exception):
    """The operation's type cannot be sent with the request's method."""


def _refusal(
    code: str, message: str, status: int, headers: dict[str, str] | None = None
) -> Response:
    """An answer with one error and no `data`, in the negotiated media type."""
    error = {"message": message, "extensions": {"code": code}}
    return JSONResponse(
        {"errors": [error]},
        status_code=status,
        media_type=ANSWER_TYPE.get(),
        headers=headers,
    )


def _cache_headers(request: Request, response: Response) -> None:
    """A public query's answer to a GET may be kept by a proxy for a second;
    any other answer to a GET is private (Vary: the media type and the token)."""
    public = (
        response.status_code == 200
        and "authorization" not in request.headers
        and isinstance(response.body, bytes)
        and b'"errors"' not in response.body
        and public_query(_as_body(request), max_tokens=None) is not None
    )
    seconds = request.app.state.runtime.settings.response_cache_seconds
    response.headers["cache-control"] = get_cache_control(
        public=public, max_age=seconds
    )
    response.headers.append("vary", "Accept, Authorization")


def _as_body(request: Request) -> bytes:
    """A GET's query parameters as the JSON body a POST would send."""
    params = request.query_params
    return json.dumps(
        {"query": params.get("query"), "operationName": params.get("operationName")}
    ).encode()


def _may_share_answer(request: Request) -> bool:
    """A JSON POST: the only requests whose answers are kept. A token does not
    matter: the public root fields never read the caller (a test keeps it so),
    but where one hidden from the public is concerned (Context.answer_is_personal)."""
    return request.method == "POST" and request.headers.get(
        "content-type", ""
    ).startswith("application/json")
