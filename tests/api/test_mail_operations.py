"""Mail for operators: Prometheus counts mails written, sent, failed and dead
by kind and gauges those waiting, and `adminStats.deadMails` counts the mails
an admin should look at."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import REGISTRY
from starlette.testclient import TestClient

from tests import factories as f
from tests.helpers.admin_mails import REPLAY, mails, receipt_statuses, receipts
from tests.helpers.api import GQL
from tests.helpers.smtp import MailServer
from tests.helpers.waiting import wait_until

DEAD_MAILS = "{ adminStats { deadMails } }"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_dead_mails_are_counted_for_admins_and_in_metrics(
    app_factory: Callable[..., TestClient], mail_server: MailServer
) -> None:
    counters = (
        "careforall_mails_written_total",
        "careforall_mails_sent_total",
        "careforall_mails_dead_total",
    )
    before = {name: sample(name, kind="receipt") for name in counters}
    gql = GQL(app_factory(smtp=mail_server.smtp))
    admin = f.admin(gql)
    assert gql.ok(DEAD_MAILS, token=admin.token)["adminStats"]["deadMails"] == 0
    organiser, donor = f.register(gql), f.register(gql)
    mail_server.refused.add(donor.email)
    campaign = f.campaign(gql, organiser.token)
    pledge = f.pledge(gql, donor.token, campaign["id"])
    gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, donor.token)
    wait_until(lambda: receipt_statuses(gql, admin.token) == ["DEAD"])

    # The donor's address refuses everything: the link to verify it too.
    dead = len(mails(gql, admin.token, status="DEAD"))
    assert dead >= 1
    assert gql.ok(DEAD_MAILS, token=admin.token)["adminStats"]["deadMails"] == dead
    grown = {name: sample(name, kind="receipt") - before[name] for name in counters}
    assert grown == {
        "careforall_mails_written_total": 1,
        "careforall_mails_sent_total": 0,
        "careforall_mails_dead_total": 1,
    }
    assert sample("careforall_mails_waiting", status="dead") == dead
    assert "careforall_mails_dead_total" in gql.client.get("/metrics").text

    mail_server.refused.clear()
    [mail] = receipts(gql, admin.token)
    gql.ok(REPLAY, {"id": mail["id"]}, admin.token)
    wait_until(lambda: receipt_statuses(gql, admin.token) == ["SENT"])
    assert gql.ok(DEAD_MAILS, token=admin.token)["adminStats"]["deadMails"] == dead - 1
    assert (
        sample("careforall_mails_sent_total", kind="receipt")
        - before["careforall_mails_sent_total"]
        == 1
    )
    wait_until(lambda: sample("careforall_mails_waiting", status="dead") == dead - 1)
