"""The notification feed: the caller's notifications, their unread count,
marking read, and a subscription that pushes new ones.

Every field is the caller's own: a user's, or an anonymous session's (a
guest hears about their own donations, and keeps those notifications when
they register). Without a token each one is UNAUTHENTICATED.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from datetime import datetime
from functools import partial

import strawberry

from careforall import models
from careforall.api.mapping import from_attributes, optional_id
from careforall.api.pagination import Connection
from careforall.api.resolvers import read_as_caller, read_page, write
from careforall.api.sockets import subscription_slot
from careforall.api.types import Info
from careforall.collector import open_subscription
from careforall.concurrency import in_thread
from careforall.domain.notifications import NotificationKind
from careforall.domain.rules import require_principal
from careforall.services import notifications
from careforall.services.notifications import ReadResult

strawberry.enum(NotificationKind)

# The most notifications one subscription message carries.
PUSH_LIMIT = 50


@strawberry.type(
    description="A message for one person about their donations, "
    "campaigns or (admins) the service."
)
class Notification:
    id: strawberry.ID
    kind: NotificationKind
    title: str
    body: str
    pledge_id: strawberry.ID | None = strawberry.field(
        description="The pledge it is about (a donor's receipt; an organiser "
        "cannot open someone else's pledge)."
    )
    campaign_id: strawberry.ID | None
    created_at: datetime
    read_at: datetime | None = strawberry.field(description="Null while unread.")

    @classmethod
    def from_model(cls, row: models.Notification) -> Notification:
        return from_attributes(
            cls,
            row,
            kind=NotificationKind(row.kind),
            pledge_id=optional_id(row.pledge_id),
            campaign_id=optional_id(row.campaign_id),
        )


@strawberry.type
class NotificationsRead:
    marked: int = strawberry.field(description="How many were unread until now.")
    unread_count: int


@strawberry.type
class NotificationUpdate:
    unread_count: int
    notifications: list[Notification] = strawberry.field(
        description=f"New since the previous message, newest first (at most "
        f"{PUSH_LIMIT}; the `notifications` query has the rest). The first "
        "message has none: it carries the unread count."
    )


@strawberry.type
class NotificationQuery:
    @strawberry.field(description="The caller's notifications, newest first.")
    async def notifications(
        self,
        info: Info,
        first: int | None = 20,
        after: str | None = None,
        unread_only: bool = False,
    ) -> Connection[Notification]:
        return await read_page(
            info,
            notifications.feed,
            Notification.from_model,
            first,
            after,
            unread_only=unread_only,
        )

    @strawberry.field(description="How many of the caller's notifications are unread.")
    async def unread_notification_count(self, info: Info) -> int:
        return await read_as_caller(
            info,
            lambda session, principal: notifications.unread_count(
                session, principal=principal
            ),
        )


async def _marked(
    info: Info, service: Callable[..., ReadResult], **kwargs: object
) -> NotificationsRead:
    """Run a marking service; the caller's other subscriptions hear the count."""
    result = await write(info, service, **kwargs)
    info.context.notifications.touch(require_principal(info.context.principal).scope)
    return from_attributes(NotificationsRead, result)


@strawberry.type
class NotificationMutation:
    @strawberry.mutation(
        description="Mark some of the caller's notifications read (up to 100). "
        "All or nothing: someone else's id is FORBIDDEN, an unknown one NOT_FOUND."
    )
    async def mark_notifications_read(
        self, info: Info, ids: list[strawberry.ID]
    ) -> NotificationsRead:
        return await _marked(info, notifications.mark_read, ids=[str(i) for i in ids])

    @strawberry.mutation(
        description="Mark all the caller's notifications read; with `upTo`, only "
        "those up to that id (the newest the client has shown)."
    )
    async def mark_all_notifications_read(
        self, info: Info, up_to: strawberry.ID | None = None
    ) -> NotificationsRead:
        up_to_id = str(up_to) if up_to is not None else None
        return await _marked(info, notifications.mark_all_read, up_to=up_to_id)


@strawberry.type
class NotificationSubscription:
    @strawberry.subscription(
        description="The caller's unread count at once, then each new "
        "notification (and each change of the count, e.g. read elsewhere)."
    )
    async def notification_updates(
        self, info: Info
    ) -> AsyncGenerator[NotificationUpdate, None]:
        ctx = info.context
        me = require_principal(ctx.principal)
        db = ctx.runtime.db
        cap = ctx.runtime.settings.ws_max_subscriptions
        # Subscribe before reading, so nothing falls between the two.
        async with (
            subscription_slot(ctx.request, cap),
            ctx.notifications.subscribe(me.scope) as subscriber,
        ):

            def first_read() -> tuple[str | None, int]:
                with db.read() as session:
                    latest = notifications.latest_id(session)
                    return latest, notifications.unread_count(session, principal=me)

            def news(after: str | None) -> tuple[list[models.Notification], int]:
                # Ends the subscription with UNAUTHENTICATED after a logout,
                # a password change or an erased account.
                ctx.still_signed_in()
                with db.read() as session:
                    rows = notifications.newer_than(
                        session, principal=me, after_id=after, limit=PUSH_LIMIT
                    )
                    return list(rows), notifications.unread_count(session, principal=me)

            seen, count = await in_thread(first_read)
            ctx.notifications.watch_from(seen)
            with open_subscription():
                yield NotificationUpdate(unread_count=count, notifications=[])
                while True:
                    await subscriber.next()
                    rows, fresh = await in_thread(partial(news, seen))
                    if rows:
                        seen = max(seen or "", rows[0].id)
                    if rows or fresh != count:
                        count = fresh
                        yield NotificationUpdate(
                            unread_count=count,
                            notifications=[Notification.from_model(r) for r in rows],
                        )
