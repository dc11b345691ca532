"""The wording of every mail: Jinja2 templates in `templates/`, one place.

Each kind has three files: `<kind>.subject.txt`, `<kind>.txt` (the plain-text
part) and `<kind>.html` (autoescaped: a campaign title is text, never markup).
Both parts extend a layout that names the organisation.

Ready for translation: every sentence is marked (`{% trans %}` blocks and
`_()`, Jinja2's i18n extension, new-style gettext so values are escaped in
HTML), and rendered through the catalogue of the organisation's language
(`CAREFORALL_MAIL_LANGUAGE`): `locale/<language>/LC_MESSAGES/careforall.mo`,
made from `locale/careforall.pot` (see docs/operations.md, "Translating the
mails"). English is the templates' own wording, so it needs no catalogue; a
language without one is written in English.
"""

from __future__ import annotations

import gettext
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "careforall"


@dataclass(frozen=True)
class Organisation:
    """Who sends: named in every mail (CAREFORALL_ORG_*, CAREFORALL_PUBLIC_URL),
    in its language (CAREFORALL_MAIL_LANGUAGE)."""

    name: str
    address: str | None
    tax_id: str | None
    public_url: str
    language: str = "en"


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def translations(language: str) -> gettext.NullTranslations:
    """The catalogue of `language`; English (the templates' words) without one."""
    return gettext.translation(
        DOMAIN, localedir=LOCALE_DIR, languages=[language], fallback=True
    )


@cache
def environment(language: str) -> Environment:
    """One environment per language, made once (templates compile once)."""
    env = Environment(
        loader=PackageLoader("careforall.mail", "templates"),
        autoescape=select_autoescape(enabled_extensions=("html",), default=False),
        undefined=StrictUndefined,  # a value a template names but was not given fails
        keep_trailing_newline=False,
        extensions=["jinja2.ext.i18n"],
    )
    catalogue = translations(language)
    env.install_gettext_translations(  # type: ignore[attr-defined]
        catalogue, newstyle=True
    )
    # What the HTML says it is written in: English when there is no catalogue.
    found = type(catalogue) is not gettext.NullTranslations
    env.globals["language"] = language if found else "en"
    return env


def render(kind: str, org: Organisation, **values: Any) -> Rendered:
    """The subject, text and HTML of one mail of `kind`."""
    env = environment(org.language)
    subject = " ".join(
        env.get_template(f"{kind}.subject.txt").render(org=org, **values).split()
    )
    values = {"org": org, "subject": subject, **values}
    return Rendered(
        subject=subject,
        text=env.get_template(f"{kind}.txt").render(values).strip() + "\n",
        html=env.get_template(f"{kind}.html").render(values).strip() + "\n",
    )
