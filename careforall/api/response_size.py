"""A cap on the size of one answer.

The query cost (api/cost.py) bounds how many values an answer holds, not how
long they are: a page of donations with 1,000-character messages is cheap to
count and large to send. An answer whose JSON is longer than
`graphql_max_response_bytes` is replaced by an error saying so; nothing of it
is sent.
"""

from __future__ import annotations

import json

TOO_LARGE_CODE = "BAD_USER_INPUT"


def encode_within(data: object, limit: int) -> str:
    """`data` as compact JSON (ASCII, so one byte a character), or a GraphQL
    error body when that is over `limit` bytes (0: no limit)."""
    text = json.dumps(data, separators=(",", ":"))
    if not limit or len(text) <= limit:
        return text
    error = {
        "message": f"The answer would be {len(text):,} bytes; at most {limit:,} "
        "are sent. Ask for fewer items (a smaller `first`) or fewer fields.",
        "extensions": {"code": TOO_LARGE_CODE},
    }
    return json.dumps({"data": None, "errors": [error]}, separators=(",", ":"))
