"""The steps resolvers share: a write service run as the caller, a service that
issues a token, and a page of a read service handed back as a connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from careforall.api.pagination import Connection, connection, page_size
from careforall.api.types import AuthPayload, Info, User
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


def read_page(
    info: Info,
    service: Callable[..., Page[M]],
    node: Callable[[M], T],
    first: int | None,
    after: str | None,
    **filters: object,
) -> Connection[T]:
    """One page of what the caller may see (`first`: the contract's default for
    null), each row mapped by `node`."""
    principal = info.context.principal
    with info.context.runtime.db.read() as session:
        page = service(
            session, principal=principal, first=page_size(first), after=after, **filters
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
