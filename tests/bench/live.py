"""Live scenarios: a donation end to end, and the viral campaign page."""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import time
import uuid
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

import httpx

from tests.bench import seed
from tests.bench.client import ANONYMOUS, AUTHORIZE, CREATE_PLEDGE, Api, check
from tests.bench.databases import Database
from tests.bench.processes import Process
from tests.bench.runner import Bench
from tests.bench.subscribers import Feed, SlowSubscriber, listen, open_feed


def latency_summary(seconds: list[float]) -> dict[str, Any]:
    """p50 / p99 / max in milliseconds of a list of durations in seconds."""
    if not seconds:
        return {"n": 0}
    ordered = sorted(seconds)
    if len(ordered) > 1:
        cuts = statistics.quantiles(ordered, n=100, method="inclusive")
        p50, p99 = cuts[49], cuts[98]
    else:
        p50 = p99 = ordered[0]
    return {
        "n": len(ordered),
        "p50_ms": round(p50 * 1000, 2),
        "p99_ms": round(p99 * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


async def _gql(
    http: httpx.AsyncClient, query: str, variables: dict[str, Any], token: str = ""
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await http.post(
        "/graphql", json={"query": query, "variables": variables}, headers=headers
    )
    response.raise_for_status()
    return check(response.json())


async def _donations(
    server: Process, campaign_id: str, count: int, deadline: float
) -> dict[str, Any]:
    after_answer: list[float] = []
    after_send: list[float] = []
    early = missing = 0
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        token = (await _gql(http, ANONYMOUS, {}))["startAnonymousSession"]["token"]
        ws, base = await open_feed(server.ws_url, campaign_id)
        feed = Feed(ws, base)
        listener = asyncio.create_task(feed.listen())
        try:
            for k in range(1, count + 1):
                data = await _gql(
                    http,
                    CREATE_PLEDGE,
                    {
                        "input": {
                            "campaignId": campaign_id,
                            "amountCents": 2500,
                            "idempotencyKey": uuid.uuid4().hex,
                        }
                    },
                    token,
                )
                pledge_id = data["createPledge"]["id"]
                sent = time.time()
                await _gql(http, AUTHORIZE, {"id": pledge_id}, token)
                answered = time.time()
                pushed = await feed.reach(base + k, deadline)
                if pushed is None:
                    missing += 1
                    continue
                if pushed < answered:
                    early += 1
                after_answer.append(max(0.0, pushed - answered))
                after_send.append(pushed - sent)
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
            await ws.close()
    return {
        "donations": count,
        "missing": missing,
        "pushed_before_answer": early,
        "answer_to_push": latency_summary(after_answer),
        "request_to_push": latency_summary(after_send),
    }


def donation_e2e(
    bench: Bench,
    server: Process,
    campaign_id: str,
    db: Database,
    *,
    name: str = "donation_e2e",
) -> None:
    """Pledge, authorize (pm_card_ok), auto-capture, and one subscriber's push:
    the time from the authorizePayment answer to the new total's arrival."""
    result = asyncio.run(
        _donations(server, campaign_id, bench.mode.e2e_donations, 10.0)
    )
    bench.record(name, kind="live", **result)
    lat = result["answer_to_push"]
    bench.log(
        f"  {name}: {result['donations']} donations, answer->push p50 "
        f"{lat.get('p50_ms')} ms, p99 {lat.get('p99_ms')} ms,"
        f" missing {result['missing']}"
    )
    if result["missing"]:
        bench.fail(name, f"{result['missing']} totals never pushed")


def _receive(pipe: Connection, timeout: float, what: str) -> Any:
    if not pipe.poll(timeout):
        raise RuntimeError(f"a subscriber process gave no {what} in {timeout:.0f}s")
    message = pipe.recv()
    if message[0] == "crashed":
        raise RuntimeError(f"a subscriber process crashed: {message[1]}")
    return message


def _captured_at(db: Database, pledge_ids: list[str]) -> dict[str, float]:
    marks = ",".join("?" * len(pledge_ids))
    rows = seed.query(
        db,
        f"SELECT pledge_id, at FROM pledge_transitions WHERE to_status = 'CAPTURED' "
        f"AND pledge_id IN ({marks})",
        tuple(pledge_ids),
    )
    return {
        pid: datetime.fromisoformat(at).replace(tzinfo=UTC).timestamp()
        for pid, at in rows
    }


def _wait_captured(db: Database, pledge_id: str, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = seed.scalar(
            db, "SELECT status FROM pledges WHERE id = ?", (pledge_id,)
        )
        if status == "CAPTURED":
            return True
        time.sleep(0.005)
    return False


def viral_page(bench: Bench, server: Process, campaign_id: str, db: Database) -> None:
    """`subscribers` open subscriptions on one campaign (from several processes)
    and one connection that never reads, while donations are captured."""
    mode = bench.mode
    ctx = multiprocessing.get_context("spawn")
    rss_idle = server.rss_mb()
    slow = SlowSubscriber(server.port, campaign_id, mode.slow_operations)
    shares = [
        mode.subscribers // mode.subscriber_processes
        + (1 if i < mode.subscribers % mode.subscriber_processes else 0)
        for i in range(mode.subscriber_processes)
    ]
    pipes: list[Connection] = []
    children = []
    began = time.monotonic()
    for share in shares:
        ours, theirs = ctx.Pipe()
        child = ctx.Process(
            target=listen, args=(server.ws_url, campaign_id, share, theirs), daemon=True
        )
        child.start()
        pipes.append(ours)
        children.append(child)
    try:
        opened = failed = 0
        for pipe in pipes:
            _, ok, errors, n_failed, _seconds = _receive(pipe, 900, "ready signal")
            opened += ok
            failed += n_failed
            if errors:
                bench.fail(
                    "viral_page", f"{n_failed} subscriptions failed: {errors[0]}"
                )
        open_s = time.monotonic() - began
        rss_open = server.rss_mb()
        # What each open subscription holds: the growth over the idle server.
        per_subscription_kb = (
            round((rss_open - rss_idle) * 1000 / opened, 1) if opened else None
        )
        bench.log(
            f"  viral_page: {opened:,} subscriptions open in {open_s:.1f}s,"
            f" server RSS {rss_idle:.0f} MB idle, {rss_open:.0f} MB open"
            f" ({per_subscription_kb} KB a subscription)"
        )
        base = seed.scalar(
            db,
            "SELECT pledge_count FROM campaign_totals WHERE campaign_id = ?",
            (campaign_id,),
        )
        pledge_ids: list[str] = []
        with Api(server.base_url) as api:
            token = api.anonymous_token()
            for _ in range(mode.viral_donations):
                pledge_id = api.pledge(token, campaign_id, 2500)
                api.authorize(token, pledge_id)
                if not _wait_captured(db, pledge_id):
                    bench.fail("viral_page", f"pledge {pledge_id} was not captured")
                pledge_ids.append(pledge_id)
                time.sleep(mode.viral_gap)
        final = base + len(pledge_ids)
        for pipe in pipes:
            pipe.send((final, mode.delivery_deadline))
        feeds: list[dict[str, float]] = []
        feed_errors: list[str] = []
        for pipe in pipes:
            _, seen, errors = _receive(pipe, mode.delivery_deadline + 120, "results")
            feeds.extend(seen)
            feed_errors.extend(errors)
    finally:
        for child in children:
            child.join(60)
            if child.is_alive():
                child.kill()
    unread = slow.unread_bytes()
    slow.close()
    captured_at = _captured_at(db, pledge_ids)
    delays: list[float] = []
    missing = 0
    per_donation = []
    for k, pledge_id in enumerate(pledge_ids, start=1):
        target = base + k
        mine: list[float] = []
        for seen in feeds:
            stamps = [t for c, t in seen.items() if int(c) >= target]
            if not stamps:
                missing += 1
                continue
            mine.append(max(0.0, min(stamps) - captured_at[pledge_id]))
        delays.extend(mine)
        per_donation.append(latency_summary(mine))
    summary = latency_summary(delays)
    bench.record(
        "viral_page",
        kind="live",
        subscribers=opened,
        failed_to_open=failed,
        open_seconds=round(open_s, 1),
        donations=len(pledge_ids),
        capture_to_receipt=summary,
        per_donation=per_donation,
        missing=missing,
        feed_errors=feed_errors,
        slow_subscriber={
            "operations": mode.slow_operations,
            "unread_bytes": unread,
        },
        rss_idle_mb=rss_idle,
        rss_open_mb=rss_open,
        per_subscription_kb=per_subscription_kb,
        rss_mb=server.rss_mb(),
        peak_rss_mb=server.peak_rss_mb(),
    )
    bench.log(
        f"  viral_page: capture->receipt p50 {summary.get('p50_ms')} ms, p99 "
        f"{summary.get('p99_ms')} ms, max {summary.get('max_ms')} ms,"
        f" missing {missing};"
        f" slow subscriber holds {unread:,} unread bytes; peak RSS"
        f" {server.peak_rss_mb():.0f} MB"
    )
    if missing:
        bench.fail("viral_page", f"{missing} deliveries never arrived")
    if feed_errors:
        bench.fail("viral_page", f"subscriber errors: {feed_errors[0]}")
