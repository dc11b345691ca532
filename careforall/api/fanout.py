"""Known public subscriptions, run once for every socket that asks for them.

A viral campaign page holds thousands of campaignTotals subscriptions on one
campaign, all asking the same document with the same variables and all
getting the same answer: the field never reads the caller. Run one by one,
each held Strawberry's and graphql-core's machinery for its life (an
operation task, streaming generators, an executor and the resolver's
generator: about 20 KB) and executed, encoded and sent every change on its
own, one after the other.

Here such an operation joins a `Group`, one per document, operation name and
variables: one task runs the subscription through the schema as any other
(the same validation, limits, extensions and errors) and encodes each result
once; each member gets those bytes in a frame carrying its own operation id.
A socket's frames go out through its `Outlet`: written at once while the
socket takes writes, else by a task that runs only while there is something
to send, so a socket that does not read holds up no one:
its unsent pushes are replaced by newer ones (as the broadcaster's
subscribers skip values they missed), and its other frames wait their turn.

Only documents whose one root field is campaignTotals are shared
(`shared_key`); anything else, or any doubt, takes Strawberry's own path.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from graphql import FieldNode, GraphQLError, OperationType, get_operation_ast
from starlette.websockets import WebSocket
from strawberry.types.execution import ExecutionResult, PreExecutionError
from strawberry.utils.aio import aclosing

from careforall import collector
from careforall.api.caching import KNOWN
from careforall.ws_protocol import SEND_TEXT_NOW

log = logging.getLogger("careforall.subscriptions")

# Root fields whose answer is the same for every caller.
PUBLIC_FIELDS = frozenset({"campaignTotals"})

GroupKey = tuple[str, str | None, str]


def shared_key(payload: object, max_tokens: int | None) -> GroupKey | None:
    """The group of a subscribe message's payload, when it asks for a known
    public subscription; None sends it down Strawberry's own path (which also
    reports whatever is wrong with it)."""
    if not isinstance(payload, Mapping):
        return None
    query = payload.get("query")
    name = payload.get("operationName")
    variables = payload.get("variables")
    if (
        not isinstance(query, str)
        # No directive at all: nothing deferred, streamed or left out.
        or "@" in query
        or not (name is None or isinstance(name, str))
        or not (variables is None or isinstance(variables, dict))
    ):
        return None
    try:
        known = KNOWN.get(query, max_tokens)
    except GraphQLError:
        return None
    if not known.remember(("shared", name), lambda: _public(known.document, name)):
        return None
    try:
        encoded = json.dumps(variables or {}, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return query, name, encoded


def _public(document: Any, name: str | None) -> bool:
    """One subscription operation (the one named), one root field, public."""
    if any(d.kind == "fragment_definition" for d in document.definitions):
        return False
    operation = get_operation_ast(document, name)
    if operation is None or operation.operation != OperationType.SUBSCRIPTION:
        return False
    roots = operation.selection_set.selections
    return (
        len(roots) == 1
        and isinstance(roots[0], FieldNode)
        and roots[0].name.value in PUBLIC_FIELDS
    )


class Outlet:
    """One socket's frames from the groups it is in. Written at once when
    nothing waits and the server can (careforall/ws_protocol.py); else sent
    in order by a task that runs only while any wait. An unsent push is
    replaced by a newer one of the same operation; a final frame (an error,
    `complete`) never is."""

    __slots__ = ("_pending", "_task", "socket")

    def __init__(self, socket: WebSocket) -> None:
        self.socket = socket
        # Operation id -> its frames waiting, each with "may be replaced".
        self._pending: dict[str, list[tuple[str, bool]]] | None = None
        self._task: asyncio.Task[None] | None = None

    def offer(self, operation_id: str, frame: str, *, final: bool = False) -> None:
        if self._pending is None:
            if self._task is None:
                extensions = self.socket.scope.get("extensions") or {}
                send_now = extensions.get(SEND_TEXT_NOW)
                if send_now is not None and send_now(frame):
                    return  # written: nothing was waiting before it
            self._pending = {}
        waiting = self._pending.setdefault(operation_id, [])
        if waiting and waiting[-1][1] and not final:
            waiting[-1] = (frame, True)
        else:
            waiting.append((frame, not final))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())

    def forget(self, operation_id: str) -> None:
        """Drop an operation's frames that are still waiting."""
        if self._pending is not None:
            self._pending.pop(operation_id, None)

    def close(self) -> None:
        self._pending = None
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _drain(self) -> None:
        try:
            while self._pending:
                operation_id = next(iter(self._pending))
                for frame, _ in self._pending.pop(operation_id):
                    await self.socket.send_text(frame)
        except Exception:  # noqa: BLE001 - a closed socket: its handler ends it
            self._pending = None
        finally:
            if self._task is asyncio.current_task():
                self._task = None
            if not self._pending:
                self._pending = None


