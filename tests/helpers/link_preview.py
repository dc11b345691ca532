"""What a link preview (a chat app, a social network) reads from a shared
page: its meta tags, its title and its scripts."""

from __future__ import annotations

from html.parser import HTMLParser


class Head(HTMLParser):
    """The page's meta tags and scripts, as a browser or a link preview reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.meta: dict[str, str] = {}
        self.scripts: list[dict[str, str | None]] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "meta":
            key = found.get("property") or found.get("name")
            if key:
                self.meta[key] = found.get("content") or ""
        if tag == "script":
            self.scripts.append(found)
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def head(html: str) -> Head:
    parser = Head()
    parser.feed(html)
    return parser
