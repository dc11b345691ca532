"""GET /c/{id}: a campaign's share link is the web app with the campaign's
preview tags (Open Graph, Twitter), every value escaped; a campaign the
public may not see is a plain 404 that tells nothing about it."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

from PIL import Image
from starlette.testclient import TestClient

from careforall.endpoints.share import shortened
from tests import factories as f
from tests.helpers.api import GQL
from tests.helpers.link_preview import head

PUBLIC_URL = "https://give.example.org"
EVIL_TITLE = '"<script>alert(1)</script> & more'


def start(
    app_factory: Callable[..., TestClient], tmp_path: Path, **changes: object
) -> TestClient:
    return app_factory(
        public_url=PUBLIC_URL, data_dir=str(tmp_path / "data"), **changes
    )


def test_a_share_link_carries_the_campaigns_preview_escaped(
    app_factory: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = start(app_factory, tmp_path)
    gql = GQL(client)
    organiser = f.register(gql)
    story = "Anna needs surgery. " * 30
    campaign = f.campaign(gql, organiser.token, title=EVIL_TITLE, description=story)

    page = client.get(f"/c/{campaign['id']}")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<script>alert" not in page.text
    assert "&quot;&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page.text
    tags = head(page.text)
    assert tags.meta["og:title"] == EVIL_TITLE == tags.meta["twitter:title"]
    assert tags.title == f"{EVIL_TITLE} · CareForAll"
    assert tags.meta["og:url"] == f"{PUBLIC_URL}/c/{campaign['id']}"
    assert tags.meta["og:description"] == shortened(story)
    assert len(tags.meta["og:description"]) <= 200
    assert tags.meta["og:description"].endswith(" needs…")
    assert tags.meta["twitter:card"] == "summary"
    assert "og:image" not in tags.meta
    # The app itself, from this origin, with no inline script (the CSP).
    assert tags.scripts == [{"type": "module", "src": "/app.js"}]
    assert "script-src 'self';" in page.headers["content-security-policy"]


def test_with_an_image_the_preview_shows_it_by_its_full_address(
    app_factory: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = start(app_factory, tmp_path)
    gql = GQL(client)
    organiser = f.register(gql)
    campaign = f.campaign(gql, organiser.token)
    out = io.BytesIO()
    Image.new("RGB", (1200, 630), (10, 120, 90)).save(out, "PNG")
    uploaded = client.post(
        f"/campaigns/{campaign['id']}/image",
        files={"image": ("cover.png", out.getvalue(), "image/png")},
        headers={"Authorization": f"Bearer {organiser.token}"},
    )
    assert uploaded.status_code == 200, uploaded.text

    tags = head(client.get(f"/c/{campaign['id']}").text)
    image = tags.meta["og:image"]
    assert re.fullmatch(rf"{PUBLIC_URL}/media/[0-9a-f]{{32}}-1600\.jpg", image)
    assert tags.meta["twitter:image"] == image
    assert tags.meta["twitter:card"] == "summary_large_image"
    served = client.get(image.removeprefix(PUBLIC_URL))
    assert served.status_code == 200
    assert Image.open(io.BytesIO(served.content)).size == (1200, 630)


def test_hidden_and_unknown_campaigns_are_a_plain_404(
    app_factory: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = start(app_factory, tmp_path, campaign_review="required")
    gql = GQL(client)
    organiser = f.register(gql)
    waiting = f.campaign(gql, organiser.token, title="Secret waiting title")
    assert waiting["status"] == "IN_REVIEW"
    for address in (f"/c/{waiting['id']}", "/c/no-such-campaign"):
        page = client.get(address)
        assert page.status_code == 404
        assert "Secret waiting title" not in page.text
        assert "og:" not in page.text
        assert "Campaign not found" in page.text


def test_descriptions_are_cut_on_a_word() -> None:
    assert shortened("Short story.") == "Short story."
    assert shortened("one  two\nthree") == "one two three"
    cut = shortened("word " * 100, limit=24)
    assert cut == "word word word word…"
    assert len(cut) <= 24
