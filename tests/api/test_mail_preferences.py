"""Mail preferences: each user reads and changes their optional mails; an
unsubscribe link turns one off without signing in, by its page's button or by
a mail client's one-click POST, while a GET changes nothing and an altered
link is refused."""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import select
from starlette.testclient import TestClient

from careforall.models import CampaignOptOut, Pledge
from careforall.services.mail_preferences import (
    MailChoice,
    campaign_unsubscribe_token,
    unsubscribe_key,
    unsubscribe_token,
)
from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.smtp import MailServer
from tests.helpers.waiting import wait_until

PREFERENCES = "{ mailPreferences { donationDigest goalReached campaignUpdates } }"
UPDATE = """mutation($input: MailPreferencesInput!) {
  updateMailPreferences(input: $input) { donationDigest goalReached campaignUpdates }
}"""

ALL_ON = {"donationDigest": True, "goalReached": True, "campaignUpdates": True}


def link_token(client: TestClient, user_id: str, choice: MailChoice) -> str:
    key = unsubscribe_key(client.app.state.runtime.keys.secret)  # type: ignore[attr-defined]
    return unsubscribe_token(key, user_id, choice)


def preferences(gql: GQL, token: str) -> dict[str, bool]:
    found: dict[str, bool] = gql.ok(PREFERENCES, token=token)["mailPreferences"]
    return found


def test_every_optional_mail_is_on_until_the_user_changes_one(
    client: TestClient,
) -> None:
    gql = GQL(client)
    user, other = f.register(gql), f.register(gql)
    assert preferences(gql, user.token) == ALL_ON

    changed = gql.ok(UPDATE, {"input": {"goalReached": False}}, user.token)
    assert changed["updateMailPreferences"] == {**ALL_ON, "goalReached": False}
    gql.ok(
        UPDATE, {"input": {"donationDigest": False, "goalReached": None}}, user.token
    )
    assert preferences(gql, user.token) == {
        "donationDigest": False,
        "goalReached": False,
        "campaignUpdates": True,
    }
    gql.ok(UPDATE, {"input": {"goalReached": True}}, user.token)
    assert preferences(gql, user.token)["goalReached"] is True
    assert preferences(gql, other.token) == ALL_ON  # one user's choice only


def test_preferences_are_for_signed_in_users(client: TestClient) -> None:
    gql = GQL(client)
    assert gql.code(PREFERENCES) == "UNAUTHENTICATED"
    assert gql.code(PREFERENCES, token=f.anonymous(gql)) == "UNAUTHENTICATED"
    assert (
        gql.code(UPDATE, {"input": {"goalReached": False}}, f.anonymous(gql))
        == "UNAUTHENTICATED"
    )


def test_a_get_of_the_link_shows_a_confirmation_and_changes_nothing(
    client: TestClient,
) -> None:
    gql = GQL(client)
    user = f.register(gql)
    token = link_token(client, user.id, MailChoice.DONATION_DIGEST)

    for _ in range(2):  # a mail scanner, then the person
        page = client.get("/unsubscribe", params={"token": token})
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert page.headers["cache-control"] == "no-store"
        assert "digest of new donations" in page.text
        assert '<form method="post" action="/unsubscribe?token=' in page.text
        # Nothing inline: the app's Content-Security-Policy holds as it is.
        assert "<script" not in page.text and "style=" not in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
    assert preferences(gql, user.token) == ALL_ON


def test_the_page_button_unsubscribes(client: TestClient) -> None:
    gql = GQL(client)
    user = f.register(gql)
    token = link_token(client, user.id, MailChoice.GOAL_REACHED)

    done = client.post("/unsubscribe", params={"token": token})
    assert done.status_code == 200 and "no longer receive" in done.text
    assert preferences(gql, user.token) == {**ALL_ON, "goalReached": False}
    again = client.post("/unsubscribe", params={"token": token})
    assert again.status_code == 200  # twice is the same as once


