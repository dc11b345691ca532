"""Donations through the public API of a running server (a container, or a
release run from its source), and a release's database (the fixture the
upgrade check starts from), for .ci/container-check and
.ci/make-release-database. The documents are the tests' own
(tests/factories.py), so they stay in step with the contract."""

from __future__ import annotations

import sqlite3
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests import factories as f  # noqa: E402
from tests.helpers.api import ServerGQL  # noqa: E402
from tests.helpers.waiting import wait_until  # noqa: E402

__all__ = ["ROOT", "Api", "Donation", "Fixture", "f"]

FIXTURES = Path(__file__).resolve().parent / "fixtures"

CAPTURE_WAIT = 30.0


@dataclass
class Donation:
    campaign_id: str
    pledge_id: str
    donor_token: str
    amount_cents: int


class Api:
    """GraphQL and plain HTTP against `base_url` (http://127.0.0.1:PORT)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=10.0)
        self.gql = ServerGQL(self.http)

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1) + "/graphql"

    def close(self) -> None:
        self.http.close()

    def organiser_campaign(self, title: str | None = None) -> str:
        organiser = f.register(self.gql, name="Olive Organiser")
        extra = {"title": title} if title else {}
        campaign: dict[str, Any] = f.campaign(self.gql, organiser.token, **extra)
        return str(campaign["id"])

    def pledge(
        self, campaign_id: str, amount: int, card: str = "pm_card_ok"
    ) -> Donation:
        """A guest's pledge, its payment asked for with `card` (not waited on)."""
        donor = f.anonymous(self.gql)
        pledge = f.pledge(self.gql, donor, campaign_id, amount)
        self.gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": card}, donor)
        return Donation(campaign_id, pledge["id"], donor, amount)

    def status(self, donation: Donation) -> str:
        data = self.gql.ok(f.PLEDGE, {"id": donation.pledge_id}, donation.donor_token)
        return str(data["pledge"]["status"])

    def totals(self, campaign_id: str) -> tuple[int, int]:
        return f.totals(self.gql, campaign_id)

    def wait_status(self, donation: Donation, status: str = "CAPTURED") -> None:
        wait_until(
            lambda: self.status(donation) == status,
            timeout=CAPTURE_WAIT,
            interval=0.2,
            what=f"pledge {donation.pledge_id} to be {status}",
        )

    def wait_totals(self, campaign_id: str, expected: tuple[int, int]) -> None:
        wait_until(
            lambda: self.totals(campaign_id) == expected,
            timeout=CAPTURE_WAIT,
            interval=0.2,
            what=f"campaign {campaign_id} totals to be {expected}",
        )

    def donate(self, campaign_id: str, amount: int) -> Donation:
        """A guest's donation, waited on until the provider captured it."""
        donation = self.pledge(campaign_id, amount)
        self.wait_status(donation)
        return donation


@dataclass
class Fixture:
    """A release's database (.ci/fixtures/careforall-VERSION.sql, made by
    .ci/make-release-database) and what an upgrade must keep of it."""

    sql: str
    totals: dict[str, tuple[int, int]]
    counts: dict[str, int]

    @classmethod
    def load(cls, release: str) -> Fixture:
        sql = (FIXTURES / f"careforall-{release}.sql").read_text()
        db = sqlite3.connect(":memory:")
        db.executescript(sql)
        totals = {
            row[0]: (row[1], row[2])
            for row in db.execute(
                "SELECT campaign_id, raised_cents, pledge_count FROM campaign_totals"
            )
        }
        tables = ("users", "campaigns", "pledges", "pledge_transitions")
        counts = {
            t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables
        }
        return cls(sql, totals, counts)

    def database_bytes(self) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "careforall.db"
            with sqlite3.connect(path) as db:
                db.executescript(self.sql)
            db.close()
            return path.read_bytes()
