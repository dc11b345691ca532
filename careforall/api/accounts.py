"""Account mutations of contract 0.3: ending tokens and changing a password."""

from __future__ import annotations

import strawberry

from careforall.api.resolvers import signed_in, write
from careforall.api.types import AuthPayload, Info
from careforall.services import auth


@strawberry.type
class AccountMutation:
    @strawberry.mutation(
        description="The token sent stops working (and every other token of "
        "the same account or anonymous session)."
    )
    async def logout(self, info: Info) -> bool:
        ended: bool = await write(info, auth.logout)
        return ended

    @strawberry.mutation(
        description="Signed-in users: every earlier token of the user stops "
        "working; the answer holds a fresh one."
    )
    async def change_password(
        self, info: Info, current_password: str, new_password: str
    ) -> AuthPayload:
        return await signed_in(
            info,
            auth.change_password,
            principal=info.context.principal,
            current_password=current_password,
            new_password=new_password,
        )
