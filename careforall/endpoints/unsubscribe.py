"""/unsubscribe?token=T: the link in every optional mail.

GET shows a confirmation page and changes nothing: mail scanners and link
previews fetch links. POST turns the mail off, from the page's button or
straight from a mail client's one-click button (RFC 8058: a POST to the link
with `List-Unsubscribe=One-Click`). The page is plain HTML, with no script or
style, so the app's Content-Security-Policy holds as it is.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from careforall.domain.errors import BadUserInput
from careforall.runtime import Runtime
from careforall.services.mail_preferences import (
    Link,
    read_link,
    unsubscribe,
    unsubscribe_key,
)

_HEADERS = {"Cache-Control": "no-store"}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        '<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title></head>\n<body>\n<main>\n"
        f"<h1>{escape(title)}</h1>\n{body}\n</main>\n</body>\n</html>\n"
    )
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


def _again(link: Link) -> str:
    if link.campaign_id is not None:
        return "<p>Other mail from us is not affected.</p>"
    return "<p>You can turn it on again in your account settings.</p>"


def _refused(error: BadUserInput) -> HTMLResponse:
    return _page("Link not valid", f"<p>{escape(error.message)}</p>", status=400)


async def unsubscribe_page(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    token = request.query_params.get("token", "")
    key = unsubscribe_key(runtime.keys.secret)
    if request.method == "GET":
        try:
            link = read_link(key, token)
        except BadUserInput as error:
            return _refused(error)
        action = f"/unsubscribe?token={escape(quote(token, safe=''))}"
        return _page(
            "Unsubscribe",
            f"<p>Stop receiving {escape(link.words)}?</p>\n"
            f'<form method="post" action="{action}">'
            '<button type="submit">Unsubscribe</button></form>\n' + _again(link),
        )
    try:
        link = await runtime.write(unsubscribe, runtime.uow(), key=key, token=token)
    except BadUserInput as error:
        return _refused(error)
    return _page(
        "Unsubscribed",
        f"<p>You will no longer receive {escape(link.words)}.</p>\n" + _again(link),
    )
