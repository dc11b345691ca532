"""What a search asks for: the words of a query, the orders of the campaign list."""

from __future__ import annotations

import enum
import re
from datetime import timedelta

from careforall.domain.errors import BadUserInput

MAX_SEARCH_LENGTH = 200
# More words narrow a search (every word must match) without making it more
# useful; each one costs the index a look-up.
MAX_WORDS = 8
MAX_WORD_LENGTH = 60
MAX_CATEGORY_LENGTH = 50
# TRENDING counts the donations captured in this window, up to now.
TRENDING_WINDOW = timedelta(hours=48)
# Letters and digits, in any script: everything else (quotes, stars, colons,
# brackets, operators of either database's query syntax) separates words.
_WORD = re.compile(r"[^\W_]+")


class CampaignSort(enum.StrEnum):
    NEWEST = "NEWEST"
    MOST_RAISED = "MOST_RAISED"
    CLOSEST_TO_GOAL = "CLOSEST_TO_GOAL"
    TRENDING = "TRENDING"


def search_words(text: str | None) -> tuple[str, ...]:
    """The words a search matches, lower-cased, in order: all must be found,
    the last one as a prefix (the user may still be typing it). A query with
    no letters or digits has no words and does not filter."""
    if text is None:
        return ()
    if len(text) > MAX_SEARCH_LENGTH:
        raise BadUserInput(f"search must be at most {MAX_SEARCH_LENGTH} characters.")
    words = [w.lower()[:MAX_WORD_LENGTH] for w in _WORD.findall(text)]
    return tuple(words[:MAX_WORDS])


def check_category_filter(category: str | None) -> str | None:
    """A category to filter by, trimmed; blank means no filter."""
    if category is None or not category.strip():
        return None
    category = category.strip()
    if len(category) > MAX_CATEGORY_LENGTH:
        raise BadUserInput(
            f"category must be at most {MAX_CATEGORY_LENGTH} characters."
        )
    return category
