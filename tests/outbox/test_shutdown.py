"""The background tasks stop when cancelled, even when a wake-up arrives in the
same instant (Python 3.11's asyncio.wait_for would swallow that cancellation
and the app's shutdown would wait forever)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from careforall.broadcaster import Broadcaster
from careforall.db import Database
from careforall.outbox.dispatcher import BatchResult, Dispatcher
from careforall.outbox.handlers import HandlerContext
from careforall.payments.sender import WebhookSender
from careforall.payments.simulated import SimulatedProvider
from careforall.settings import Settings


async def _cancel_while_woken(task: asyncio.Task[None], wake: Any) -> None:
    await asyncio.sleep(0.05)  # the task now waits for a wake-up or its timer
    wake()
    task.cancel()  # in the same loop iteration as the wake-up
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=2)


def test_the_dispatcher_stops_when_cancelled_as_it_is_woken(
    db: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    dispatcher = Dispatcher(
        HandlerContext(db=db, settings=settings, provider=SimulatedProvider(db)),
        Broadcaster(),
    )
    monkeypatch.setattr(dispatcher, "process_due", lambda: BatchResult(next_wait=5))

    async def scenario() -> None:
        task = asyncio.create_task(dispatcher.run())
        await _cancel_while_woken(task, dispatcher._wake.set)
        assert not dispatcher.alive

    asyncio.run(scenario())


def test_the_webhook_sender_stops_when_cancelled_as_it_is_woken(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    sender = WebhookSender(
        db, secret="s", url="http://127.0.0.1:9/", client_factory=httpx.AsyncClient
    )

    async def nothing_due(client: httpx.AsyncClient) -> float:
        return 5.0

    monkeypatch.setattr(sender, "_deliver_due", nothing_due)

    async def scenario() -> None:
        task = asyncio.create_task(sender.run())
        await _cancel_while_woken(task, sender._wake.set)
        assert not sender.alive

    asyncio.run(scenario())