class Member:
    """One socket's operation in a group: how its frames are made, and its
    place among the app's open subscriptions while it is in."""

    __slots__ = ("_id", "group", "legacy", "on_end", "outlet", "operation_id")

    def __init__(
        self, outlet: Outlet, operation_id: str, *, legacy: bool, on_end: Any
    ) -> None:
        self.outlet = outlet
        self.operation_id = operation_id
        self._id = json.dumps(operation_id)
        self.legacy = legacy  # graphql-ws's message names, else graphql-transport-ws
        self.on_end = on_end  # called with the operation id when the group ends it
        self.group: Group | None = None

    def frame(self, kind: str, payload: str | None = None) -> str:
        if kind == "next" and self.legacy:
            kind = "data"
        body = f'{{"id":{self._id},"type":"{kind}"'
        return body + ("}" if payload is None else f',"payload":{payload}}}')


class Group:
    """The members of one shared subscription and the task that runs it."""

    def __init__(self, fanout: Fanout, key: GroupKey) -> None:
        self.fanout = fanout
        self.key = key
        self.members: dict[Member, None] = {}
        self.latest: str | None = None  # the newest result's payload, encoded
        self.task: asyncio.Task[None] | None = None

    def push(self, payload: str) -> None:
        self.latest = payload
        for member in self.members:
            member.outlet.offer(member.operation_id, member.frame("next", payload))

    def end(
        self, kind: str, payload: str | None = None, legacy_payload: str | None = None
    ) -> None:
        """Send each member a final frame and let them all go (graphql-ws
        members get `legacy_payload`: that protocol's error has one error)."""
        self.fanout.drop(self)
        members, self.members = list(self.members), {}
        for member in members:
            final = legacy_payload if member.legacy else payload
            member.outlet.offer(
                member.operation_id, member.frame(kind, final), final=True
            )
            self.fanout.release(member)
            member.on_end(member.operation_id)


class Fanout:
    """The shared subscriptions of one app, by group key."""

    def __init__(self, view: Any) -> None:
        self.view = view
        self.groups: dict[GroupKey, Group] = {}

    def join(self, key: GroupKey, member: Member, socket: WebSocket, cap: int) -> None:
        """Add `member` to its group, started if new; raises RATE_LIMITED
        (domain error) when the app has `cap` subscriptions open."""
        # Imported here: sockets reads client_address from ratelimit, which
        # imports the view that imports this module.
        from careforall.api.sockets import socket_limits, take_subscription

        take_subscription(socket_limits(socket.app), cap)
        collector.open_subscription().__enter__()
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(self, key)
            group.task = asyncio.create_task(self._run(group, socket))
        group.members[member] = None
        member.group = group
        if group.latest is not None:
            member.outlet.offer(member.operation_id, member.frame("next", group.latest))

    def leave(self, member: Member) -> None:
        """`member` stops (its client completed it, or its socket closed)."""
        group = member.group
        if group is None:
            return
        del group.members[member]
        member.outlet.forget(member.operation_id)
        self.release(member)
        if not group.members:
            self.drop(group)
            if group.task is not None:
                group.task.cancel()

    def release(self, member: Member) -> None:
        """Give back the member's place among the open subscriptions."""
        from careforall.api.sockets import socket_limits

        if member.group is None:
            return
        member.group = None
        socket_limits(member.outlet.socket.app).subscriptions -= 1
        collector.open_subscription().__exit__(None, None, None)

    def drop(self, group: Group) -> None:
        if self.groups.get(group.key) is group:
            del self.groups[group.key]

    async def _run(self, group: Group, socket: WebSocket) -> None:
        query, name, variables = group.key
        view = self.view
        try:
            context = await view.get_context(socket, None)
            context.token = None  # the answer is the same for anyone
            context.shared = True
            source = await view.schema.subscribe(
                query,
                variable_values=json.loads(variables),
                context_value=context,
                operation_name=name,
            )
            async with aclosing(source):
                first = True
                async for result in source:
                    if first and isinstance(result, PreExecutionError):
                        errors = [e.formatted for e in result.errors or ()]
                        group.end(
                            "error",
                            view.encode_json(errors),
                            legacy_payload=view.encode_json(errors[0]),
                        )
                        return
                    first = False
                    if isinstance(result, ExecutionResult):
                        group.push(view.encode_json(_payload(result)))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("a shared subscription failed")
        group.end("complete")


def _payload(result: ExecutionResult) -> dict[str, Any]:
    """A `next` message's payload, as Strawberry writes it."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [e.formatted for e in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    return payload
