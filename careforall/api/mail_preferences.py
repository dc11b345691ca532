"""Query.mailPreferences and Mutation.updateMailPreferences: which optional
mails the signed-in user wants (additions to the contract, in contract.md)."""

from __future__ import annotations

import strawberry

from careforall.api.resolvers import read_as_caller, write
from careforall.api.types import Info
from careforall.services import mail_preferences as service
from careforall.services.mail_preferences import MailChoice


@strawberry.type(description="Which optional mails the user wants; all true at first.")
class MailPreferences:
    donation_digest: bool = strawberry.field(
        description="An organiser's hourly digest of new donations."
    )
    goal_reached: bool = strawberry.field(
        description="The organiser's mail when a campaign reaches its goal."
    )
    campaign_updates: bool = strawberry.field(
        description="Updates posted to campaigns I gave to."
    )

    @classmethod
    def of(cls, found: service.Preferences) -> MailPreferences:
        return cls(
            donation_digest=found.donation_digest,
            goal_reached=found.goal_reached,
            campaign_updates=found.campaign_updates,
        )


@strawberry.input(description="Only the fields given change.")
class MailPreferencesInput:
    donation_digest: bool | None = None
    goal_reached: bool | None = None
    campaign_updates: bool | None = None

    def changes(self) -> dict[MailChoice, bool]:
        given = {
            MailChoice.DONATION_DIGEST: self.donation_digest,
            MailChoice.GOAL_REACHED: self.goal_reached,
            MailChoice.CAMPAIGN_UPDATES: self.campaign_updates,
        }
        return {choice: value for choice, value in given.items() if value is not None}


@strawberry.type
class MailPreferencesQuery:
    @strawberry.field(description="Signed-in users: the optional mails I want.")
    async def mail_preferences(self, info: Info) -> MailPreferences:
        found = await read_as_caller(
            info,
            lambda session, principal: service.mail_preferences(
                session, principal=principal
            ),
        )
        return MailPreferences.of(found)


@strawberry.type
class MailPreferencesMutation:
    @strawberry.mutation(
        description="Signed-in users: turn optional mails on or off; "
        "unsubscribe links in mails turn one off without signing in."
    )
    async def update_mail_preferences(
        self, info: Info, input: MailPreferencesInput
    ) -> MailPreferences:
        found = await write(
            info, service.update_mail_preferences, changes=input.changes()
        )
        return MailPreferences.of(found)
