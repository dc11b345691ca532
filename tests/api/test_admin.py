"""The admin API: admins only, numbers that match real donations, dead letters
replayed with one effect, every webhook request logged, drift repaired and
pushed, and each admin action audited in the commit of its effect."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, text
from sqlmodel import col, select
from starlette.testclient import TestClient

from careforall.db import Database
from careforall.domain.clock import utcnow
from careforall.domain.events import Event, PledgeStatusChanged
from careforall.models import AuditLog, OutboxEvent, PledgeTransition
from careforall.outbox import handlers
from careforall.services.pagination import encode_cursor
from tests import factories as f
from tests.helpers.api import ADMIN_EMAIL, GQL
from tests.helpers.outbox import settled
from tests.helpers.waiting import wait_until

STATS = """{ adminStats {
  at outboxPending outboxLagSeconds deadLetters webhookRejectsLastHour
  pledgesByStatus { status count amounts { currency amountCents } }
  raisedToday { currency amountCents } raisedTotal { currency amountCents }
} }"""
PLEDGES = """
query($campaignId: ID, $status: PledgeStatus, $from: DateTime, $to: DateTime,
      $first: Int, $after: String) {
  adminPledges(campaignId: $campaignId, status: $status, createdFrom: $from,
               createdTo: $to, first: $first, after: $after) {
    edges { cursor node { id status amountCents campaign { id }
                          history { fromStatus toStatus source } } }
    pageInfo { hasNextPage endCursor }
  }
}"""
DEAD = """query($first: Int, $after: String) {
  deadLetters(first: $first, after: $after) {
    edges { node { id name payload attempts lastError createdAt } }
    pageInfo { hasNextPage endCursor }
  }
}"""
REPLAY = "mutation($id: ID!) { replayDeadLetter(id: $id) }"
REPLAY_ALL = "mutation { replayAllDeadLetters }"
WEBHOOK_LOG = """query($first: Int, $after: String, $outcome: WebhookOutcome) {
  webhookLog(first: $first, after: $after, outcome: $outcome) {
    edges { node { id receivedAt outcome reason statusCode eventId type pledgeId } }
    pageInfo { hasNextPage endCursor }
  }
}"""
RECONCILE = """mutation { reconcileTotals {
  campaignId raisedCentsWas pledgeCountWas raisedCents pledgeCount
} }"""
AUDIT = """query($first: Int, $after: String) {
  auditLog(first: $first, after: $after) {
    edges { node { id at actorId actor { id email } action targetType targetId
                   detail } }
    pageInfo { hasNextPage endCursor }
  }
}"""
SET_STATUS = """mutation($id: ID!, $status: CampaignStatus!) {
  setCampaignStatus(id: $id, status: $status) { id status }
}"""


class Scene:
    """An app, an admin, an organiser's campaign and an anonymous donor."""

    def __init__(self, client: TestClient, currency: str = "USD") -> None:
        self.client = client
        self.gql = GQL(client)
        self.admin = f.admin(self.gql)
        self.organiser = f.register(self.gql)
        self.campaign_id: str = f.campaign(
            self.gql, self.organiser.token, currency=currency
        )["id"]
        self.donor = f.anonymous(self.gql)

    def pledge(self, amount: int, campaign_id: str | None = None) -> dict[str, Any]:
        campaign = campaign_id or self.campaign_id
        currency = self.currency_of(campaign)
        return f.pledge(
            self.gql, self.donor, campaign, amount=amount, currency=currency
        )

    def currency_of(self, campaign_id: str) -> str:
        data = self.gql.ok(
            "query($id: ID!) { campaign(id: $id) { currency } }", {"id": campaign_id}
        )
        currency: str = data["campaign"]["currency"]
        return currency

    def pay(self, pledge: dict[str, Any], method: str = "pm_card_ok") -> str:
        data = self.gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": method}, self.donor)
        status: str = data["authorizePayment"]["status"]
        return status

    def status(self, pledge_id: str) -> str:
        data = self.gql.ok(f.PLEDGE, {"id": pledge_id}, self.admin.token)
        status: str = data["pledge"]["status"]
        return status

    def admin_ok(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        return self.gql.ok(query, variables, self.admin.token)


def audit_rows(db: Database) -> list[AuditLog]:
    with db.read() as session:
        return list(session.exec(select(AuditLog).order_by(col(AuditLog.id))).all())


def nodes(connection: dict[str, Any]) -> list[dict[str, Any]]:
    return [edge["node"] for edge in connection["edges"]]


# --- who may ---------------------------------------------------------------------

ADMIN_DOCUMENTS = {
    "adminStats": (STATS, {}),
    "adminPledges": (PLEDGES, {}),
    "deadLetters": (DEAD, {}),
    "webhookLog": (WEBHOOK_LOG, {}),
    "auditLog": (AUDIT, {}),
    "replayDeadLetter": (REPLAY, {"id": "999999"}),
    "replayAllDeadLetters": (REPLAY_ALL, {}),
    "adminMails": ("{ adminMails { edges { node { id } } } }", {}),
    "replayMail": ("mutation($id: ID!) { replayMail(id: $id) }", {"id": "999999"}),
    "reconcileTotals": (RECONCILE, {}),
}


@pytest.mark.parametrize("field", sorted(ADMIN_DOCUMENTS))
def test_only_an_admin_may_use_an_admin_field(
    field: str, client: TestClient, gql: GQL, db: Database
) -> None:
    query, variables = ADMIN_DOCUMENTS[field]
    donor = f.register(gql)
    anonymous = f.anonymous(gql)

    assert gql.code(query, variables) == "UNAUTHENTICATED"
    assert gql.code(query, variables, "not-a-token") == "UNAUTHENTICATED"
    assert gql.code(query, variables, anonymous) == "UNAUTHENTICATED"
    assert gql.code(query, variables, donor.token) == "FORBIDDEN"
    assert audit_rows(db) == []  # a refused action leaves no trace but the refusal

    body = gql(query, variables, f.admin(gql).token)
    if field in {"replayDeadLetter", "replayMail"}:  # no such event or mail
        assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    else:
        assert "errors" not in body, body
        assert body["data"][field] is not None


# --- stats -----------------------------------------------------------------------


def test_admin_stats_count_real_donations_by_status_and_currency(
    client: TestClient, db: Database
) -> None:
    usd = Scene(client)
    eur = f.campaign(usd.gql, usd.organiser.token, currency="EUR")["id"]
    kept, refunded, declined = usd.pledge(2500), usd.pledge(1000), usd.pledge(700)
    usd.pledge(300)  # stays PENDING
    euro = usd.pledge(4000, eur)
    for pledge in (kept, refunded, euro):
        usd.pay(pledge)
    assert usd.pay(declined, "pm_card_declined") == "FAILED"
    wait_until(lambda: usd.status(refunded["id"]) == "CAPTURED")
    usd.admin_ok(f.REFUND, {"id": refunded["id"]})
    wait_until(lambda: f.totals(usd.gql, usd.campaign_id) == (2500, 1))
    wait_until(lambda: f.totals(usd.gql, eur) == (4000, 1) and settled(db))
    # Two refused webhooks within the hour.
    f.post_webhook(client, f.provider_event(kept, "captured"), secret="wrong")
    f.post_webhook(client, b"not json")

    stats = usd.admin_ok(STATS)["adminStats"]

    by_status = {s["status"]: s for s in stats["pledgesByStatus"]}
    assert by_status == {
        "PENDING": {
            "status": "PENDING",
            "count": 1,
            "amounts": [{"currency": "USD", "amountCents": 300}],
        },
        "AUTHORIZED": {"status": "AUTHORIZED", "count": 0, "amounts": []},
        "CAPTURED": {
            "status": "CAPTURED",
            "count": 2,
            "amounts": [
                {"currency": "EUR", "amountCents": 4000},
                {"currency": "USD", "amountCents": 2500},
            ],
        },
        "REFUNDED": {
            "status": "REFUNDED",
            "count": 1,
            "amounts": [{"currency": "USD", "amountCents": 1000}],
        },
        "FAILED": {
            "status": "FAILED",
            "count": 1,
            "amounts": [{"currency": "USD", "amountCents": 700}],
        },
    }
    raised = [
        {"currency": "EUR", "amountCents": 4000},
        {"currency": "USD", "amountCents": 2500},
    ]
    assert stats["raisedTotal"] == raised
    assert stats["raisedToday"] == raised

    # A partial refund or a lost dispute (Stripe's) is no longer raised.
    with db.write_session() as session:
        session.execute(
            text(
                "UPDATE pledges SET refunded_cents = 500, dispute_lost_cents = 200 "
                "WHERE id = :id"
            ),
            {"id": kept["id"]},
        )
        session.commit()
    again = usd.admin_ok(STATS)["adminStats"]
    still = [raised[0], {"currency": "USD", "amountCents": 1800}]
    assert again["raisedTotal"] == still
    assert again["raisedToday"] == still
    assert stats["outboxPending"] == 0
    assert stats["outboxLagSeconds"] == 0
    assert stats["deadLetters"] == 0
    assert stats["webhookRejectsLastHour"] == 2


def test_raised_today_counts_captures_since_midnight_utc_and_lag_is_the_oldest_wait(
    client: TestClient, db: Database
) -> None:
    scene = Scene(client)
    old, new = scene.pledge(1200), scene.pledge(800)
    for pledge in (old, new):
        scene.pay(pledge)
    # Totals can count a capture before its own event is delivered (the
    # authorization's handler reads the status as it is by then).
    wait_until(
        lambda: f.totals(scene.gql, scene.campaign_id) == (2000, 2) and settled(db)
    )
    yesterday = utcnow() - timedelta(days=1)
    with db.write_session() as session:
        for row in session.exec(
            select(PledgeTransition).where(PledgeTransition.pledge_id == old["id"])
        ).all():
            row.at = yesterday
            session.add(row)
        # An event that waits (retry due in an hour) and was written 30 s ago.
        session.add(
            OutboxEvent(
                name="CampaignCreated",
                payload=json.dumps({"campaign_id": "c", "owner_id": "o"}),
                created_at=utcnow() - timedelta(seconds=30),
                available_at=utcnow() + timedelta(hours=1),
            )
        )
        session.commit()

    stats = scene.admin_ok(STATS)["adminStats"]

    assert stats["raisedTotal"] == [{"currency": "USD", "amountCents": 2000}]
    assert stats["raisedToday"] == [{"currency": "USD", "amountCents": 800}]
    assert stats["outboxPending"] == 1
    assert 30 <= stats["outboxLagSeconds"] < 60


# --- pledges -----------------------------------------------------------------------


def test_admin_pledges_filter_by_campaign_status_and_dates_and_page_with_history(
    app_factory: Callable[..., TestClient],
) -> None:
    scene = Scene(app_factory(auto_capture=False))
    other = f.campaign(scene.gql, scene.organiser.token)["id"]
    early = [scene.pledge(100), scene.pledge(200), scene.pledge(300, other)]
    scene.pay(early[0])
    middle = datetime.now(UTC)
    late = [scene.pledge(400), scene.pledge(500)]
    someone_else = f.register(scene.gql)
    theirs = f.pledge(scene.gql, someone_else.token, scene.campaign_id, amount=600)

    def ids(variables: dict[str, Any]) -> list[str]:
        found: list[str] = []
        after = None
        while True:
            page = scene.admin_ok(PLEDGES, {**variables, "first": 2, "after": after})
            found += [n["id"] for n in nodes(page["adminPledges"])]
            info = page["adminPledges"]["pageInfo"]
            if not info["hasNextPage"]:
                return found
            after = info["endCursor"]

    everything = [p["id"] for p in (*early, *late, theirs)][::-1]  # newest first
    assert ids({}) == everything
    assert ids({"campaignId": other}) == [early[2]["id"]]
    assert ids({"status": "AUTHORIZED"}) == [early[0]["id"]]
    assert ids({"to": middle.isoformat()}) == [p["id"] for p in early][::-1]
    assert ids({"from": middle.isoformat(), "campaignId": scene.campaign_id}) == [
        theirs["id"],
        late[1]["id"],
        late[0]["id"],
    ]
    assert ids({"from": middle.isoformat(), "to": middle.isoformat()}) == []

    first = scene.admin_ok(PLEDGES, {"status": "AUTHORIZED"})["adminPledges"]
    (node,) = nodes(first)
    assert node["campaign"]["id"] == scene.campaign_id
    assert [(h["fromStatus"], h["toStatus"]) for h in node["history"]] == [
        (None, "PENDING"),
        ("PENDING", "AUTHORIZED"),
    ]
    later = middle + timedelta(seconds=1)
    assert (
        scene.gql.code(
            PLEDGES,
            {"from": later.isoformat(), "to": middle.isoformat()},
            scene.admin.token,
        )
        == "BAD_USER_INPUT"
    )
    assert scene.gql.code(PLEDGES, {"first": 0}, scene.admin.token) == "BAD_USER_INPUT"


# --- dead letters ------------------------------------------------------------------


def test_a_dead_letter_is_listed_and_replayed_with_its_effect_applied_once(
    app_factory: Callable[..., TestClient],
    monkeypatch: pytest.MonkeyPatch,
    db: Database,
) -> None:
    scene = Scene(app_factory(auto_capture=False, outbox_max_attempts=2))
    bad, good = scene.pledge(1000), scene.pledge(2500)
    fault = {"on": True}
    applied: list[tuple[str, str]] = []
    real_update_totals = handlers.update_totals

    def flaky_update_totals(
        conn: Connection, events: Sequence[Event]
    ) -> Mapping[str, int]:
        changes = handlers.status_changes(events)
        if fault["on"] and bad["id"] in {c.pledge_id for c in changes}:
            raise RuntimeError("totals store unavailable")
        changed = real_update_totals(conn, events)
        applied.extend((c.pledge_id, c.to_status) for c in changes)
        return changed

    monkeypatch.setitem(
        handlers.TRANSACTIONAL_HANDLERS, PledgeStatusChanged, [flaky_update_totals]
    )
    for pledge in (bad, good):
        f.post_webhook(scene.client, f.provider_event(pledge, "captured"))
    wait_until(lambda: scene.admin_ok(STATS)["adminStats"]["deadLetters"] == 2)
    assert f.totals(scene.gql, scene.campaign_id) == (2500, 1)

    dead = nodes(scene.admin_ok(DEAD)["deadLetters"])
    assert [(d["name"], d["payload"]["to_status"]) for d in dead] == [
        ("PledgeStatusChanged", "CAPTURED"),
        ("PledgeStatusChanged", "AUTHORIZED"),
    ]
    for letter in dead:
        assert letter["payload"]["pledge_id"] == bad["id"]
        assert letter["attempts"] == 2
        assert "totals store unavailable" in letter["lastError"]
    page = scene.admin_ok(DEAD, {"first": 1})["deadLetters"]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = scene.admin_ok(DEAD, {"first": 1, "after": page["pageInfo"]["endCursor"]})
    assert nodes(rest["deadLetters"])[0]["id"] == dead[1]["id"]

    fault["on"] = False
    captured, authorized = dead
    assert scene.admin_ok(REPLAY, {"id": authorized["id"]}) == {"replayDeadLetter": 1}
    assert scene.admin_ok(REPLAY, {"id": authorized["id"]}) == {"replayDeadLetter": 0}
    assert scene.admin_ok(REPLAY_ALL) == {"replayAllDeadLetters": 1}
    wait_until(lambda: settled(db))
    assert f.totals(scene.gql, scene.campaign_id) == (3500, 2)
    assert applied.count((bad["id"], "CAPTURED")) == 1
    assert applied.count((bad["id"], "AUTHORIZED")) == 1
    # Nothing dead is left; replaying again changes nothing.
    assert scene.admin_ok(REPLAY_ALL) == {"replayAllDeadLetters": 0}
    assert scene.admin_ok(REPLAY, {"id": captured["id"]}) == {"replayDeadLetter": 0}
    assert f.totals(scene.gql, scene.campaign_id) == (3500, 2)
    assert nodes(scene.admin_ok(DEAD)["deadLetters"]) == []

    replays = [r for r in audit_rows(db) if r.action == "replay_dead_letter"]
    assert [(r.actor_user_id, r.target_id) for r in replays] == [
        (scene.admin.id, authorized["id"]),
        (scene.admin.id, "*"),
    ]
    assert json.loads(replays[1].detail) == {
        "count": 1,
        "ids": [int(captured["id"])],
    }
    assert scene.gql.code(REPLAY, {"id": "999999"}, scene.admin.token) == "NOT_FOUND"
    assert scene.gql.code(REPLAY, {"id": "abc"}, scene.admin.token) == "NOT_FOUND"
    assert (
        scene.gql.code(DEAD, {"after": "bm90LWEtY3Vyc29y"}, scene.admin.token)
        == "BAD_USER_INPUT"
    )


# --- webhook log -------------------------------------------------------------------


def test_every_webhook_request_is_logged_with_its_outcome_but_never_its_body(
    app_factory: Callable[..., TestClient], db: Database
) -> None:
    scene = Scene(app_factory(auto_capture=False))
    client = scene.client
    pledge = scene.pledge(2500)
    processed = f.provider_event(pledge, "captured")
    unknown = f.provider_event({**pledge, "id": "plg_nope"}, "captured")
    ignored = f.provider_event(pledge, "captured") | {"type": "payment.disputed"}
    answers = [
        f.post_webhook(client, processed),
        f.post_webhook(client, processed),
        f.post_webhook(client, processed, secret="forged-secret"),
        f.post_webhook(client, b'{"id": 5}'),
        f.post_webhook(client, unknown),
        f.post_webhook(client, ignored),
        f.post_webhook(client, b"x" * (65 * 1024)),
    ]
    assert [a.status_code for a in answers] == [200, 200, 400, 400, 422, 200, 413]

    logged = nodes(scene.admin_ok(WEBHOOK_LOG)["webhookLog"])[::-1]  # oldest first
    assert [(e["outcome"], e["statusCode"]) for e in logged] == [
        ("PROCESSED", 200),
        ("DUPLICATE", 200),
        ("REJECTED_SIGNATURE", 400),
        ("REJECTED_MALFORMED", 400),
        ("REJECTED_UNPROCESSABLE", 422),
        ("IGNORED", 200),
        ("REJECTED_TOO_LARGE", 413),
    ]
    first, duplicate, forged, malformed, unprocessable, skipped, large = logged
    for entry in (first, duplicate):
        assert (entry["eventId"], entry["type"], entry["pledgeId"]) == (
            processed["id"],
            "payment.captured",
            pledge["id"],
        )
    assert forged["reason"] == "signature does not match"
    assert forged["eventId"] is None  # nothing is read from an unverified body
    assert malformed["reason"] == "id must be a string of 1 to 120 characters"
    assert unprocessable["reason"] == "unknown pledge"
    assert unprocessable["pledgeId"] == "plg_nope"
    assert skipped["type"] == "payment.disputed"
    assert large["reason"] == "body is too large"

    only = scene.admin_ok(WEBHOOK_LOG, {"outcome": "REJECTED_SIGNATURE"})
    assert [e["id"] for e in nodes(only["webhookLog"])] == [forged["id"]]
    page = scene.admin_ok(WEBHOOK_LOG, {"first": 4})["webhookLog"]
    after = page["pageInfo"]["endCursor"]
    rest = scene.admin_ok(WEBHOOK_LOG, {"first": 4, "after": after})["webhookLog"]
    assert [e["id"] for e in nodes(page) + nodes(rest)] == [
        e["id"] for e in logged[::-1]
    ]
    assert rest["pageInfo"]["hasNextPage"] is False

    secret = f.webhook_secret(client)
    with db.engine.connect() as conn:
        dump = repr(conn.execute(text("SELECT * FROM webhook_log")).all())
    assert secret not in dump
    assert "v1=" not in dump and "forged-secret" not in dump
    assert '"data"' not in dump and "xxxx" not in dump


# --- reconcile ---------------------------------------------------------------------


def test_reconcile_totals_repairs_drift_and_pushes_the_repaired_totals(
    client: TestClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = Scene(client)
    for amount in (1000, 1500):
        scene.pay(scene.pledge(amount))
    wait_until(lambda: f.totals(scene.gql, scene.campaign_id) == (2500, 2))
    wait_until(lambda: settled(db))
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE campaign_totals SET raised_cents = 99, pledge_count = 7 "
                "WHERE campaign_id = :id"
            ),
            {"id": scene.campaign_id},
        )
    broadcaster = client.app.state.broadcaster  # type: ignore[attr-defined]
    pushed: list[tuple[str, int, int]] = []
    real_publish = broadcaster.publish

    def publish(topic: str, value: Any) -> int:
        pushed.append((topic, value.raised_cents, value.pledge_count))
        count: int = real_publish(topic, value)
        return count

    monkeypatch.setattr(broadcaster, "publish", publish)
    query = (
        "subscription($id: ID!) "
        "{ campaignTotals(campaignId: $id) { raisedCents pledgeCount } }"
    )
    with client.websocket_connect(
        "/graphql", subprotocols=["graphql-transport-ws"]
    ) as ws:
        ws.send_json({"type": "connection_init"})
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": query, "variables": {"id": scene.campaign_id}},
            }
        )
        current = ws.receive_json()["payload"]["data"]["campaignTotals"]
        assert current == {"raisedCents": 99, "pledgeCount": 7}

        drifts = scene.admin_ok(RECONCILE)["reconcileTotals"]

        # Pushed by the dispatcher: the repair committed a TotalsReconciled event.
        wait_until(lambda: pushed == [(scene.campaign_id, 2500, 2)])
        repaired = ws.receive_json()["payload"]["data"]["campaignTotals"]
        assert repaired == {"raisedCents": 2500, "pledgeCount": 2}
        ws.send_json({"id": "1", "type": "complete"})

    assert drifts == [
        {
            "campaignId": scene.campaign_id,
            "raisedCentsWas": 99,
            "pledgeCountWas": 7,
            "raisedCents": 2500,
            "pledgeCount": 2,
        }
    ]
    assert f.totals(scene.gql, scene.campaign_id) == (2500, 2)
    assert scene.admin_ok(RECONCILE) == {"reconcileTotals": []}
    runs = [r for r in audit_rows(db) if r.action == "reconcile"]
    assert [json.loads(r.detail)["repaired"] for r in runs] == [1, 0]
    assert json.loads(runs[0].detail)["drifts"][0]["raised_cents_was"] == 99
    assert {r.actor_user_id for r in runs} == {scene.admin.id}


