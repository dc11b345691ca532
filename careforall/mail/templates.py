"""The wording of every mail: Jinja2 templates in `templates/`, one place.

Each kind has three files: `<kind>.subject.txt`, `<kind>.txt` (the plain-text
part) and `<kind>.html` (autoescaped: a campaign title is text, never markup).
Both parts extend a layout that names the organisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

_ENV = Environment(
    loader=PackageLoader("careforall.mail", "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default=False),
    undefined=StrictUndefined,  # a value a template names but was not given fails
    keep_trailing_newline=False,
)


@dataclass(frozen=True)
class Organisation:
    """Who sends: named in every mail (CAREFORALL_ORG_*, CAREFORALL_PUBLIC_URL)."""

    name: str
    address: str | None
    tax_id: str | None
    public_url: str


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def render(kind: str, org: Organisation, **values: Any) -> Rendered:
    """The subject, text and HTML of one mail of `kind`."""
    subject = " ".join(
        _ENV.get_template(f"{kind}.subject.txt").render(org=org, **values).split()
    )
    values = {"org": org, "subject": subject, **values}
    return Rendered(
        subject=subject,
        text=_ENV.get_template(f"{kind}.txt").render(values).strip() + "\n",
        html=_ENV.get_template(f"{kind}.html").render(values).strip() + "\n",
    )
