"""Real-browser tests: Debian's headless Chromium, driven by Playwright for
Python, against a real `careforall serve` process on 127.0.0.1.

No browser is ever downloaded: Playwright is pointed at /usr/bin/chromium. When
it (or Playwright) is missing these tests skip with the reason, except in CI
(env CI set), where they fail. Every page a test opens is watched for console
errors and uncaught exceptions; any one fails the test. Screenshots go to
test-artifacts/screenshots/, listed at the end of the run.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.helpers.api import ServerGQL
from tests.helpers.server import Server

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
TIMEOUT_MS = 10_000
DESKTOP = {"width": 1200, "height": 900}
PHONE = {"width": 390, "height": 844}

_saved: list[Path] = []


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(
            f"{reason}. CI must provide it: `apt-get install -y chromium` and "
            "`pip install -e '.[test]'` (Playwright).",
            pytrace=False,
        )
    pytest.skip(f"{reason}; browser tests skipped (in CI they fail)")


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        _unavailable(f"Chromium is not installed at {CHROMIUM}")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed")
    if SCREENSHOTS.exists():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True)
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as playwright:
        # launch() gives the browser a fresh temporary user-data directory, and
        # each test's contexts are fresh, isolated profiles inside it.
        instance = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="package")
def web_server(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory, template_db: Path
) -> Iterator[Server]:
    """One server for the browser tests; each test makes its own campaigns."""
    workdir = tmp_path_factory.mktemp("web-server")
    db_path = workdir / "careforall.db"
    shutil.copy(template_db, db_path)
    server = Server(workdir, db_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def api(web_server: Server) -> Iterator[ServerGQL]:
    with httpx.Client(base_url=web_server.base_url, timeout=10.0) as client:
        yield ServerGQL(client)


@dataclass
class Pages:
    """Opens pages of the web app, each in its own browser context (a separate
    visitor) unless a context is given, and collects their console errors."""

    browser: Browser
    base_url: str
    errors: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)
    contexts: list[BrowserContext] = field(default_factory=list)
    pages: list[Page] = field(default_factory=list)

    def visitor(self, viewport: dict[str, int] | None = None) -> BrowserContext:
        context = self.browser.new_context(
            base_url=self.base_url,
            locale="en-US",
            timezone_id="UTC",
            viewport=viewport or DESKTOP,  # type: ignore[arg-type]
        )
        context.set_default_timeout(TIMEOUT_MS)
        self.contexts.append(context)
        return context

    def open(
        self,
        route: str = "#/",
        context: BrowserContext | None = None,
        viewport: dict[str, int] | None = None,
    ) -> Page:
        page = (context or self.visitor(viewport)).new_page()
        name = f"page {len(self.pages) + 1}"
        page.on(
            "console",
            lambda message: self._console(name, message.type, message.text, page.url),
        )
        page.on("pageerror", lambda error: self._error(f"{name}: uncaught {error}"))
        self.pages.append(page)
        page.goto(f"/{route}")
        page.wait_for_selector("main:not([aria-busy])")
        return page

    def allow(self, pattern: str) -> None:
        """A console error this test provokes on purpose (e.g. a dropped request)."""
        self.allowed.append(re.compile(pattern))

    def _console(self, name: str, kind: str, text: str, url: str) -> None:
        if kind == "error":
            self._error(f"{name} ({url}): console error: {text}")

    def _error(self, text: str) -> None:
        if not any(p.search(text) for p in self.allowed):
            self.errors.append(text)

    def close(self) -> None:
        for context in self.contexts:
            context.close()


@pytest.fixture
def pages(
    browser: Browser, web_server: Server, request: pytest.FixtureRequest
) -> Iterator[Pages]:
    opened = Pages(browser=browser, base_url=web_server.base_url)
    yield opened
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for number, page in enumerate(opened.pages, 1):
            if not page.is_closed():
                shot(page, f"FAILED-{request.node.name}-{number}", check=False)
        print(f"===== {web_server.log_path} (last lines) =====")
        print("\n".join(web_server.log_text().splitlines()[-40:]))
    opened.close()
    assert not opened.errors, "errors in the browser console:\n" + "\n".join(
        opened.errors
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


UNLABELLED = """() => [...document.querySelectorAll("input, select, textarea, button")]
  .filter((el) => el.type !== "hidden" && el.offsetParent !== null)
  .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
    && !(el.tagName === "BUTTON" && el.textContent.trim()))
  .map((el) => el.outerHTML.slice(0, 120))"""


def shot(page: Page, name: str, *, check: bool = True) -> Path:
    """Save a full-page screenshot; by default also check every control is labelled."""
    if check:
        unlabelled = page.evaluate(UNLABELLED)
        assert not unlabelled, f"controls without a label on {page.url}: {unlabelled}"
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    _saved.append(path)
    return path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _saved:
        return
    terminalreporter.section("browser screenshots")
    terminalreporter.write_line(f"{len(_saved)} screenshots in {SCREENSHOTS}:")
    for path in _saved:
        terminalreporter.write_line(f"  {path}")
