"""The background tasks stop when cancelled, even when a wake-up arrives in the
same instant (Python 3.11's asyncio.wait_for would swallow that cancellation
and the app's shutdown would wait forever)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from careforall.broadcaster import Broadcaster
from careforall.db import Database
from careforall.outbox.dispatcher import BatchResult, Dispatcher
from careforall.outbox.handlers import HandlerContext
from careforall.payments.sender import WebhookSender
from careforall.payments.simulated import SimulatedProvider
from careforall.settings import Settings
from tests.helpers.waiting import WatchedEvent, until


async def _cancel_while_woken(task: asyncio.Task[None], wake: WatchedEvent) -> None:
    await until(
        lambda: wake.waiting > 0 or task.done(),
        what="the task to wait for a wake-up or its timer",
    )
    assert not task.done(), task
    wake.set()
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
    wake = WatchedEvent()
    monkeypatch.setattr(dispatcher, "_wake", wake)

    async def scenario() -> None:
        task = asyncio.create_task(dispatcher.run())
        await _cancel_while_woken(task, wake)
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
    wake = WatchedEvent()
    monkeypatch.setattr(sender, "_wake", wake)

    async def scenario() -> None:
        task = asyncio.create_task(sender.run())
        await _cancel_while_woken(task, wake)
        assert not sender.alive

    asyncio.run(scenario())
