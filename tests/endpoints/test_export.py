"""GET /admin/export/donations.csv: admins only, filtered, streamed in chunks,
and a file a spreadsheet opens cleanly and safely."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from careforall.db import Database
from careforall.endpoints.export import safe_cell
from careforall.services import export
from tests import factories as f
from tests.helpers.api import GQL

URL = "/admin/export/donations.csv"
HEADER = [
    "pledge_id",
    "created_at",
    "campaign_id",
    "campaign_title",
    "amount",
    "amount_cents",
    "currency",
    "status",
    "donor_name",
    "message",
]


class Scene:
    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.gql = GQL(client)
        self.admin = f.admin(self.gql).token
        self.organiser = f.register(self.gql).token
        self.campaign = f.campaign(self.gql, self.organiser, title="Ana's surgery")
        self.donor = f.anonymous(self.gql)

    def pledge(self, amount: int = 2500, **fields: Any) -> dict[str, Any]:
        campaign_id = fields.pop("campaign_id", self.campaign["id"])
        return f.pledge(self.gql, self.donor, campaign_id, amount=amount, **fields)

    def get(self, token: str | None = None, **params: str) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.get(URL, params=params, headers=headers)

    def rows(self, **params: str) -> list[dict[str, str]]:
        response = self.get(self.admin, **params)
        assert response.status_code == 200, response.text
        return parse(response.content)


def parse(content: bytes) -> list[dict[str, str]]:
    assert content.startswith(b"\xef\xbb\xbf"), "a UTF-8 byte order mark comes first"
    reader = csv.reader(io.StringIO(content.decode("utf-8-sig"), newline=""))
    header, *rows = list(reader)
    assert header == HEADER
    return [dict(zip(header, row, strict=True)) for row in rows]


@pytest.fixture
def scene(app_factory: Callable[..., TestClient]) -> Scene:
    return Scene(app_factory(auto_capture=False))


def test_only_an_admin_token_may_export(scene: Scene) -> None:
    donor = f.register(scene.gql).token

    missing = scene.get()
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert scene.get("not-a-token").status_code == 401
    assert (
        scene.client.get(URL, headers={"Authorization": "Basic abc"}).status_code == 401
    )
    assert scene.get(scene.donor).status_code == 401  # an anonymous session
    forbidden = scene.get(donor)
    assert forbidden.status_code == 403
    assert "admin" in forbidden.json()["error"]
    # A donor learns nothing about parameters either.
    assert scene.get(donor, **{"from": "yesterday"}).status_code == 403
    assert scene.get(scene.admin).status_code == 200


def test_a_demoted_admin_can_no_longer_export(scene: Scene, db: Database) -> None:
    assert scene.get(scene.admin).status_code == 200
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE users SET role = 'DONOR' WHERE role = 'ADMIN'"))
    assert scene.get(scene.admin).status_code == 403  # same token, role as it is now


@pytest.mark.parametrize(
    "params",
    [
        {"from": "yesterday"},
        {"to": "2026-13-01"},
        {"from": "2026-02-01", "to": "2026-01-01"},
        {"status": "LOST"},
    ],
)
def test_bad_parameters_are_a_400_that_says_why(
    scene: Scene, params: dict[str, str]
) -> None:
    response = scene.get(scene.admin, **params)
    assert response.status_code == 400
    assert response.json()["error"]


def test_rows_carry_every_column_in_a_file_a_spreadsheet_opens(scene: Scene) -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    pledge = scene.pledge(
        2500, donorName="José Müller-Łukasz", message='Get well, "Ana"!\nLove, J.'
    )
    scene.gql.ok(f.AUTHORIZE, {"id": pledge["id"], "pm": "pm_card_ok"}, scene.donor)
    response = scene.get(scene.admin)

    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert "attachment" in response.headers["content-disposition"]
    assert response.headers["cache-control"] == "no-store"
    assert b"\r\n" in response.content  # RFC 4180 line ends
    (row,) = parse(response.content)
    created = datetime.fromisoformat(row.pop("created_at"))
    assert before <= created <= datetime.now(UTC)
    assert row == {
        "pledge_id": pledge["id"],
        "campaign_id": scene.campaign["id"],
        "campaign_title": "Ana's surgery",
        "amount": "25.00",
        "amount_cents": "2500",
        "currency": "USD",
        "status": "AUTHORIZED",
        "donor_name": "José Müller-Łukasz",
        "message": 'Get well, "Ana"!\nLove, J.',
    }


def test_cells_that_would_start_a_formula_are_defused(scene: Scene) -> None:
    scene.pledge(100, donorName='=HYPERLINK("http://evil","x")', message="+1+2")
    scene.pledge(200, donorName="@SUM(A1)", message="-3")
    scene.pledge(300, donorName="Plain Name", message="1 + 1 = 2")

    rows = scene.rows()

    assert [(r["donor_name"], r["message"]) for r in rows] == [
        ('\'=HYPERLINK("http://evil","x")', "'+1+2"),
        ("'@SUM(A1)", "'-3"),
        ("Plain Name", "1 + 1 = 2"),
    ]
    # Stored text is trimmed, so these cannot come from the API; defused anyway.
    assert safe_cell("\tx") == "'\tx"
    assert safe_cell("\rx") == "'\rx"
    assert safe_cell("25.00") == "25.00"


def test_filters_by_campaign_status_and_dates(scene: Scene) -> None:
    other = f.campaign(scene.gql, scene.organiser, currency="JPY")
    first = scene.pledge(100)
    yen = scene.pledge(5000, campaign_id=other["id"], currency="JPY")
    middle = datetime.now(UTC)
    last = scene.pledge(300)
    scene.gql.ok(f.AUTHORIZE, {"id": last["id"], "pm": "pm_card_ok"}, scene.donor)

    def ids(**params: str) -> list[str]:
        return [r["pledge_id"] for r in scene.rows(**params)]

    assert ids() == [first["id"], yen["id"], last["id"]]  # oldest first
    assert ids(campaignId=other["id"]) == [yen["id"]]
    assert scene.rows(campaignId=other["id"])[0]["amount"] == "5000"
    assert ids(status="authorized") == [last["id"]]
    assert ids(to=middle.isoformat()) == [first["id"], yen["id"]]
    assert ids(**{"from": middle.isoformat()}) == [last["id"]]
    today = middle.date().isoformat()
    tomorrow = (middle + timedelta(days=1)).date().isoformat()
    # A plain date as `to` includes that whole day.
    assert ids(**{"from": today, "to": today}) == [first["id"], yen["id"], last["id"]]
    assert ids(**{"from": tomorrow}) == []
    assert ids(campaignId="cmp_unknown") == []


def test_more_rows_than_one_chunk_stream_in_chunks(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(export, "CHUNK_ROWS", 3)
    reads: list[int] = []
    real_chunks = export._chunks

    def counted(*args: Any) -> Iterator[list[export.Donation]]:
        for chunk in real_chunks(*args):
            reads.append(len(chunk))
            yield chunk

    monkeypatch.setattr(export, "_chunks", counted)
    made = [scene.pledge(100 + i)["id"] for i in range(8)]

    with scene.client.stream(
        "GET", URL, headers={"Authorization": f"Bearer {scene.admin}"}
    ) as response:
        assert response.status_code == 200
        assert "content-length" not in response.headers
        content = b"".join(response.iter_bytes())

    assert [r["pledge_id"] for r in parse(content)] == made
    assert reads == [3, 3, 2]
