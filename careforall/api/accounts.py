"""Account mutations of contract 0.3: ending tokens, passwords (changed, or
reset through a mailed link), verified addresses, the profile and deleting
the account."""

from __future__ import annotations

import strawberry

from careforall.api.resolvers import signed_in, write
from careforall.api.types import AuthPayload, Info, User
from careforall.services import auth, erasure, profile, recovery, verification


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

    @strawberry.mutation(
        description="Mails a reset link (valid 1 hour, once) when the address "
        "has an account; always true, so nobody learns whether it has."
    )
    async def request_password_reset(self, info: Info, email: str) -> bool:
        asked: bool = await write(info, recovery.request_password_reset, email=email)
        return asked

    @strawberry.mutation(
        description="Sets a new password with the token of a reset link; every "
        "earlier token of the user stops working, the answer holds a fresh one."
    )
    async def reset_password(
        self, info: Info, token: str, new_password: str
    ) -> AuthPayload:
        return await signed_in(
            info, recovery.reset_password, token=token, new_password=new_password
        )

    @strawberry.mutation(
        description="Signed-in users: mails a link that verifies the address "
        "(true without a mail when it is verified already)."
    )
    async def request_email_verification(self, info: Info) -> bool:
        asked: bool = await write(info, verification.request_email_verification)
        return asked

    @strawberry.mutation(
        description="Verifies the address with the token of a verification "
        "link (valid 24 hours, once); donations given as a guest with that "
        "address join the account."
    )
    async def verify_email(self, info: Info, token: str) -> User:
        row = await write(info, verification.verify_email, token=token)
        return User.from_model(row)

    @strawberry.mutation(
        description="Signed-in users: changes only the fields given. A new "
        "email is not verified until the link mailed to it is opened; the old "
        "address is told of the change."
    )
    async def update_profile(
        self, info: Info, name: str | None = None, email: str | None = None
    ) -> User:
        row = await write(info, profile.update_profile, name=name, email=email)
        return User.from_model(row)

    @strawberry.mutation(
        description="Signed-in users: erases the account (name, email, "
        "password, every token); donations stay, anonymised, so totals are "
        "unchanged. The last admin account cannot be deleted."
    )
    async def delete_account(self, info: Info, password: str) -> bool:
        deleted: bool = await write(info, erasure.delete_account, password=password)
        return deleted
