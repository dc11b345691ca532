"""create_app(settings) -> Starlette: routes, middleware and the lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from datetime import timedelta
from typing import TYPE_CHECKING

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from careforall import collector, redaction, tracing
from careforall.api.context import GraphQLView
from careforall.api.notification_hub import NotificationHub
from careforall.api.response_cache import ResponseCache
from careforall.backup import hold_server_lock
from careforall.broadcaster import Broadcaster
from careforall.db import Database, make_engine, web_dir
from careforall.endpoints.export import export_donations
from careforall.endpoints.giving_summary import download_giving_summary
from careforall.endpoints.health import healthz, metrics_endpoint, readyz, scrape
from careforall.endpoints.media import (
    UPLOAD_PATH,
    media_file,
    upload_campaign_image,
    upload_limit,
)
from careforall.endpoints.personal_data import download_personal_data
from careforall.endpoints.share import campaign_share_page
from careforall.endpoints.stripe_webhooks import stripe_webhook
from careforall.endpoints.unsubscribe import unsubscribe_page
from careforall.endpoints.webhooks import payments_webhook
from careforall.maintenance import run_payment_reconcile, run_retention
from careforall.middleware.requests import RequestMetrics
from careforall.middleware.security import security_middleware
from careforall.outbox.change_feed import ChangeFeed
from careforall.outbox.dispatcher import Dispatcher
from careforall.outbox.handlers import HandlerContext
from careforall.outbox.listener import Listener
from careforall.outbox.mail_rounds import MailRounds
from careforall.outbox.mailer import MailSender
from careforall.outbox.recurring import RecurringScheduler
from careforall.payments.provider import PaymentProvider
from careforall.payments.sender import WebhookSender
from careforall.payments.simulated import SimulatedProvider
from careforall.runtime import Runtime, media_store
from careforall.services import totals
from careforall.services.auth import TokenKeys
from careforall.services.bootstrap import NotPromoted, ensure_admin
from careforall.services.ratelimit import Limiter, RateLimiter
from careforall.services.ratelimit_shared import SharedRateLimiter
from careforall.services.secrets import kept_secret
from careforall.services.unit_of_work import UnitOfWork
from careforall.services.writer import Writer
from careforall.settings import Settings

if TYPE_CHECKING:
    import httpx

    from careforall.payments.stripe import StripeProvider

log = logging.getLogger("careforall")


def _start_runtime(
    settings: Settings, db: Database, provider: PaymentProvider
) -> Runtime:
    """Blocking start-up work: secrets, the admin, and totals repaired."""
    jwt_secret = kept_secret(db, "jwt_secret", settings.jwt_secret)
    webhook_secret = kept_secret(db, "webhook_secret", settings.webhook_secret)
    redaction.keep_out(jwt_secret, webhook_secret, settings.admin_password)
    if settings.stripe is not None:
        redaction.keep_out(settings.stripe.secret_key, settings.stripe.webhook_secret)
    if settings.admin_email and settings.admin_password:
        try:
            ensure_admin(
                UnitOfWork(db),
                email=settings.admin_email,
                password=settings.admin_password,
            )
        except NotPromoted as refused:
            # Someone may have registered the address before the operator set
            # it: their account must not become admin by a restart.
            log.warning("CAREFORALL_ADMIN_EMAIL: %s", refused)
    drifts = totals.reconcile(UnitOfWork(db))
    if drifts:
        log.warning("totals repaired at start", extra={"campaigns": len(drifts)})
    keys = TokenKeys(
        secret=jwt_secret,
        user_ttl=timedelta(hours=settings.user_token_hours),
        anonymous_ttl=timedelta(days=settings.anonymous_token_days),
    )
    return Runtime(
        settings=settings,
        db=db,
        keys=keys,
        provider=provider,
        webhook_secret=webhook_secret,
        # Group commit is for SQLite's single writer; PostgreSQL commits
        # concurrent transactions together by itself.
        writer=None if db.is_postgres else Writer(db),
        media=media_store(settings),
    )


def _webhook_sender(app: Starlette, runtime: Runtime) -> WebhookSender:
    """The simulated provider's webhooks, posted to this server (or the URL
    configured for them)."""
    settings = runtime.settings

    def client() -> httpx.AsyncClient:
        import httpx  # with the first webhook due (WebhookSender)

        if settings.provider_webhook_url:
            return httpx.AsyncClient(timeout=10.0)
        # No socket (tests with an in-process client): post into the app itself.
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=_IN_PROCESS
        )

    return WebhookSender(
        runtime.db,
        secret=runtime.webhook_secret,
        url=settings.provider_webhook_url or f"{_IN_PROCESS}/webhooks/payments",
        client_factory=client,
        base_delay=settings.webhook_retry_base_delay,
    )


_IN_PROCESS = "http://careforall.local"


def _mailer(runtime: Runtime) -> MailSender | None:
    """The mail sender; none without an SMTP server (the mails are kept for the
    admins to read)."""
    settings = runtime.settings
    if settings.smtp is None:
        return None
    return MailSender(runtime.db, settings.smtp, sender=settings.mail_from)


def _listener(db: Database, dispatcher: Dispatcher) -> Listener | ChangeFeed | None:
    """Several processes: what the others commit wakes this one's dispatcher,
    moves its response cache on and pushes the totals they changed
    (PostgreSQL's notifications; SQLite's change feed). None for one process."""
    if not db.shared:
        return None

    def outbox_changed() -> None:
        db.data_changed_elsewhere()
        dispatcher.wake()

    def totals_changed(campaigns: dict[str, str | None] | None) -> None:
        db.data_changed_elsewhere()
        dispatcher.push_from_database(campaigns)

    if db.is_postgres:
        return Listener(db.engine, on_outbox=outbox_changed, on_totals=totals_changed)
    path = db.engine.url.database
    assert path, "several processes serve an SQLite file, never :memory:"
    feed = ChangeFeed(path, on_outbox=outbox_changed, on_totals=totals_changed)
    dispatcher.settled = feed.poke
    return feed


async def _web_app_page(request: Request) -> Response:
    """The web app's page for a mailed link: never cached (the address holds a
    token), and sent with no Referer anywhere (the security headers)."""
    return FileResponse(
        web_dir() / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


class _App(Starlette):
    """Starlette, handing a WebSocket straight to its route.

    The middleware is all for HTTP and lets a WebSocket through, yet every
    layer (Starlette's error and exception handlers, CORS, the app's own, the
    router) would stay on the socket's stack, a suspended frame each, for as
    long as it is open: a few KB on each of a viral page's thousands.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            for route in self.router.routes:
                if not isinstance(route, WebSocketRoute):
                    continue
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope["app"], scope["router"] = self, self.router
                    scope.update(child_scope)
                    await route.app(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


def _routes(graphql: GraphQLView) -> list[BaseRoute]:
    return [
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        Route("/webhooks/payments", payments_webhook, methods=["POST"]),
        Route("/webhooks/stripe", stripe_webhook, methods=["POST"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/admin/export/donations.csv", export_donations, methods=["GET"]),
        Route("/account/data", download_personal_data, methods=["GET"]),
        Route("/account/giving/{year}.csv", download_giving_summary, methods=["GET"]),
        # The links in account mails open the web app, which reads `token`
        # from the address and then removes it from the address bar.
        Route("/reset-password", _web_app_page, methods=["GET"]),
        Route("/verify-email", _web_app_page, methods=["GET"]),
        Route("/unsubscribe", unsubscribe_page, methods=["GET", "POST"]),
        Route(
            "/campaigns/{campaign_id}/image", upload_campaign_image, methods=["POST"]
        ),
        Route("/media/{name}", media_file, methods=["GET", "HEAD"]),
        # A campaign's share link: the app, with the campaign's preview tags.
        Route("/c/{campaign_id}", campaign_share_page, methods=["GET", "HEAD"]),
        Mount("/", StaticFiles(directory=web_dir(), html=True), name="web"),
    ]


class _MetricsServer(uvicorn.Server):
    """A second, small server for /metrics alone (CAREFORALL_METRICS_PORT).

    It leaves the signals to the main server, which stops it in its lifespan.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _metrics_server(
    app: Starlette, settings: Settings
) -> tuple[_MetricsServer, socket.socket] | None:
    """The metrics server and its bound socket, or None without a metrics port.

    The socket is bound here so that a port in use stops the start with a
    message that names the setting.
    """
    if settings.metrics_port is None:
        return None
    host, port = settings.metrics_host, settings.metrics_port
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RuntimeError(
            f"CAREFORALL_METRICS_PORT: cannot serve /metrics on {host}:{port}: {exc}"
        ) from None

    async def endpoint(request: Request) -> Response:
        return await scrape(request, app.state)

    metrics_app = Starlette(routes=[Route("/metrics", endpoint, methods=["GET"])])
    config = uvicorn.Config(
        metrics_app, lifespan="off", log_level="warning", access_log=False
    )
    return _MetricsServer(config), sock


@contextlib.asynccontextmanager
async def _serving_metrics(app: Starlette, settings: Settings) -> AsyncIterator[None]:
    """/metrics on its own port for as long as the app runs (when configured)."""
    made = _metrics_server(app, settings)
    if made is None:
        yield
        return
    server, sock = made
    task = asyncio.create_task(server.serve(sockets=[sock]), name="metrics-server")
    try:
        yield
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        sock.close()


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    settings.check()
    broadcaster: Broadcaster[totals.TotalsFigures] = Broadcaster()
    graphql = GraphQLView(
        broadcaster=broadcaster,
        response_cache=ResponseCache(max_age=settings.response_cache_seconds),
    )
    app = _App(
        routes=_routes(graphql),
        middleware=[
            Middleware(RequestMetrics),
            *security_middleware(
                settings,
                larger_bodies=((UPLOAD_PATH, upload_limit(settings.image_max_bytes)),),
            ),
        ],
        lifespan=_lifespan(settings, broadcaster, NotificationHub()),
    )
    app.state.settings = settings
    app.state.rate_limiter = _rate_limiter(settings)
    return app


def _rate_limiter(settings: Settings) -> Limiter:
    """Counts in the process (one process serves: the fastest), or in the
    file that the processes of `serve --workers N` share."""
    if settings.rate_limit_store is None:
        return RateLimiter()
    shared = SharedRateLimiter(settings.rate_limit_store)
    shared.open()
    return shared


async def _stop(
    runtime: Runtime,
    listener: Listener | ChangeFeed | None,
    tasks: list[asyncio.Task[None]],
) -> None:
    # Queued writes finish (and are published) before anything stops.
    if runtime.writer is not None:
        await asyncio.to_thread(runtime.writer.stop)
    if listener is not None:
        await asyncio.to_thread(listener.stop)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    if runtime.settings.stripe is not None:
        from careforall.payments.stripe import StripeProvider

        if isinstance(runtime.provider, StripeProvider):
            runtime.provider.close()
    runtime.db.dispose()


def _lifespan(
    settings: Settings,
    broadcaster: Broadcaster[totals.TotalsFigures],
    notifications: NotificationHub,
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]:
    """What runs for the server's life: the database, the writer, the outbox
    dispatcher, the simulated provider's webhooks, the mail sender, the
    notification hub, retention, the recurring gifts' scheduler and (several
    processes) the listener or change feed; started in order, stopped after the queued
    writes have finished."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tracer_provider = tracing.install(settings.traces_exporter)
        # Held for the server's life: `careforall restore` refuses meanwhile.
        server_lock = await asyncio.to_thread(hold_server_lock, settings)
        db = Database(make_engine(settings), processes=settings.workers)
        sender_ref: list[WebhookSender] = []
        provider: PaymentProvider = SimulatedProvider(
            db, on_webhook=lambda: sender_ref[0].wake() if sender_ref else None
        )
        stripe_provider: StripeProvider | None = None
        if settings.stripe is not None:
            # Loaded only where Stripe is configured: the library and its
            # HTTP clients take a sixth of a second to import.
            from careforall.payments.stripe import StripeProvider

            provider = stripe_provider = StripeProvider(db, settings.stripe)
        runtime = await asyncio.to_thread(_start_runtime, settings, db, provider)
        dispatcher = Dispatcher(
            HandlerContext(db=db, settings=settings, provider=provider), broadcaster
        )
        db.on_events_due(dispatcher.wake)
        sender = _webhook_sender(app, runtime)
        sender_ref.append(sender)
        if runtime.writer is not None:
            runtime.writer.start()
        listener = _listener(db, dispatcher)
        app.state.runtime = runtime
        app.state.dispatcher = dispatcher
        app.state.sender = sender
        app.state.mailer = mailer = _mailer(runtime)
        app.state.broadcaster = broadcaster
        app.state.notifications = notifications
        tasks = [
            asyncio.create_task(dispatcher.run(), name="outbox-dispatcher"),
            asyncio.create_task(sender.run(), name="webhook-sender"),
            asyncio.create_task(notifications.run(db), name="notifications"),
            asyncio.create_task(
                run_retention(db, settings, runtime.media), name="retention"
            ),
            asyncio.create_task(
                MailRounds(db, settings).run(),
                name="periodic-mails",
            ),
            asyncio.create_task(
                RecurringScheduler(
                    db, provider, every=settings.recurring_interval_seconds
                ).run(),
                name="recurring-gifts",
            ),
        ]
        if mailer is not None:
            tasks.append(asyncio.create_task(mailer.run(), name="mail-sender"))
        if stripe_provider is not None and settings.stripe is not None:
            reconcile = run_payment_reconcile(
                db,
                stripe_provider,
                interval=settings.stripe.reconcile_interval_seconds,
                older_than=timedelta(minutes=settings.stripe.reconcile_after_minutes),
            )
            tasks.append(asyncio.create_task(reconcile, name="payment-reconcile"))
        if listener is not None:
            # After the dispatcher's task exists, so it has a loop to push on.
            await asyncio.sleep(0)
            listener.start()
        collector.freeze_startup_heap()
        try:
            async with _serving_metrics(app, settings):
                yield
        finally:
            await _stop(runtime, listener, tasks)
            app.state.rate_limiter.close()
            tracing.uninstall(tracer_provider)
            if server_lock is not None:
                server_lock.release()

    return lifespan