# --- audit -------------------------------------------------------------------------


def test_admin_actions_are_audited_with_who_what_and_when(
    app_factory: Callable[..., TestClient], db: Database
) -> None:
    scene = Scene(app_factory(auto_capture=False))
    pledge = scene.pledge(2500)
    assert scene.pay(pledge) == "AUTHORIZED"  # the donor's move: not audited
    before = datetime.now(UTC)
    scene.admin_ok(f.CAPTURE, {"id": pledge["id"]})
    scene.admin_ok(f.REFUND, {"id": pledge["id"]})
    scene.admin_ok(SET_STATUS, {"id": scene.campaign_id, "status": "PAUSED"})
    # The organiser's own move and a refused admin move are not audited.
    scene.gql.ok(
        SET_STATUS, {"id": scene.campaign_id, "status": "ACTIVE"}, scene.organiser.token
    )
    assert (
        scene.gql.code(f.REFUND, {"id": pledge["id"]}, scene.admin.token)
        == "INVALID_TRANSITION"
    )

    entries = nodes(scene.admin_ok(AUDIT)["auditLog"])[::-1]  # oldest first

    assert [(e["action"], e["targetType"], e["targetId"]) for e in entries] == [
        ("capture", "pledge", pledge["id"]),
        ("refund", "pledge", pledge["id"]),
        ("set_campaign_status", "campaign", scene.campaign_id),
    ]
    for entry in entries:
        assert entry["actorId"] == scene.admin.id
        assert entry["actor"] == {"id": scene.admin.id, "email": ADMIN_EMAIL}
        assert before <= datetime.fromisoformat(entry["at"]) <= datetime.now(UTC)
    capture, refund, pause = (e["detail"] for e in entries)
    assert capture == {
        "from": "AUTHORIZED",
        "to": "CAPTURED",
        "amount_cents": 2500,
        "currency": "USD",
    }
    assert (refund["from"], refund["to"]) == ("CAPTURED", "REFUNDED")
    assert pause == {"from": "ACTIVE", "to": "PAUSED"}
    page = scene.admin_ok(AUDIT, {"first": 2})["auditLog"]
    assert page["pageInfo"]["hasNextPage"] is True
    rest = scene.admin_ok(AUDIT, {"first": 2, "after": page["pageInfo"]["endCursor"]})
    assert [e["id"] for e in nodes(rest["auditLog"])] == [entries[0]["id"]]


