"""Strawberry's WebSocket handlers (graphql-transport-ws and the older
graphql-ws), keeping less for each socket, and serving known public
subscriptions once for every socket that asks (api/fanout.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import (
    BaseGraphQLWSHandler,
)

from careforall.api.fanout import Fanout, Member, Outlet, shared_key
from careforall.domain.errors import RateLimited

if TYPE_CHECKING:
    from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
        ConnectionInitMessage,
        SubscribeMessage,
    )
    from strawberry.subscriptions.protocols.graphql_ws.types import StartMessage


class _Sharing:
    """What both handlers need to put an operation in a shared group."""

    view: Any
    websocket: Any
    _outlet: Outlet | None = None

    def _join(
        self, operation_id: str, payload: object, *, legacy: bool, on_end: Any
    ) -> Member | None:
        """The operation's place in its group; None: not a shared one (or the
        app is at its cap: Strawberry's path refuses it as usual)."""
        fanout: Fanout | None = getattr(self.view, "fanout", None)
        if fanout is None:
            return None
        socket = self.websocket.ws
        settings = socket.app.state.runtime.settings
        key = shared_key(payload, settings.graphql_max_tokens)
        if key is None:
            return None
        if self._outlet is None:
            self._outlet = Outlet(socket)
        member = Member(self._outlet, operation_id, legacy=legacy, on_end=on_end)
        try:
            fanout.join(key, member, socket, settings.ws_max_subscriptions)
        except RateLimited:
            return None
        return member

    def _leave(self, member: Member) -> None:
        self.view.fanout.leave(member)

    def _close_outlet(self) -> None:
        if self._outlet is not None:
            self._outlet.close()


class _SharedOperation(Operation[Any, None]):
    """A graphql-transport-ws operation served by a shared group (no task)."""

    __slots__ = ("member",)
    member: Member


class TransportWSHandler(_Sharing, BaseGraphQLTransportWSHandler[Any, None]):
    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        if self.connection_init_received:
            # Cancelled by now. Held, the finished task kept its cancellation,
            # traceback and frames (about 2 KB) for as long as the socket.
            self.connection_init_timeout_task = None

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        operation_id = message["id"]
        limit = self.max_subscriptions_per_connection
        if (
            self.connection_acknowledged
            and operation_id not in self.operations
            and (limit is None or len(self.operations) < limit)
        ):
            payload = message["payload"]
            member = self._join(operation_id, payload, legacy=False, on_end=self._ended)
            if member is not None:
                # Its group has the document and variables it needs.
                operation = _SharedOperation(self, operation_id, "", None, None)
                operation.member = member
                self.operations[operation_id] = operation
                _let_go(message)
                return
        await super().handle_subscribe(message)

    def _ended(self, operation_id: str) -> None:
        # Its group sent the last frame: the id may be used again.
        self.operations.pop(operation_id, None)

    async def cleanup_operation(self, operation_id: str) -> None:
        operation = self.operations.get(operation_id)
        if isinstance(operation, _SharedOperation):
            del self.operations[operation_id]
            self._leave(operation.member)
            return
        await super().cleanup_operation(operation_id)

    async def shutdown(self) -> None:
        await super().shutdown()
        self._close_outlet()


class GraphQLWSHandler(_Sharing, BaseGraphQLWSHandler[Any, None]):
    """The older graphql-ws protocol: the same sharing, its own message names."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shared: dict[str, Member] = {}

    async def handle_start(self, message: StartMessage) -> None:
        operation_id = message["id"]
        if operation_id in self.shared or operation_id in self.tasks:
            await self.cleanup_operation(operation_id)
        limit = self.max_subscriptions_per_connection
        if self.connection_acknowledged and (
            limit is None or len(self.tasks) + len(self.shared) < limit
        ):
            member = self._join(
                operation_id, message["payload"], legacy=True, on_end=self._ended
            )
            if member is not None:
                self.shared[operation_id] = member
                _let_go(message)
                return
        await super().handle_start(message)

    def _ended(self, operation_id: str) -> None:
        self.shared.pop(operation_id, None)

    async def cleanup_operation(self, operation_id: str) -> None:
        member = self.shared.pop(operation_id, None)
        if member is None:
            await super().cleanup_operation(operation_id)
            return
        self._leave(member)
        # As Strawberry does for a stopped operation of this protocol.
        member.outlet.offer(operation_id, member.frame("complete"), final=True)

    async def cleanup(self) -> None:
        for operation_id in list(self.shared):
            member = self.shared.pop(operation_id)
            self._leave(member)
        self._close_outlet()
        await super().cleanup()


def _let_go(message: Any) -> None:
    """Empty a handled message in place: Strawberry's loop over the socket's
    messages holds the last one (its document and variables, about 1 KB)
    until the next arrives, which on a watching page is never."""
    message.clear()
