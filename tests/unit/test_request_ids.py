"""New request ids: 32 hex digits, never repeated, also across forked processes."""

from __future__ import annotations

import os
import re

from careforall.middleware.requests import request_id

HEX_ID = re.compile(r"[0-9a-f]{32}")


def test_new_ids_are_32_hex_digits_and_never_repeat() -> None:
    ids = [request_id(None) for _ in range(20_000)]
    assert all(HEX_ID.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_a_forked_process_makes_ids_of_its_own() -> None:
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its next ids, to the parent
        try:
            os.write(writer, " ".join(request_id(None) for _ in range(100)).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        theirs = set(pipe.read().split())
    os.waitpid(child, 0)
    ours = {request_id(None) for _ in range(100)}
    assert len(theirs) == 100
    assert not theirs & ours


def test_a_sane_given_id_is_kept() -> None:
    assert request_id("edge-42.abc:7") == "edge-42.abc:7"
    assert HEX_ID.fullmatch(request_id("has spaces"))
