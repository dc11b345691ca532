"""The steps resolvers share: a write service run as the caller, a service that
issues a token, a read in a worker thread, and a page of a read service handed
back as a connection.

Strawberry runs a sync resolver on the event loop's thread, so a resolver that
reads the database is async and reads through `read`: the loop goes on
serving other requests (and /healthz) meanwhile. The one exception is
`campaignTotals`, a single indexed row read in about 50 µs, less than the hop
to a thread costs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlmodel import Session

from careforall.api.pagination import Connection, connection, page_size
from careforall.api.types import AuthPayload, Info, User
from careforall.concurrency import in_thread
from careforall.domain.rules import Principal
from careforall.services.auth import AuthResult
from careforall.services.pagination import Page

M = TypeVar("M")
R = TypeVar("R")
T = TypeVar("T")


async def write(info: Info, service: Callable[..., R], **kwargs: object) -> R:
    """Run a write service for the caller in a unit of work of its own, off the
    event loop."""
    rt = info.context.runtime
    principal = info.context.principal
    return await rt.write(service, rt.uow(), principal=principal, **kwargs)


async def read(info: Info, service: Callable[[Session], R]) -> R:
    """Run a read in a session of its own, in a worker thread."""
    db = info.context.runtime.db

    def run() -> R:
        with db.read() as session:
            return service(session)

    return await in_thread(run)


async def read_as_caller(
    info: Info, service: Callable[[Session, Principal | None], R]
) -> R:
    """`read`, given the caller too: a token is checked (a read of its own) in
    the worker thread as well."""
    context = info.context
    return await read(info, lambda session: service(session, context.principal))


async def read_page(
    info: Info,
    service: Callable[..., Page[M]],
    node: Callable[[M], T],
    first: int | None,
    after: str | None,
    **filters: object,
) -> Connection[T]:
    """One page of what the caller may see (`first`: the contract's default for
    null), each row mapped by `node`."""
    size = page_size(first)
    page = await read_as_caller(
        info,
        lambda session, principal: service(
            session, principal=principal, first=size, after=after, **filters
        ),
    )
    return connection(page, node)


async def signed_in(
    info: Info, service: Callable[..., AuthResult], **kwargs: object
) -> AuthPayload:
    """Run a service that issues a token, and answer with it."""
    rt = info.context.runtime
    result = await rt.write(service, rt.uow(), keys=rt.keys, **kwargs)
    return AuthPayload(
        token=result.token,
        user=User.from_model(result.user) if result.user is not None else None,
        anonymous=result.anonymous,
    )
