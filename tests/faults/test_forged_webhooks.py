"""A flood of forged payment webhooks at a real server.

300 requests with signatures that do not verify, from several senders at
once: each is refused with 400, and together they may write only a few
sampled rows to the webhook log, never one each (a flood would otherwise fill
the disk and bury the admin's log in noise). The refusals are still counted
(Prometheus, and the admin's figures), the admins are still alerted, and a
real, signed event sent after the flood is still logged in full. The figures
are printed (`pytest -s`).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from careforall.payments.signature import sign
from tests import factories as f
from tests.helpers.api import ServerGQL
from tests.helpers.server import Server
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.server

FORGED = 300
SENDERS = 8
SECRET = "forged-flood-webhook-secret-" + "s" * 32
# A few sampled rows (one per reason per sampling interval), never one each.
MOST_ROWS = 10

STATS = "{ adminStats { webhookRejectsLastHour } }"
ALERTS = "{ notifications(first: 20) { edges { node { kind body } } } }"


def _forged(pledge_id: str, i: int) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "id": f"evt_forged_{i}_{uuid.uuid4().hex[:8]}",
            "type": "payment.captured",
            "created": int(time.time()),
            "data": {"pledgeId": pledge_id, "amountCents": 2500, "currency": "USD"},
        }
    ).encode()
    header = sign("not-the-secret", body)
    return body, {"Content-Type": "application/json", "CareForAll-Signature": header}


def _rows(server: Server, where: str = "1 = 1") -> int:
    count: int = server.scalar(f"SELECT COUNT(*) FROM webhook_log WHERE {where}")
    return count


def _rejected_metric(http: httpx.Client) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith(
            'careforall_webhooks_received_total{outcome="rejected_signature"}'
        ):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no rejected_signature counter in /metrics")


def test_a_flood_of_forged_webhooks_writes_a_few_sampled_rows(
    make_server: Callable[..., Server],
) -> None:
    server = make_server(
        CAREFORALL_AUTO_CAPTURE="false", CAREFORALL_WEBHOOK_SECRET=SECRET
    )
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        api = ServerGQL(http)
        organiser = f.register(api, name="Olga Organiser")
        campaign = f.campaign(api, organiser.token)
        pledge = f.pledge(api, f.anonymous(api), campaign["id"])
        before = _rows(server)

        forged = [_forged(pledge["id"], i) for i in range(FORGED)]
        began = time.monotonic()
        with ThreadPoolExecutor(SENDERS) as pool:
            statuses = list(
                pool.map(
                    lambda req: (
                        http.post(
                            f.WEBHOOK_URL, content=req[0], headers=req[1]
                        ).status_code
                    ),
                    forged,
                )
            )
        seconds = time.monotonic() - began
        written = _rows(server) - before

        real = f.provider_event(pledge, "authorized")
        raw = json.dumps(real).encode()
        answer = http.post(
            f.WEBHOOK_URL,
            content=raw,
            headers={
                "Content-Type": "application/json",
                "CareForAll-Signature": sign(SECRET, raw),
            },
        )
        logged = _rows(server, f"event_id = '{real['id']}' AND outcome = 'processed'")
        counted = _rejected_metric(http)
        admin = f.admin(api)
        stats = api.ok(STATS, token=admin.token)["adminStats"]

        def alerted() -> bool:
            edges = api.ok(ALERTS, token=admin.token)["notifications"]["edges"]
            return any(e["node"]["kind"] == "WEBHOOKS_REJECTED" for e in edges)

        try:
            wait_until(alerted, timeout=5, what="the admins' WEBHOOKS_REJECTED alert")
            told = True
        except AssertionError:
            told = False

        print(
            f"\n{FORGED} forged webhooks from {SENDERS} senders in {seconds:.2f} s: "
            f"{written} webhook_log rows written "
            f"({written / FORGED:.2f} per request); statuses "
            f"{sorted(set(statuses))}; /metrics rejected_signature {counted:.0f}; "
            f"adminStats.webhookRejectsLastHour "
            f"{stats['webhookRejectsLastHour']}; real event after the flood: "
            f"{answer.status_code}, logged rows {logged}; admins alerted: {told}"
        )

    assert statuses == [400] * FORGED
    assert answer.status_code == 200 and answer.json()["duplicate"] is False
    assert logged == 1, "the real event is logged in full"
    assert counted == FORGED
    assert written <= MOST_ROWS, f"{written} rows for {FORGED} forged webhooks"
    assert stats["webhookRejectsLastHour"] >= FORGED
    assert told, "the admins hear of the flood"
