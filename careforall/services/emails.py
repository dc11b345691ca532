"""Email addresses: one spelling for each (NFKC, case folded) and a skeleton
under which addresses that only look alike are the same."""

from __future__ import annotations

import re
import unicodedata

from careforall.domain.errors import BadUserInput

MAX_EMAIL_LENGTH = 254
# No character that a mail header reads as a separator, a group or a comment
# (`a:victim@x`, `a,b@x`), nor a control character: an address is one mailbox.
_PART = r"[^@\s,;:<>()\"\[\]\\\x00-\x1f\x7f]"
_EMAIL = re.compile(rf"^{_PART}{{1,64}}@{_PART}+\.{_PART}+$")

# Characters that look like a Latin letter or digit in the fonts people read
# mail in (after NFKD and case folding), mapped to the one they imitate. From
# Unicode's confusables (UTS #39), the letters and digits of Cyrillic, Greek
# and Latin variants that phishing uses; digits that look like letters map to
# the letter.
_LOOKALIKES = {
    # Cyrillic
    "а": "a",
    "в": "b",
    "с": "c",
    "ԁ": "d",
    "е": "e",
    "ё": "e",
    "һ": "h",
    "і": "i",
    "ї": "i",
    "ј": "j",
    "к": "k",
    "ӏ": "l",
    "м": "m",
    "н": "h",
    "о": "o",
    "р": "p",
    "ԛ": "q",
    "г": "r",
    "ѕ": "s",
    "т": "t",
    "ѵ": "v",
    "ԝ": "w",
    "х": "x",
    "у": "y",
    "з": "3",
    # Greek
    "α": "a",
    "β": "b",
    "ε": "e",
    "η": "n",
    "ι": "i",
    "κ": "k",
    "ν": "v",
    "ο": "o",
    "ρ": "p",
    "τ": "t",
    "υ": "u",
    "χ": "x",
    "γ": "y",
    "ω": "w",
    # Latin look-alikes that NFKD leaves alone
    "ı": "i",
    "ȷ": "j",
    "ɑ": "a",
    "ɡ": "g",
    "ł": "l",
    "ø": "o",
    "đ": "d",
    "ħ": "h",
    "ǀ": "l",
    # digits and letters that pass for each other
    "0": "o",
    "1": "l",
    "|": "l",
    "5": "s",
}
_SKELETON = str.maketrans(_LOOKALIKES)


def normalize_email(email: str) -> str:
    """The address as stored and compared: NFKC, case folded, trimmed."""
    email = unicodedata.normalize("NFKC", email).strip().casefold()
    if len(email) > MAX_EMAIL_LENGTH or not _EMAIL.match(email):
        raise BadUserInput("Enter a valid email address, like name@example.org.")
    return email


def email_skeleton(email: str) -> str:
    """What an address looks like: two addresses with one skeleton are taken
    for each other by people, so only one account may have it.

    NFKD splits accented letters, the combining marks go, and each remaining
    look-alike becomes the character it imitates.
    """
    decomposed = unicodedata.normalize("NFKD", email.casefold())
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return bare.translate(_SKELETON)
