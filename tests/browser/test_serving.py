"""How the server serves the console, over plain HTTP (no browser): the page and its assets with
their security and cache headers, 404s in the API's shape, no traversal, no listing, and nothing
at all with EDGE_CONSOLE=0. Also what the files may not contain, which the CSP would refuse."""

from __future__ import annotations

import glob
import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from proxy import console
from proxy.settings import Settings
from tests.support import ROOT, Client, RedisProcess, ServerProcess

CONSOLE_DIR = ROOT / "proxy" / "console"
SECURITY = {
    "content-security-policy": (
        "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@pytest.fixture
def web(console_server: ServerProcess) -> Client:
    return console_server.client(None)  # a browser sends no key for the page


def asset_paths(page: bytes) -> list[str]:
    return re.findall(r'(?:href|src)="(assets/[^"]+)"', page.decode())


def assert_secured(headers: dict[str, str]) -> None:
    for name, value in SECURITY.items():
        assert headers.get(name) == value, (name, headers)


def test_ui_redirects_to_ui_slash_with_a_relative_location(web: Client) -> None:
    r = web.get("/ui", headers={"Host": "evil.example"})
    assert r.status == 307
    assert r.headers["location"] == "ui/"  # resolved against /ui: /ui/, whatever the Host said
    assert_secured(r.headers)


def test_page_is_html_revalidated_on_every_load_under_the_policy(web: Client) -> None:
    r = web.get("/ui/")
    assert r.status == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache"
    assert r.headers["etag"]
    assert_secured(r.headers)
    assert b'<script type="module" src="assets/' in r.body
    assert b"__ASSETS__" not in r.body


def test_page_answers_304_to_its_own_etag(web: Client) -> None:
    etag = web.get("/ui/").headers["etag"]
    r = web.get("/ui/", headers={"If-None-Match": etag})
    assert r.status == 304
    assert r.body == b""
    assert_secured(r.headers)


def test_assets_are_cached_for_good_under_a_release_path(web: Client) -> None:
    paths = asset_paths(web.get("/ui/").body)
    assert {p.rsplit("/", 1)[-1] for p in paths} == {"icon.svg", "console.css", "main.js"}
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for path in [*paths, *(p.replace("main.js", "views/experiment.js") for p in paths)]:
        r = web.get("/ui/" + path)
        assert r.status == 200, path
        assert r.headers["content-type"].startswith(types[Path(path).suffix])
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.headers["etag"]
        assert_secured(r.headers)
        assert web.get("/ui/" + path, headers={"If-None-Match": r.headers["etag"]}).status == 304


def test_head_gives_the_headers_without_the_body(web: Client) -> None:
    get, head = web.get("/ui/"), web.request("HEAD", "/ui/")
    assert head.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == str(len(get.body))


@pytest.mark.parametrize(
    "path",
    [
        "/ui/index.html",
        "/ui/nope",
        "/ui/console.css",  # only under the release path
        "/ui/assets/000000000000/console.css",  # another release
        "/ui/js/",
        "/ui/assets/",
        "/ui/__init__.py",
        "/ui/../proxy/settings.py",
        "/ui/%2e%2e/proxy/settings.py",
        "/ui/%2e%2e%2fproxy%2fsettings.py",
        "/ui/..%2f..%2fpyproject.toml",
        "/ui//etc/passwd",
    ],
)
def test_unknown_paths_are_404_in_the_api_error_shape(web: Client, path: str) -> None:
    r = web.get(path)
    assert r.status == 404, r.body
    assert r.json == {"error": "Not found"}
    assert b"EDGE_" not in r.body


def test_traversal_under_the_release_path_is_404(web: Client) -> None:
    asset = asset_paths(web.get("/ui/").body)[0]
    release = asset.split("/")[1]
    for path in (
        f"/ui/assets/{release}/../../../proxy/settings.py",
        f"/ui/assets/{release}/%2e%2e/%2e%2e/%2e%2e/pyproject.toml",
        f"/ui/assets/{release}/js/../../__init__.py",
    ):
        r = web.get(path)
        assert r.status == 404, path
        assert r.json == {"error": "Not found"}


def test_other_methods_are_405(web: Client) -> None:
    r = web.post("/ui/", {"x": 1})
    assert r.status == 405
    assert r.json == {"error": "Method not allowed"}
    assert r.headers["allow"] == "GET, HEAD"
    assert_secured(r.headers)


def test_console_off_serves_nothing(
    console_redis: RedisProcess, server_factory: Callable[..., ServerProcess]
) -> None:
    off = server_factory(console_redis.url, EDGE_CONSOLE="0").client(None)
    for path in ("/ui", "/ui/", "/ui/assets/x/console.css"):
        r = off.get(path)
        assert r.status == 404, path
        assert r.json == {"error": "Not found"}
    assert off.get("/healthz").status == 200


@pytest.mark.parametrize("raw", ["0", "false", "off"])
def test_edge_console_turns_the_console_off(raw: str) -> None:
    assert Settings.from_env({"EDGE_CONSOLE": raw}).console is False
    assert Settings.from_env({}).console is True
    assert console.routes(False) == []


# --- what the files are -------------------------------------------------------------------


def console_files() -> list[Path]:
    return [
        p
        for p in sorted(CONSOLE_DIR.rglob("*"))
        if p.is_file() and p.suffix != ".py" and "__pycache__" not in p.parts
    ]


def test_every_console_file_ships_in_the_package_and_is_served() -> None:
    """package-data's patterns, expanded as setuptools does (glob, `**` recursive), take in every
    file of the console; and the server has a content type for each."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["proxy.console"]
    shipped = {
        Path(name).as_posix()
        for pattern in patterns
        for name in glob.glob(pattern, root_dir=CONSOLE_DIR, recursive=True)
    }
    served = console.read_sources()
    for path in console_files():
        name = path.relative_to(CONSOLE_DIR).as_posix()
        assert name in shipped, f"{name} not in package-data"
        assert name in served, f"{name} has no content type: it would never be served"


def test_files_hold_nothing_the_policy_would_refuse() -> None:
    page = (CONSOLE_DIR / "index.html").read_text()
    assert re.findall(r"<script(?![^>]*\bsrc=)", page) == [], "inline script"
    assert "<style" not in page
    for path in console_files():
        text = path.read_text()
        name = path.name
        if path.suffix in (".html", ".svg"):
            assert not re.search(r"\sstyle\s*=", text), f"style attribute in {name}"
            assert not re.search(r"\son[a-z]+\s*=", text), f"inline event handler in {name}"
        for banned in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert banned not in text, f"{banned} in {name}"
        assert "new Function" not in text, name
        assert 'setAttribute("style"' not in text, name
        # No asset from another origin: the only absolute URL is the SVG namespace.
        urls = set(re.findall(r"https?://[^\s\"'`)]+", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (name, urls)


def test_every_javascript_file_says_what_it_is_for() -> None:
    for path in console_files():
        if path.suffix == ".js":
            assert path.read_text().startswith("// "), path.name


def test_the_sidecar_manifest_turns_the_console_off() -> None:
    """A console beside every app Pod is not wanted: the edge Deployment's is the one to use."""
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "sidecar.yaml").read_text()))
    (proxy,) = [
        c
        for d in docs
        for c in d["spec"]["template"]["spec"]["initContainers"]
        if c["name"] == "edge-proxy"
    ]
    env = {e["name"]: e.get("value") for e in proxy["env"]}
    assert env["EDGE_CONSOLE"] == "0"
    assert Settings.from_env({"EDGE_CONSOLE": env["EDGE_CONSOLE"]}).console is False


def test_an_install_without_the_console_files_says_so_at_start(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="console's files are missing"):
        console.Console(tmp_path)
