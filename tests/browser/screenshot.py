"""The README's picture of the results page: `.venv/bin/python -m tests.browser.screenshot [PATH]`
(default docs/console-results.png). It starts a Redis and a server of its own, seeds them as the
browser tests do, and photographs the page in Debian's chromium."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser.conftest import CHROMIUM, LAUNCH_ARGS
from tests.browser.seed import seed_shop
from tests.support import BOOTSTRAP, ROOT, RedisProcess, ServerProcess


def main(out: Path) -> None:
    assert CHROMIUM, "needs chromium (apt-get install -y chromium)"
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisProcess(Path(tmp) / "redis").start()
        server = ServerProcess(redis.url, Path(tmp) / "server").start()
        try:
            experiment = seed_shop(server.client()).experiment
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
                page = browser.new_page(viewport={"width": 1180, "height": 800})
                route = f"#/flags/{experiment['flag_id']}/experiments/{experiment['id']}"
                page.goto(f"http://127.0.0.1:{server.port}/ui/{route}")
                page.get_by_label("API key").fill(BOOTSTRAP)
                page.get_by_label("API key").press("Enter")
                page.locator("svg.rate-chart circle.mark").first.wait_for()
                # Down to the charts: the page as an analyst reads it, without the footer line.
                box = page.locator(".charts").bounding_box()
                assert box is not None
                height = box["y"] + box["height"] + 16
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(
                    path=out,
                    full_page=True,
                    clip={"x": 0, "y": 0, "width": 1180, "height": height},
                )
                browser.close()
        finally:
            server.stop()
            redis.kill()
    print(f"{out} ({out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "console-results.png")
