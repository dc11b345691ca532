"""Campaign cover images: uploaded by the organiser or an admin, re-encoded
without any metadata (no GPS position survives), served in three widths that
are cached for good; bad, huge and others' uploads are refused and nothing
is stored."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from starlette.testclient import TestClient

from careforall.domain.clock import utcnow
from careforall.runtime import Runtime
from careforall.services.images import WIDTHS
from careforall.services.retention import RetentionPolicy, prune
from careforall.settings import Rate
from tests import factories as f
from tests.helpers.api import GQL

IMAGE = "query($id: ID!) { campaign(id: $id) { imageUrl imageSrcset } }"
EDITS = """query($id: ID!) { adminCampaignEdits(campaignId: $id, first: 10) {
  edges { node { field newValue } } } }"""
CLOSE = """mutation($id: ID!) {
  setCampaignStatus(id: $id, status: CLOSED) { id status } }"""
GPS = 0x8825
ORIENTATION = 0x0112


@pytest.fixture
def media(tmp_path: Path) -> Path:
    return tmp_path / "data" / "media"


@pytest.fixture
def client(app_factory: Callable[..., TestClient], tmp_path: Path) -> TestClient:
    return app_factory(data_dir=str(tmp_path / "data"))


def photo_with_gps(size: tuple[int, int] = (300, 200), orientation: int = 1) -> bytes:
    """A JPEG as a phone makes it: EXIF with a GPS position and an orientation."""
    image = Image.new("RGB", size, (200, 30, 30))
    image.paste((30, 30, 200), (0, 0, size[0] // 2, size[1]))  # left half blue
    exif = Image.Exif()
    exif[0x010F] = "PhoneMaker"
    exif[ORIENTATION] = orientation
    exif.get_ifd(GPS).update(
        {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 7.0)}
    )
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes(), comment=b"taken at the clinic")
    data = out.getvalue()
    assert Image.open(io.BytesIO(data)).getexif().get_ifd(GPS)  # the test's premise
    return data


def upload(client: TestClient, campaign_id: str, data: bytes, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(
        f"/campaigns/{campaign_id}/image",
        files={"image": ("photo.jpg", data, "image/jpeg")},
        headers=headers,
    )


def stored(media: Path) -> list[str]:
    return sorted(p.name for p in media.iterdir()) if media.exists() else []


def test_an_organisers_photo_is_served_upright_without_its_gps(
    client: TestClient, gql: GQL, media: Path
) -> None:
    organiser = f.register(gql, name="Olga")
    campaign = f.campaign(gql, organiser.token)
    # Orientation 6: the camera was turned; the picture shows turned upright.
    response = upload(
        client, campaign["id"], photo_with_gps(orientation=6), organiser.token
    )
    assert response.status_code == 200, response.text
    url = response.json()["imageUrl"]
    assert url.startswith("/media/") and url.endswith("-800.jpg")

    shown = gql.ok(IMAGE, {"id": campaign["id"]})["campaign"]
    assert shown["imageUrl"] == url
    srcset = shown["imageSrcset"].split(", ")
    assert [entry.split(" ")[1] for entry in srcset] == [f"{w}w" for w in WIDTHS]
    for entry in srcset:
        served = client.get(entry.split(" ")[0])
        assert served.status_code == 200
        assert served.headers["content-type"] == "image/jpeg"
        assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert b"Exif" not in served.content and b"clinic" not in served.content
        image = Image.open(io.BytesIO(served.content))
        assert image.format == "JPEG"
        assert not image.getexif() and "exif" not in image.info
        assert image.size == (200, 300)  # never enlarged; turned upright
    assert len(stored(media)) == len(WIDTHS)


def test_a_large_photo_is_kept_in_three_widths(client: TestClient, gql: GQL) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    response = upload(
        client, campaign["id"], photo_with_gps((2000, 1000)), organiser.token
    )
    assert response.status_code == 200, response.text
    for entry in response.json()["imageSrcset"].split(", "):
        path, width = entry.split(" ")
        image = Image.open(io.BytesIO(client.get(path).content))
        assert image.size == (int(width[:-1]), int(width[:-1]) // 2)


def test_an_admin_may_set_the_image_and_the_change_is_kept(
    client: TestClient, gql: GQL
) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    admin = f.admin(gql)
    response = upload(client, campaign["id"], photo_with_gps(), admin.token)
    assert response.status_code == 200, response.text
    edits = gql.ok(EDITS, {"id": campaign["id"]}, admin.token)["adminCampaignEdits"]
    [edit] = [e["node"] for e in edits["edges"]]
    assert edit["field"] == "image"
    assert edit["newValue"] in response.json()["imageUrl"]


def test_nobody_else_sets_a_campaigns_image(
    client: TestClient, gql: GQL, media: Path
) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    stranger = f.register(gql, name="Stranger")
    data = photo_with_gps()
    refused = {
        "stranger": (upload(client, campaign["id"], data, stranger.token), 403),
        "guest": (upload(client, campaign["id"], data, f.anonymous(gql)), 401),
        "nobody": (upload(client, campaign["id"], data, None), 401),
        "bad token": (upload(client, campaign["id"], data, "not-a-token"), 401),
        "no campaign": (upload(client, "no-such-campaign", data, organiser.token), 404),
    }
    for who, (response, status) in refused.items():
        assert response.status_code == status, who
        assert response.json()["error"], who
    assert stored(media) == []
    assert gql.ok(IMAGE, {"id": campaign["id"]})["campaign"]["imageUrl"] is None


def test_a_closed_campaigns_image_stays_as_it_is(
    client: TestClient, gql: GQL, media: Path
) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    gql.ok(CLOSE, {"id": campaign["id"]}, organiser.token)
    response = upload(client, campaign["id"], photo_with_gps(), organiser.token)
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_TRANSITION"
    assert stored(media) == []


def bomb(side: int = 10_000) -> bytes:
    """A small PNG that decodes to side² pixels (100 megapixels)."""
    out = io.BytesIO()
    Image.new("1", (side, side)).save(out, "PNG", optimize=True)
    return out.getvalue()


@pytest.mark.parametrize(
    ("what", "make", "words"),
    [
        ("a decompression bomb", bomb, "megapixels"),
        ("49 megapixels", lambda: bomb(7000), "7000×7000 pixels"),
        ("a PDF", lambda: b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n", "not an image"),
        ("a cut-off JPEG", lambda: photo_with_gps()[:400], "not an image"),
        ("a GIF", lambda: b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "not an image"),
        ("nothing", lambda: b"", "empty"),
    ],
)
def test_what_is_not_a_usable_image_is_refused_and_nothing_stored(
    client: TestClient,
    gql: GQL,
    media: Path,
    what: str,
    make: Callable[[], bytes],
    words: str,
) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    data = make()
    assert len(data) < 1024 * 1024, what  # small files: refused for what they are
    response = upload(client, campaign["id"], data, organiser.token)
    assert response.status_code == 400, what
    assert response.json()["code"] == "BAD_USER_INPUT"
    assert words in response.json()["error"], response.json()
    assert stored(media) == []
    assert gql.ok(IMAGE, {"id": campaign["id"]})["campaign"]["imageUrl"] is None


def test_a_file_over_the_limit_is_refused_unread(
    app_factory: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = app_factory(data_dir=str(tmp_path / "data"), image_max_bytes=2000)
    gql = GQL(client)
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    big = photo_with_gps((800, 800))
    assert len(big) > 2000
    # Within the form's allowance for its own bytes: the endpoint says why.
    response = upload(
        client, campaign["id"], big[:3000] if len(big) > 3000 else big, organiser.token
    )
    assert response.status_code == 413
    assert "largest accepted" in response.json()["error"]
    # Far over: refused by its declared length, before the body is read.
    huge = client.post(
        f"/campaigns/{campaign['id']}/image",
        content=b"\xff" * 200_000,
        headers={
            "Authorization": f"Bearer {organiser.token}",
            "Content-Type": "image/jpeg",
        },
    )
    assert huge.status_code == 413
    assert stored(tmp_path / "data" / "media") == []


def test_the_raw_file_as_the_body_is_accepted(client: TestClient, gql: GQL) -> None:
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    response = client.post(
        f"/campaigns/{campaign['id']}/image",
        content=photo_with_gps(),
        headers={
            "Authorization": f"Bearer {organiser.token}",
            "Content-Type": "image/jpeg",
        },
    )
    assert response.status_code == 200, response.text


def test_unknown_media_names_are_not_found(client: TestClient) -> None:
    for name in ("0" * 32 + "-800.jpg", "..%2Fcareforall.db", "x.jpg"):
        assert client.get(f"/media/{name}").status_code == 404


def test_an_organiser_uploading_too_often_is_asked_to_wait(
    app_factory: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = app_factory(
        data_dir=str(tmp_path / "data"),
        rate_limits=True,
        rate_limit_image_per_principal=Rate(2, 3600),
    )
    gql = GQL(client)
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    data = photo_with_gps()
    for _ in range(2):
        assert upload(client, campaign["id"], data, organiser.token).is_success
    refused = upload(client, campaign["id"], data, organiser.token)
    assert refused.status_code == 429
    assert refused.json()["code"] == "RATE_LIMITED"
    assert int(refused.headers["retry-after"]) > 0


def test_replaced_images_files_go_a_day_later_and_shown_ones_stay(
    client: TestClient, gql: GQL, media: Path
) -> None:
    organiser = f.register(gql)
    first, second = (f.campaign(gql, organiser.token) for _ in range(2))
    old_photo, new_photo = photo_with_gps((300, 200)), photo_with_gps((200, 300))
    for campaign in (first, second):
        assert upload(client, campaign["id"], old_photo, organiser.token).is_success
    old_files = stored(media)
    # The first campaign's photo is replaced; the second still shows the old one.
    assert upload(client, first["id"], new_photo, organiser.token).is_success
    new_files = sorted(set(stored(media)) - set(old_files))
    assert len(old_files) == len(new_files) == 3
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    policy = RetentionPolicy(outbox_days=0, webhook_log_days=0, sim_webhooks_days=0)

    def prune_at(now: datetime) -> int:
        result = prune(runtime.uow(), policy=policy, media=runtime.media, now=now)
        return result.files_deleted

    assert prune_at(utcnow() + timedelta(days=2)) == 0  # both images are shown
    assert upload(client, second["id"], new_photo, organiser.token).is_success
    assert prune_at(utcnow() + timedelta(hours=23)) == 0  # replaced a moment ago
    assert stored(media) == sorted(old_files + new_files)
    assert prune_at(utcnow() + timedelta(days=1, minutes=1)) == 3
    assert stored(media) == new_files
    for campaign in (first, second):
        shown = gql.ok(IMAGE, {"id": campaign["id"]})["campaign"]["imageUrl"]
        assert client.get(shown).status_code == 200


def test_an_image_put_again_counts_as_new_for_the_sweep(
    client: TestClient, gql: GQL, media: Path
) -> None:
    """A photo uploaded again after it was replaced is not swept away under
    the campaign that shows it again: putting it refreshes its files' time."""
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    photo = photo_with_gps()
    assert upload(client, campaign["id"], photo, organiser.token).is_success
    long_ago = (utcnow() - timedelta(days=10)).timestamp()
    for name in stored(media):
        os.utime(media / name, (long_ago, long_ago))
    runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
    assert upload(client, campaign["id"], photo, organiser.token).is_success
    put_at = [when for _, when in runtime.media.stored()]
    assert len(put_at) == len(WIDTHS)
    assert all(when > utcnow() - timedelta(minutes=5) for when in put_at)
