"""The console's tests: one Redis and one server of their own for the session, seeded through the
HTTP API, and Debian's Chromium driven by Playwright through `executable_path` (Playwright never
downloads a browser here). Without Chromium the browser tests are skipped, and the summary says so
loudly; the plain-HTTP tests of the serving rules run anyway.

Every page a test opens is watched: a console error, an uncaught exception, a request to another
origin, or a console response without the Content-Security-Policy fails the test."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tests.browser.seed import Shop, seed_shop
from tests.support import BOOTSTRAP, ROOT, Client, RedisProcess, ServerProcess

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Playwright

ARTIFACTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
)
LAUNCH_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SKIP_REASON = "browser tests need Debian's chromium (apt-get install -y chromium)"
CSP = "default-src 'self'"
FAILED_LOAD = re.compile(r"Failed to load resource: the server responded with a status of (\d+)")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    skipped = [
        r for r in terminalreporter.stats.get("skipped", []) if SKIP_REASON in str(r.longrepr)
    ]
    if skipped:
        terminalreporter.write_sep("!", "BROWSER TESTS SKIPPED", red=True, bold=True)
        terminalreporter.write_line(
            f"{len(skipped)} browser tests of the console did not run: no chromium on this "
            "machine. Install it with `apt-get install -y chromium` (.ci/run does).",
            red=True,
            bold=True,
        )


# --- processes and data -------------------------------------------------------------------


@pytest.fixture(scope="session")
def console_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    """A Redis of the console tests' own: the projects page lists exactly their projects."""
    server = RedisProcess(tmp_path_factory.mktemp("console-redis")).start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def console_server(
    console_redis: RedisProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    server = ServerProcess(console_redis.url, tmp_path_factory.mktemp("console-server")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shop(console_server: ServerProcess) -> Shop:
    return seed_shop(console_server.client())


@pytest.fixture
def api(console_server: ServerProcess) -> Client:
    """A plain HTTP client with the bootstrap key: what the API says, beside what the page says."""
    return console_server.client()


@pytest.fixture(scope="session")
def key_with(console_server: ServerProcess) -> Any:
    """Mint (once per scope set) a key with exactly these scopes."""
    made: dict[tuple[str, ...], str] = {}

    def make(*scopes: str) -> str:
        if scopes not in made:
            r = console_server.client().post(
                "/api/v1/keys", {"name": "console-" + "-".join(scopes), "scopes": list(scopes)}
            )
            assert r.status == 201, r.body
            made[scopes] = r.json["data"]["token"]
        return made[scopes]

    return make


# --- the browser --------------------------------------------------------------------------


# Package scope, not session: Playwright's sync API runs an event loop in this thread while it is
# open, and the rest of the suite (asyncio.run in tests/integration) needs it gone.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser tests: {SKIP_REASON}")
        pytest.skip(SKIP_REASON)
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="the dev extra installs playwright"
    )
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
    yield browser
    browser.close()


@dataclass
class Watch:
    """What a page did that no test should ever see."""

    origin: str
    allowed: list[tuple[int, re.Pattern[str]]] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    foreign_requests: list[str] = field(default_factory=list)
    without_csp: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def allow(self, status: int, path: str) -> None:
        """An API answer this test expects to fail (Chromium logs each as a console error)."""
        self.allowed.append((status, re.compile(re.escape(path) + "$")))

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        failed = FAILED_LOAD.match(message.text)
        if failed:
            status, path = int(failed[1]), urlsplit(message.location.get("url", "")).path
            if any(status == s and pattern.search(path) for s, pattern in self.allowed):
                return
        self.console_errors.append(f"{message.text} at {message.location}")

    def on_request(self, url: str) -> None:
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            self.foreign_requests.append(url)

    def on_response(self, url: str, headers: dict[str, str]) -> None:
        # The console's own answers (page and assets); the API's JSON carries no policy of its
        # own, as the server gains nothing but static files.
        if urlsplit(url).path.startswith("/ui") and CSP not in headers.get(
            "content-security-policy", ""
        ):
            self.without_csp.append(url)

    def check(self) -> None:
        assert not self.console_errors, self.console_errors
        assert not self.page_errors, self.page_errors
        assert not self.foreign_requests, self.foreign_requests
        assert not self.without_csp, self.without_csp
        assert not self.dialogs, f"the page opened browser dialogs: {self.dialogs}"


class Console:
    """One browser context on the console, watched, with the steps every test takes."""

    def __init__(self, context: BrowserContext, server: ServerProcess, name: str) -> None:
        self.context = context
        self.origin = f"http://127.0.0.1:{server.port}"
        self.url = self.origin + "/ui/"
        self.name = name
        self.watch = Watch(self.origin)
        context.on("request", lambda r: self.watch.on_request(r.url))
        context.on("response", lambda r: self.watch.on_response(r.url, r.headers))
        self.page: Page = context.new_page()
        self.page.on("console", self.watch.on_console)
        self.page.on("pageerror", lambda e: self.watch.page_errors.append(str(e)))
        self.page.on("dialog", self._dialog)
        self.page.set_default_timeout(10_000)

    def _dialog(self, dialog: Any) -> None:
        self.watch.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def open(self, route: str = "") -> Page:
        self.page.goto(self.url + route)
        return self.page

    def sign_in(self, key: str = BOOTSTRAP, route: str = "") -> Page:
        page = self.open(route)
        field = page.get_by_label("API key")
        field.fill(key)
        field.press("Enter")
        return page

    def session_key(self) -> Any:
        return self.page.evaluate("sessionStorage.getItem('edge-console.api-key')")

    def shot(self, name: str) -> Path:
        """A screenshot of the whole page, kept as an artifact of the test run."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{name}.png"
        self.page.screenshot(path=path, full_page=True)
        return path


@pytest.fixture
def console_factory(
    browser: Browser, console_server: ServerProcess, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """Consoles in fresh browser contexts (a laptop by default; a phone, dark mode on demand)."""
    opened: list[Console] = []

    def make(**context_options: Any) -> Console:
        options = {"viewport": {"width": 1280, "height": 900}, **context_options}
        context = browser.new_context(**options)
        console = Console(context, console_server, f"{request.node.name}-{len(opened)}")
        opened.append(console)
        return console

    yield make
    for console in opened:
        console.context.close()
    for console in opened:
        console.watch.check()


@pytest.fixture
def console(console_factory: Any) -> Console:
    made: Console = console_factory()
    return made