def test_a_one_click_post_unsubscribes_without_the_page(client: TestClient) -> None:
    gql = GQL(client)
    user = f.register(gql)
    token = link_token(client, user.id, MailChoice.CAMPAIGN_UPDATES)

    # RFC 8058: the mail client POSTs this body to the List-Unsubscribe URL.
    done = client.post(
        f"/unsubscribe?token={token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200
    assert preferences(gql, user.token) == {**ALL_ON, "campaignUpdates": False}


def test_an_altered_link_is_refused_and_changes_nothing(client: TestClient) -> None:
    gql = GQL(client)
    user, victim = f.register(gql), f.register(gql)
    token = link_token(client, user.id, MailChoice.DONATION_DIGEST)
    payload, _, mac = token.partition(".")
    other = link_token(client, victim.id, MailChoice.DONATION_DIGEST)
    other_payload = other.split(".")[0]
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    forged = [
        f"{other_payload}.{mac}",  # someone else, with this link's signature
        f"{payload}.{flipped}",
        payload,
        "",
        "not-a-token",
        f"{payload}.{mac}!!",
    ]
    for bad in forged:
        for method in ("GET", "POST"):
            answer = client.request(method, "/unsubscribe", params={"token": bad})
            assert answer.status_code == 400, (bad, method)
            assert "not valid" in answer.text
    assert preferences(gql, user.token) == ALL_ON
    assert preferences(gql, victim.token) == ALL_ON


def test_the_link_in_a_received_mail_unsubscribes_by_one_click(
    app_factory: Callable[..., TestClient], mail_server: MailServer
) -> None:
    """The goal-reached mail, through the running app to a real SMTP server:
    its link's page changes nothing; the mail client's one-click POST to the
    List-Unsubscribe address turns the mail off."""
    client = app_factory(smtp=mail_server.smtp, public_url="https://give.example")
    gql = GQL(client)
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token, goalCents=2_000)
    donor = f.register(gql)
    pledge = f.pledge(gql, donor.token, campaign["id"], amount=2_500)
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor.token)

    wait_until(
        lambda: any("reached its goal" in m["Subject"] for m in mail_server.messages)
    )
    [goal] = [m for m in mail_server.messages if "reached its goal" in m["Subject"]]
    assert goal["To"] == organiser.email
    url = goal["List-Unsubscribe"].strip("<>")
    assert url.startswith("https://give.example/unsubscribe?token=")
    assert goal["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text = goal.get_body(("plain",))
    assert text is not None and url in text.get_content()
    path = url.removeprefix("https://give.example")

    assert client.get(path).status_code == 200
    assert preferences(gql, organiser.token) == ALL_ON
    one_click = client.post(
        path,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert one_click.status_code == 200
    assert preferences(gql, organiser.token) == {**ALL_ON, "goalReached": False}


def test_a_guest_asks_for_updates_and_its_link_stops_them_without_an_account(
    client: TestClient,
) -> None:
    """`PledgeInput.campaignUpdates` is stored (off unless asked, and part of
    what an idempotency key compares); a campaign update's link names the
    address and the campaign, and a guest with no account can use it."""
    gql = GQL(client)
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    guest = f.anonymous(gql)
    asked = f.pledge(
        gql,
        guest,
        campaign["id"],
        donorEmail="guest@example.org",
        campaignUpdates=True,
        idempotencyKey="same-key",
    )
    silent = f.pledge(gql, guest, campaign["id"], donorEmail="guest@example.org")
    replayed = gql(
        f.CREATE_PLEDGE,
        {
            "input": {
                "campaignId": campaign["id"],
                "amountCents": 2500,
                "currency": "USD",
                "idempotencyKey": "same-key",
                "donorEmail": "guest@example.org",
            }
        },
        guest,
    )
    assert replayed["errors"][0]["extensions"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    with runtime.db.read() as session:
        stored = {
            p.id: p.campaign_updates
            for p in session.exec(
                select(Pledge).where(Pledge.campaign_id == campaign["id"])
            )
        }
    assert stored == {asked["id"]: True, silent["id"]: False}

    key = unsubscribe_key(runtime.keys.secret)
    token = campaign_unsubscribe_token(key, campaign["id"], "guest@example.org")
    page = client.get("/unsubscribe", params={"token": token})
    assert page.status_code == 200 and "this campaign&#x27;s updates" in page.text
    for _ in range(2):
        done = client.post("/unsubscribe", params={"token": token})
        assert done.status_code == 200 and "no longer receive" in done.text
    with runtime.db.read() as session:
        out = session.exec(select(CampaignOptOut)).all()
    assert [(o.campaign_id, o.address) for o in out] == [
        (campaign["id"], "guest@example.org")
    ]
