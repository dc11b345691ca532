"""The mails are ready for translation: every template renders its wording
through gettext (a pseudo-language shows each sentence came from the
catalogue, values still escaped in HTML), every sentence is in the shipped
`careforall.pot` (which Babel's extractor reproduces), and
CAREFORALL_MAIL_LANGUAGE picks the catalogue (English without one)."""

from __future__ import annotations

import gettext
import re
import subprocess
import sys
from collections.abc import Iterator
from html import escape
from pathlib import Path

import pytest

from careforall.mail import templates
from careforall.mail.templates import LOCALE_DIR, Organisation, render
from careforall.mail_config import mail_settings
from careforall.settings import SettingsError

TEMPLATES = Path(templates.__file__).parent / "templates"
KINDS = sorted(
    p.name.removesuffix(".subject.txt") for p in TEMPLATES.glob("*.subject.txt")
)
ORG = Organisation(
    name="Hope & Care",
    address="1 Harbour Road",
    tax_id="EIN 12-3456789",
    public_url="https://give.example",
    language="xx",
)
# Every value any template names; a campaign title with markup in it.
VALUES = {
    "amount": "$25.00",
    "campaign_title": "Braces <b>for</b> Ada",
    "campaign_id": "cmp_1",
    "date": "7 December 2026",
    "pledge_id": "plg_1",
    "reason": "Card declined",
    "receipt_number": "R-000001",
    "title": "Dead letters",
    "body": "One event failed.\n\nSee the admin pages.",
    "count": 2,
    "total": "$50.00",
    "donations": [{"amount": "$25.00", "donor": "Dana"}] * 2,
    "goal": "$100.00",
    "raised": "$110.00",
    "address": "old@example.org",
    "new_address": "new@example.org",
    "link": "https://give.example/reset-password?token=t",
    "outcome": "REJECTED",
    "note": "No estimate.",
    "update_title": "Surgery done",
    "unsubscribe_url": "https://give.example/unsubscribe?token=t",
    "unsubscribe_choice": "campaign",
    "paused": True,
    "plan_id": "rcg_1",
}


class Pseudo(gettext.NullTranslations):
    """A pseudo-language: each sentence in ⟪ ⟫, so one that bypassed gettext
    shows plainly; records every message asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: set[str] = set()

    def gettext(self, message: str) -> str:
        self.asked.add(message)
        return f"⟪{message}⟫"

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        self.asked.update((singular, plural))
        return f"⟪{singular if n == 1 else plural}⟫"


@pytest.fixture
def pseudo(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pseudo]:
    catalogue = Pseudo()
    monkeypatch.setattr(
        templates,
        "translations",
        lambda language: catalogue if language == "xx" else gettext.NullTranslations(),
    )
    templates.environment.cache_clear()
    yield catalogue
    templates.environment.cache_clear()


def msgid_lines(pot: str) -> list[str]:
    return re.findall(r'^msgid(?:_plural)? ".*"$', pot, flags=re.MULTILINE)


def pot_messages() -> set[str]:
    text = (LOCALE_DIR / "careforall.pot").read_text()
    found = re.findall(r'^msgid(?:_plural)? "(.*)"$', text, flags=re.MULTILINE)
    return {m.replace('\\"', '"') for m in found if m}


def outside_translations(rendered: str) -> str:
    """What is left once each translated sentence and each value is taken out:
    layout and markup only, no English words."""
    rest = re.sub(r"⟪.*?⟫|https://[^\s\"]+", "", rendered, flags=re.DOTALL)
    values = [v for v in [*VALUES.values(), *vars(ORG).values()] if isinstance(v, str)]
    pieces = [piece for v in [*values, "Dana"] for piece in v.split("\n") if piece]
    for piece in sorted(pieces, key=len, reverse=True):
        rest = rest.replace(escape(piece), "").replace(piece, "")
    return re.sub(r"<[^>]*>|&\w+;|[\W\d_]", " ", rest)


@pytest.mark.parametrize("kind", KINDS)
def test_every_template_words_its_mail_through_gettext(
    kind: str, pseudo: Pseudo
) -> None:
    mail = render(kind, ORG, **VALUES)
    for part in (mail.text, mail.html):
        assert "⟪" in part
        # Markup, layout and the values given: no word outside gettext.
        assert outside_translations(part).split() == []
    # A value is text in HTML, also inside a translated sentence.
    assert "<b>" not in mail.html
    if "Braces" in mail.html:
        assert "Braces &lt;b&gt;for&lt;/b&gt; Ada" in mail.html
    assert pseudo.asked <= pot_messages()


def test_every_sentence_of_the_templates_is_in_the_shipped_catalogue_template(
    pseudo: Pseudo,
) -> None:
    for kind in KINDS:
        for choice in (
            "campaign",
            "donation_digest",
            "goal_reached",
            "campaign_updates",
        ):
            for outcome in ("ACTIVE", "REJECTED", "SUSPENDED"):
                render(
                    kind,
                    ORG,
                    **{
                        **VALUES,
                        "unsubscribe_choice": choice,
                        "outcome": outcome,
                        "count": 1,
                    },
                )
                render(kind, ORG, **{**VALUES, "paused": False})
                render(
                    kind,
                    ORG,
                    **{
                        **VALUES,
                        "unsubscribe_choice": choice,
                        "outcome": outcome,
                        "reason": None,
                    },
                )
    assert pseudo.asked == pot_messages()


def test_babel_extracts_the_shipped_catalogue_template(tmp_path: Path) -> None:
    pytest.importorskip("babel")
    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "careforall.pot"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "babel.messages.frontend",
            "extract",
            "-F",
            str(LOCALE_DIR / "babel.cfg"),
            "--no-wrap",
            "-o",
            str(out),
            "careforall/mail/templates",
        ],
        cwd=root,
        check=True,
        capture_output=True,
    )
    shipped = (LOCALE_DIR / "careforall.pot").read_text()
    assert msgid_lines(out.read_text()) == msgid_lines(shipped)


def test_english_needs_no_catalogue_and_an_unknown_language_falls_back_to_it() -> None:
    english = render(
        "refund", ORG.__class__(**{**vars(ORG), "language": "en"}), **VALUES
    )
    other = render("refund", ORG.__class__(**{**vars(ORG), "language": "de"}), **VALUES)
    assert english == other
    assert english.subject == "Your donation of $25.00 was refunded"
    assert '<html lang="en">' in english.html


def test_the_mail_language_is_read_from_the_environment() -> None:
    assert mail_settings({})["mail_language"] == "en"
    assert (
        mail_settings({"CAREFORALL_MAIL_LANGUAGE": " pt_BR "})["mail_language"]
        == "pt_BR"
    )
    with pytest.raises(SettingsError, match="CAREFORALL_MAIL_LANGUAGE"):
        mail_settings({"CAREFORALL_MAIL_LANGUAGE": "../etc"})
