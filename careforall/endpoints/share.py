"""GET /c/{id}: a campaign's share link. The web app's page with the
campaign's Open Graph and Twitter tags, so a link pasted into a chat or a
social network shows its title, story and image; the app then opens the
campaign. A campaign the public may not see answers as a missing one."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from html import escape
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from careforall.concurrency import in_thread
from careforall.db import web_dir
from careforall.domain.rules import hidden_from_public
from careforall.runtime import Runtime
from careforall.services.campaigns import get_campaign
from careforall.services.images import image_url

# Previews show a line or two; the tags carry a little more, cut on a word.
DESCRIPTION_CHARS = 200
PREVIEW_WIDTH = 1600
SITE_NAME = "CareForAll"
NOT_FOUND_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Campaign not found · CareForAll</title>
<link rel="stylesheet" href="/styles.css"></head>
<body><main><h1>Campaign not found</h1>
<p>There is no campaign at this address. <a href="/">See all campaigns</a>.</p>
</main></body></html>
"""


@dataclass(frozen=True)
class Preview:
    title: str
    description: str
    url: str
    image: str | None


def shortened(text: str, limit: int = DESCRIPTION_CHARS) -> str:
    """One line of at most `limit` characters, cut at a word with an ellipsis."""
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    cut = flat[: limit - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,.;:") + "…"


def meta_tags(preview: Preview) -> str:
    """The tags for link previews, every value escaped for an attribute."""
    tags = [
        ("property", "og:type", "website"),
        ("property", "og:site_name", SITE_NAME),
        ("property", "og:title", preview.title),
        ("property", "og:description", preview.description),
        ("property", "og:url", preview.url),
        ("name", "twitter:title", preview.title),
        ("name", "twitter:description", preview.description),
    ]
    if preview.image is not None:
        tags += [
            ("property", "og:image", preview.image),
            ("name", "twitter:image", preview.image),
            ("name", "twitter:card", "summary_large_image"),
        ]
    else:
        tags.append(("name", "twitter:card", "summary"))
    return "\n".join(
        f'  <meta {kind}="{key}" content="{escape(value, quote=True)}">'
        for kind, key, value in tags
    )


def share_page(index_html: str, preview: Preview) -> str:
    """The app's page with the campaign's title, description and tags."""
    title = escape(f"{preview.title} · {SITE_NAME}")
    page = index_html.replace("<title>CareForAll</title>", f"<title>{title}</title>")
    page = page.replace(
        '<meta name="description" content="CareForAll: medical fundraising where '
        'every donation is counted once.">',
        f'<meta name="description" content="{escape(preview.description)}">',
    )
    head = f'  <link rel="canonical" href="{escape(preview.url)}">\n'
    return page.replace("</head>", head + meta_tags(preview) + "\n</head>", 1)


def _preview(runtime: Runtime, campaign_id: str) -> Preview | None:
    with runtime.db.read() as session:
        campaign = get_campaign(session, campaign_id)
    if campaign is None or hidden_from_public(campaign):
        return None
    base = runtime.settings.public_url
    image = campaign.image_key
    return Preview(
        title=campaign.title,
        description=shortened(campaign.description),
        url=f"{base}/c/{quote(campaign.id, safe='')}",
        image=f"{base}{image_url(image, PREVIEW_WIDTH)}" if image else None,
    )


async def campaign_share_page(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    campaign_id = request.path_params["campaign_id"]
    preview = await in_thread(partial(_preview, runtime, campaign_id))
    if preview is None:
        return HTMLResponse(
            NOT_FOUND_PAGE, status_code=404, headers={"Cache-Control": "no-store"}
        )
    index_html = await in_thread((web_dir() / "index.html").read_text)
    # Titles change and campaigns get suspended: always asked again.
    return HTMLResponse(
        share_page(index_html, preview), headers={"Cache-Control": "no-cache"}
    )
