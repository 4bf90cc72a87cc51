"""Push to a real browser: headless Chromium (Debian's, driven by Playwright, which downloads no
browser) loads a page built from the real @openfeature/web-sdk and @openfeature/ofrep-web-provider
(tests/browser/push/, bundled with esbuild), served from another origin, with polling off. A
change made through proxy B reaches the page through its event stream on proxy A.

Needs chromium, node and npm (`.ci/run` installs them). Without them the test skips, and says so
loudly at the end of the run; under CI (CI set) it fails instead: CI must always run it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from proxy.store.embedded import free_port
from tests.e2e.helpers import make_flag, make_project
from tests.support import RedisProcess, ServerProcess, eventually

PAGE = Path(__file__).resolve().parent / "push"
BUNDLE = PAGE / "dist" / "bundle.js"
BULK = "/ofrep/v1/evaluate/flags"


class LoudSkip:
    """A plugin registered when the test cannot run: one banner at the end of the run."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.section("BROWSER PUSH TEST NOT RUN", sep="!", red=True, bold=True)
        terminalreporter.line(f"tests/browser/test_push.py was skipped: {self.reason}.", red=True)
        terminalreporter.line(
            "Install what it needs (as .ci/run does): apt-get install -y chromium nodejs npm",
            red=True,
        )


def cannot_run(config: pytest.Config, reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the browser test must run in CI: {reason}")
    if not config.pluginmanager.has_plugin("push-browser-skip"):
        config.pluginmanager.register(LoudSkip(reason), "push-browser-skip")
    pytest.skip(reason)


def build_page() -> None:
    """npm ci (when node_modules is missing) and the esbuild bundle (when it is missing)."""
    if not (PAGE / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=PAGE, check=True, timeout=600)
    if not BUNDLE.is_file():
        subprocess.run(["npm", "run", "build"], cwd=PAGE, check=True, timeout=120)


@pytest.fixture(scope="module")
def chromium(request: pytest.FixtureRequest) -> Any:
    """The package's browser (tests/browser/conftest.py: Debian's chromium, or a loud skip),
    once the page is built: Playwright's sync API can run only once in a thread."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        cannot_run(request.config, "no node or npm, to bundle the page")
    build_page()
    return request.getfixturevalue("browser")


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page_origin() -> Iterator[str]:
    """The page's own origin: a static server on another port than either proxy."""
    server = ThreadingHTTPServer(
        ("127.0.0.1", free_port()), functools.partial(QuietHandler, directory=str(PAGE))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def proxies(
    redis_server: RedisProcess, page_origin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    base = tmp_path_factory.mktemp("push")
    pair = tuple(
        ServerProcess(redis_server.url, base / name, EDGE_CORS_ORIGINS=page_origin).start()
        for name in ("a", "b")
    )
    yield pair  # type: ignore[misc]
    for server in pair:
        server.stop()


def open_streams(server: ServerProcess) -> float:
    for line in server.client(None).get("/metrics").body.decode().splitlines():
        if line.startswith("edge_streams_open "):
            return float(line.split()[1])
    return 0.0


def test_the_web_provider_shows_a_change_made_on_another_proxy_without_polling(
    chromium: Any, page_origin: str, proxies: tuple[ServerProcess, ServerProcess]
) -> None:
    a, b = proxies
    admin = b.client()
    project_id = make_project(admin)
    flag = make_flag(admin, project_id, key="banner", flag_type="boolean", default_value=False)
    r = admin.post(
        "/api/v1/keys", {"name": "web", "scopes": ["flags:evaluate"], "project_ids": [project_id]}
    )
    token = r.json["data"]["token"]
    eventually(lambda: a.client(token).post(BULK, {"context": {}}).status == 200)

    page = chromium.new_page()
    requests: list[tuple[str, str]] = []
    page.on("request", lambda req: requests.append((req.method, req.url)))
    query = urlencode({"proxy": f"http://127.0.0.1:{a.port}", "key": token, "flag": "banner"})
    page.goto(f"{page_origin}/index.html?{query}")
    page.wait_for_function("window.pushState && window.pushState.ready", timeout=10_000)
    assert page.text_content("#value") == "false"
    eventually(lambda: open_streams(a) >= 1)  # the page's EventSource is connected to A

    time.sleep(2.0)  # long enough for a poller to show itself
    bulk = [url for method, url in requests if method == "POST" and BULK in url]
    assert len(bulk) == 1, bulk

    r = admin.patch(f"/api/v1/flags/{flag['id']}", {"default_value": True})  # through B
    assert r.status == 200, r.body
    page.wait_for_function("document.getElementById('value').textContent === 'true'", timeout=5_000)

    bulk = [url for method, url in requests if method == "POST" and BULK in url]
    assert len(bulk) == 2 and "flagConfigEtag=" in bulk[1], bulk  # the event's re-fetch
    streams = [url for method, url in requests if method == "GET" and "/ofrep/v1/sse" in url]
    assert len(streams) == 1 and streams[0].startswith(f"http://127.0.0.1:{a.port}/"), streams
    state = page.evaluate("window.pushState")
    assert state["changes"] == 1 and state["errors"] == [], state
    page.close()
