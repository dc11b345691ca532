"""Automatic persisted queries (Apollo's protocol), over GET and POST.

A client sends `extensions.persistedQuery = {"version": 1, "sha256Hash": H}`
instead of the document. A known hash runs its document; an unknown one is
answered PERSISTED_QUERY_NOT_FOUND, and the client sends the document with
the hash once, which is kept if the hash is the document's SHA-256. Mobile
clients so send a few dozen bytes per request instead of the whole document,
and a GET with only a hash fits in any URL (so proxies can cache it).

Kept per process, in a bounded LRU: another process, or a restart, answers
NOT_FOUND once more and the client sends the document again.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from urllib.parse import urlencode

from starlette.requests import Request

NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
MISMATCH = "BAD_REQUEST"
DEFAULT_MAX_ENTRIES = 2_000


class PersistedQueryError(Exception):
    """Why a persisted query cannot run; the client's answer says it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PersistedQueries:
    """Documents by their SHA-256, the most recently used kept (thread-safe)."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._documents: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._documents)

    def resolve(self, query: object, extensions: object) -> str | None:
        """The document to run: `query` itself, or the one its hash names.

        None when the request has no persisted query (nothing to do);
        PersistedQueryError when the hash is unknown, malformed, or not the
        given document's.
        """
        if not isinstance(extensions, dict) or "persistedQuery" not in extensions:
            return None
        persisted = extensions["persistedQuery"]
        if not isinstance(persisted, dict) or persisted.get("version") != 1:
            raise PersistedQueryError(
                NOT_SUPPORTED, "Only version 1 of persisted queries is supported."
            )
        digest = persisted.get("sha256Hash")
        if not isinstance(digest, str) or len(digest) != 64:
            raise PersistedQueryError(
                MISMATCH, "persistedQuery.sha256Hash must be 64 hex digits."
            )
        digest = digest.lower()
        if isinstance(query, str):
            if hashlib.sha256(query.encode()).hexdigest() != digest:
                raise PersistedQueryError(
                    MISMATCH, "The sha256Hash given is not the query's SHA-256."
                )
            self._keep(digest, query)
            return query
        with self._lock:
            document = self._documents.get(digest)
            if document is not None:
                self._documents.move_to_end(digest)
        if document is None:
            raise PersistedQueryError(NOT_FOUND, "PersistedQueryNotFound")
        return document

    def _keep(self, digest: str, document: str) -> None:
        with self._lock:
            self._documents[digest] = document
            self._documents.move_to_end(digest)
            while len(self._documents) > self.max_entries:
                self._documents.popitem(last=False)


async def fill_in(request: Request, store: PersistedQueries) -> None:
    """Put the document a persisted query names into the request, so that
    everything after (the response cache, Strawberry) sees an ordinary one.

    Requests without a persisted query, or too malformed to tell, are left
    as they are for the usual checks to answer.
    """
    if request.method == "POST":
        body = await request.body()
        if b"persistedQuery" not in body:
            return
        try:
            payload = json.loads(body)
        except ValueError:
            return
        if not isinstance(payload, dict):
            return
        document = store.resolve(payload.get("query"), payload.get("extensions"))
        if document is not None and payload.get("query") != document:
            payload["query"] = document
            # Starlette keeps a read body here; Strawberry reads it from there.
            request._body = json.dumps(payload).encode()
        return
    if request.method != "GET":
        return
    params = request.query_params
    raw = params.get("extensions")
    if raw is None or "persistedQuery" not in raw:
        return
    try:
        extensions = json.loads(raw)
    except ValueError:
        return
    document = store.resolve(params.get("query"), extensions)
    if document is not None and params.get("query") != document:
        items = [(k, v) for k, v in params.multi_items() if k != "query"]
        request.scope["query_string"] = urlencode(
            [*items, ("query", document)]
        ).encode()
        # Starlette parses the query string once and keeps it; parse anew.
        request.__dict__.pop("_query_params", None)
