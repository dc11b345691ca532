"""WebSocket subscribers (`graphql-transport-ws`), in processes of their own.

`listen` runs in a child process: it opens many campaignTotals subscriptions,
stamps each message with the wall clock as it arrives, and reports, per
connection, when it first saw each pledge count. `SlowSubscriber` subscribes
over a raw socket and then never reads.
"""

from __future__ import annotations

import asyncio
import base64
import fcntl
import json
import os
import socket
import struct
import termios
import time
from multiprocessing.connection import Connection

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.bench.client import TOTALS_SUBSCRIPTION
from tests.bench.launch import raise_nofile

PROTOCOL = "graphql-transport-ws"


def subscribe_message(campaign_id: str, operation_id: str = "1") -> str:
    return json.dumps(
        {
            "id": operation_id,
            "type": "subscribe",
            "payload": {"query": TOTALS_SUBSCRIPTION, "variables": {"id": campaign_id}},
        }
    )


async def open_feed(ws_url: str, campaign_id: str) -> tuple[ClientConnection, int]:
    """A subscribed connection and the pledge count of its first message."""
    ws = await connect(
        ws_url,
        subprotocols=[Subprotocol(PROTOCOL)],
        open_timeout=120,
        ping_interval=None,
        close_timeout=2,
        # permessage-deflate is offered, as browsers do (the server declines).
        compression="deflate",
    )
    await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 120))
        if message["type"] == "connection_ack":
            break
        if message["type"] == "ping":
            await ws.send(json.dumps({"type": "pong"}))
    await ws.send(subscribe_message(campaign_id))
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), 120))
        if message["type"] == "next":
            if message["payload"].get("errors"):
                raise RuntimeError(str(message["payload"]["errors"])[:300])
            count: int = message["payload"]["data"]["campaignTotals"]["pledgeCount"]
            return ws, count
        if message["type"] == "ping":
            await ws.send(json.dumps({"type": "pong"}))
            continue
        raise RuntimeError(f"unexpected first message: {str(message)[:300]}")


class Feed:
    """One subscription: when it first saw each pledge count."""

    def __init__(self, ws: ClientConnection, count: int) -> None:
        self.ws = ws
        self.first_seen: dict[int, float] = {count: time.time()}
        self.highest = count
        self.error = ""
        self.changed = asyncio.Event()

    async def reach(self, count: int, timeout: float) -> float | None:
        """The wall-clock time a total of at least `count` pledges arrived."""
        deadline = time.monotonic() + timeout
        while self.highest < count:
            self.changed.clear()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                return None
        return min(t for c, t in self.first_seen.items() if c >= count)

    async def listen(self) -> None:
        try:
            async for raw in self.ws:
                stamp = time.time()
                message = json.loads(raw)
                if message["type"] == "next":
                    count = message["payload"]["data"]["campaignTotals"]["pledgeCount"]
                    self.first_seen.setdefault(count, stamp)
                    self.highest = max(self.highest, count)
                    self.changed.set()
                elif message["type"] == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
                else:
                    self.error = f"unexpected message: {str(message)[:200]}"
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            self.error = repr(exc)[:200]
        self.changed.set()


async def _listen(
    ws_url: str, campaign_id: str, count: int, pipe: Connection, parallel: int
) -> None:
    gate = asyncio.Semaphore(parallel)
    feeds: list[Feed] = []
    errors: list[str] = []
    tasks: list[asyncio.Task[None]] = []

    async def one() -> None:
        try:
            async with gate:
                ws, first = await open_feed(ws_url, campaign_id)
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            errors.append(repr(exc)[:200])
            return
        feed = Feed(ws, first)
        feeds.append(feed)
        tasks.append(asyncio.create_task(feed.listen()))

    began = time.monotonic()
    await asyncio.gather(*(one() for _ in range(count)))
    pipe.send(("ready", len(feeds), errors[:5], len(errors), time.monotonic() - began))
    loop = asyncio.get_running_loop()
    final, deadline_s = await loop.run_in_executor(None, pipe.recv)
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline and any(f.highest < final for f in feeds):
        await asyncio.sleep(0.05)
    pipe.send(
        (
            "done",
            [{str(k): v for k, v in f.first_seen.items()} for f in feeds],
            [f.error for f in feeds if f.error][:5],
        )
    )
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.wait_for(
        asyncio.gather(*(f.ws.close() for f in feeds), return_exceptions=True), 30
    )


def listen(
    ws_url: str, campaign_id: str, count: int, pipe: Connection, parallel: int = 50
) -> None:
    """Child process entry: `count` subscriptions until the parent says stop."""
    raise_nofile(count + 256)
    try:
        asyncio.run(_listen(ws_url, campaign_id, count, pipe, parallel))
    except Exception as exc:  # noqa: BLE001 - the parent must hear about it
        pipe.send(("crashed", repr(exc)[:500]))


def _frame(text: str) -> bytes:
    """A masked client text frame (RFC 6455)."""
    payload = text.encode()
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, 0x80 | size)
    elif size < 65536:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 0x80 | 127, size)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


class SlowSubscriber:
    """Subscribes `operations` times on one connection, then never reads again.

    Its receive buffer is tiny, so what the server sends it piles up on the
    server's side of the socket.
    """

    def __init__(self, port: int, campaign_id: str, operations: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        self.sock.settimeout(10)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                "GET /graphql HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: {PROTOCOL}\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise RuntimeError("the server closed the slow subscriber's socket")
            head += chunk
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(f"no WebSocket upgrade: {head[:200]!r}")
        self.sock.sendall(_frame(json.dumps({"type": "connection_init"})))
        for n in range(operations):
            self.sock.sendall(_frame(subscribe_message(campaign_id, f"slow{n}")))
        self.operations = operations

    def unread_bytes(self) -> int:
        raw = fcntl.ioctl(self.sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        value: int = struct.unpack("i", raw)[0]
        return value

    def close(self) -> None:
        self.sock.close()
