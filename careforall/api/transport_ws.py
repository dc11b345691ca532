"""Strawberry's graphql-transport-ws handler, keeping less for each socket."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)

if TYPE_CHECKING:
    from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
        ConnectionInitMessage,
    )


class TransportWSHandler(BaseGraphQLTransportWSHandler[Any, None]):
    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        if self.connection_init_received:
            # Cancelled by now. Held, the finished task kept its cancellation,
            # traceback and frames (about 2 KB) for as long as the socket.
            self.connection_init_timeout_task = None