def test_an_admin_action_whose_audit_row_fails_does_not_happen(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, db: Database
) -> None:
    scene = Scene(client)

    def broken_record(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("audit table unavailable")

    monkeypatch.setattr("careforall.services.audit.record", broken_record)
    body = scene.gql(
        SET_STATUS, {"id": scene.campaign_id, "status": "PAUSED"}, scene.admin.token
    )
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    status = scene.gql.ok(
        "query($id: ID!) { campaign(id: $id) { status } }", {"id": scene.campaign_id}
    )
    assert status == {"campaign": {"status": "ACTIVE"}}
    with db.read() as session:
        changes = session.exec(
            select(OutboxEvent).where(OutboxEvent.name == "CampaignStatusChanged")
        ).all()
    assert changes == []


@pytest.mark.parametrize("given", ["abc", str(2**63), str(-(2**64)), "9" * 40])
def test_an_id_no_row_can_have_is_not_found_not_a_server_error(
    gql: GQL, given: str
) -> None:
    admin = f.admin(gql).token
    body = gql(REPLAY, {"id": given}, admin)
    assert body["errors"][0]["extensions"]["code"] == "NOT_FOUND", body
    after = gql(
        "query($after: String) { deadLetters(first: 5, after: $after) { edges "
        "{ cursor } } }",
        {"after": encode_cursor(given)},
        admin,
    )
    assert after["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", after
