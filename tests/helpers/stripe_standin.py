"""A local stand-in for Stripe's API on 127.0.0.1, for the official library.

It takes form-encoded requests as Stripe's API does and answers JSON shaped
like Stripe's objects (`tests/helpers/stripe_api.py`). Beside that it:

- records every request with its Idempotency-Key (`requests`);
- honours Stripe's idempotency for POSTs: the same key with the same
  parameters gets the stored answer again (header `Idempotent-Replayed`) and
  has no second effect; the same key with other parameters is a 400
  `idempotency_error`;
- sends each event as a webhook signed in Stripe's scheme
  (`Stripe-Signature: t=…,v1=HMAC-SHA256(secret, "t.payload")`) to
  `webhook_url`, after its answer (`webhooks="after"`), before it
  (`"before"`), or not until `deliver()` is called (`"held"`);
- fails on demand, for the next N calls to one endpoint (`fail_next`):
  `"500"` answers Stripe's api_error in front of the API (no effect, nothing
  stored: the request never reached it), `"timeout"` makes the effect and
  stores the answer but holds it for `hold_seconds` (longer than the
  client's timeout), as when Stripe answered but the answer was lost.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from careforall.payment_config import StripeConfig
from tests.helpers.stripe_api import Answer, Json, StripeBook, error, new_id

SECRET_KEY = "sk_test_" + "standin0123456789abcdef"
WEBHOOK_SECRET = "whsec_" + "standin0123456789abcdef"
# Where the hosted pages of the tests' apps send donors back.
PUBLIC_URL = "https://give.example.org"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    params: dict[str, str]
    idempotency_key: str | None
    status: int
    replayed: bool


@dataclass(frozen=True)
class Delivery:
    event_id: str
    type: str
    status: int | None  # None: no answer (connection refused, timeout)


def endpoint_of(method: str, path: str) -> str:
    """A request's endpoint name for `fail_next`: create (a PaymentIntent),
    retrieve, search, confirm, capture, cancel, refund, checkout, customer,
    setup (a SetupIntent)."""
    parts = path.strip("/").split("/")
    if parts[-1] in ("capture", "cancel", "confirm", "search"):
        return parts[-1]
    if parts[1:2] == ["refunds"]:
        return "refund"
    if parts[1:2] == ["checkout"]:
        return "checkout"
    if parts[1:2] == ["customers"]:
        return "customer"
    if parts[1:2] == ["setup_intents"]:
        return "setup"
    return "create" if method == "POST" else "retrieve"


def sign(secret: str, payload: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.{payload}".encode(), hashlib.sha256)
    return f"t={t},v1={digest.hexdigest()}"


class StripeStandIn:
    def __init__(
        self,
        webhook_url: str | None = None,
        *,
        webhook_secret: str = WEBHOOK_SECRET,
        webhooks: str = "after",
        hold_seconds: float = 3.0,
    ) -> None:
        self.book = StripeBook()
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.webhooks = webhooks
        self.hold_seconds = hold_seconds
        self.requests: list[Recorded] = []
        self.deliveries: list[Delivery] = []
        self._stored: dict[str, tuple[list[tuple[str, str]], str, Answer]] = {}
        self._faults: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._held: list[Json] = []
        self._outgoing: queue.Queue[Json | None] = queue.Queue()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._threads = [
            threading.Thread(target=self._server.serve_forever, daemon=True),
            threading.Thread(target=self._send_loop, daemon=True),
        ]

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def config(self, **changes: Any) -> StripeConfig:
        """How the app reaches this stand-in: its URL, the test key and the
        secret its webhooks are signed with (`changes`: a timeout, a live key)."""
        values: dict[str, Any] = {
            "secret_key": SECRET_KEY,
            "webhook_secret": self.webhook_secret,
            "api_base": self.url,
        }
        return StripeConfig(**(values | changes))

    def start(self) -> StripeStandIn:
        self.book.base_url = self.url
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._outgoing.put(None)
        self._server.shutdown()
        self._server.server_close()

    # --- what the tests ask ---------------------------------------------

    def fail_next(self, endpoint: str, mode: str, times: int = 1) -> None:
        assert mode in ("500", "timeout"), mode
        with self._lock:
            self._faults.setdefault(endpoint, []).extend([mode] * times)

    def effects(self, kind: str | None = None) -> list[Any]:
        with self._lock:
            return [e for e in self.book.effects if kind is None or e.kind == kind]

    def calls(self, endpoint: str) -> list[Recorded]:
        with self._lock:
            return [
                r for r in self.requests if endpoint_of(r.method, r.path) == endpoint
            ]

    def intent_for(self, pledge_id: str) -> Json:
        with self._lock:
            found = [
                pi
                for pi in self.book.payment_intents.values()
                if pi["metadata"].get("pledge_id") == pledge_id
            ]
        assert len(found) == 1, f"{len(found)} PaymentIntents for {pledge_id}"
        return dict(found[0])

    def deliver(self) -> None:
        """Send the events held so far (`webhooks="held"`)."""
        with self._lock:
            held, self._held = self._held, []
        for event in held:
            self._outgoing.put(event)

    def post_event(self, event: Json, *, secret: str | None = None) -> int:
        """Sign and post one event now; returns the answer's status."""
        assert self.webhook_url is not None
        payload = json.dumps(event)
        header = sign(secret or self.webhook_secret, payload)
        response = httpx.post(
            self.webhook_url,
            content=payload.encode(),
            headers={"Stripe-Signature": header, "Content-Type": "application/json"},
            timeout=10.0,
        )
        return response.status_code

    def event(self, kind: str, obj: Json) -> Json:
        """An event of `kind` about `obj`, as Stripe would send it."""
        return {
            "id": new_id("evt"),
            "object": "event",
            "type": kind,
            "created": int(time.time()),
            "livemode": False,
            "data": {"object": obj},
        }

    # --- serving --------------------------------------------------------

    def answer(
        self, method: str, path: str, params: dict[str, str], key: str | None
    ) -> tuple[Answer, bool, str | None]:
        """The answer, whether it is a replay, and the fault to act out."""
        with self._lock:
            endpoint = endpoint_of(method, path)
            faults = self._faults.get(endpoint) or []
            fault = faults.pop(0) if faults else None
            if fault == "500":
                answer = error(500, "api_error", "An unknown error occurred")
                self._record(method, path, params, key, answer[0], False)
                return answer, False, None
            fingerprint = sorted(params.items())
            if method == "POST" and key is not None and key in self._stored:
                first, first_path, stored = self._stored[key]
                if first != fingerprint or first_path != path:
                    answer = error(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the "
                        "same parameters they were first used with.",
                    )
                    self._record(method, path, params, key, 400, False)
                    return answer, False, None
                self._record(method, path, params, key, stored[0], True)
                return stored, True, fault
            before = len(self.book.events)
            answer = self.book.handle(method, path, params)
            if method == "POST" and key is not None:
                self._stored[key] = (fingerprint, path, answer)
            self._record(method, path, params, key, answer[0], False)
            events = self.book.events[before:]
        self._dispatch(events)
        return answer, False, fault

    def pay_checkout(self, session_id: str, method: str) -> str:
        """The donor pays on the Checkout page; returns where they go next."""
        with self._lock:
            before = len(self.book.events)
            back = self.book.complete_checkout(session_id, method)
            events = self.book.events[before:]
        self._dispatch(events)
        return back

    def checkout_page(self, session_id: str) -> str | None:
        with self._lock:
            session = self.book.checkouts.get(session_id)
        if session is None:
            return None
        if session["mode"] == "setup":
            heading = "Save a card"
        else:
            total = session["amount_total"] / 100
            heading = f"Pay {total:.2f} {session['currency'].upper()}"
        return (
            "<!doctype html><html><head><title>Stand-in Checkout</title></head>"
            f"<body><h1>{html.escape(heading)}</h1>"
            f"<p>{html.escape(str(session['name']))}</p>"
            f'<form method="post" action="/pay/{session_id}">'
            '<button name="method" value="pm_card_visa">Pay</button>'
            '<button name="method" value="pm_card_chargeDeclined">Pay with a '
            "declined card</button>"
            '<button name="method" value="pm_card_authenticationRequired">Pay '
            "with a card whose bank asks the donor each time</button></form>"
            f'<a href="{html.escape(str(session["cancel_url"]))}">Back</a>'
            "</body></html>"
        )

    def _dispatch(self, events: list[Json]) -> None:
        if self.webhooks == "before":
            for event in events:
                self._post(event)
        elif self.webhooks == "held":
            with self._lock:
                self._held.extend(events)
        else:
            for event in events:
                self._outgoing.put(event)

    def _record(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        key: str | None,
        status: int,
        replayed: bool,
    ) -> None:
        self.requests.append(Recorded(method, path, params, key, status, replayed))

    def _send_loop(self) -> None:
        while (event := self._outgoing.get()) is not None:
            self._post(event)

    def _post(self, event: Json) -> None:
        status: int | None = None
        if self.webhook_url is not None:
            try:
                status = self.post_event(event)
            except httpx.HTTPError:
                status = None
        with self._lock:
            self.deliveries.append(Delivery(event["id"], event["type"], status))

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

            def _serve(self, method: str) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else url.query
                params = dict(parse_qsl(body, keep_blank_values=True))
                if url.path == "/favicon.ico":  # asked by the browser on /pay/
                    self.send_response(204)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if url.path.startswith("/pay/"):
                    self._page(method, url.path.removeprefix("/pay/"), params)
                    return
                auth = self.headers.get("Authorization") or ""
                if not auth.startswith("Bearer sk_"):
                    answer = error(401, "invalid_request_error", "Invalid API Key")
                    self._reply(answer, replayed=False)
                    return
                key = self.headers.get("Idempotency-Key")
                answer, replayed, fault = standin.answer(method, url.path, params, key)
                if fault == "timeout":
                    time.sleep(standin.hold_seconds)
                self._reply(answer, replayed=replayed)

            def _page(
                self, method: str, session_id: str, params: dict[str, str]
            ) -> None:
                """Stripe's hosted Checkout page, as plain as can be."""
                if method == "POST":
                    back = standin.pay_checkout(session_id, params["method"])
                    self.send_response(303)
                    self.send_header("Location", back)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                page = standin.checkout_page(session_id)
                data = (page or "no such Checkout Session").encode()
                self.send_response(200 if page else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _reply(self, answer: Answer, *, replayed: bool) -> None:
                status, body = answer
                data = json.dumps(body).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.send_header("Request-Id", new_id("req"))
                    if replayed:
                        self.send_header("Idempotent-Replayed", "true")
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting (a timeout test)

        return Handler


@contextmanager
def running(webhook_url: str | None = None, **options: Any) -> Iterator[StripeStandIn]:
    standin = StripeStandIn(webhook_url, **options).start()
    try:
        yield standin
    finally:
        standin.stop()
