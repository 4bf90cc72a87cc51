"""The web console of API.md ("Console"): HTML, CSS and JavaScript modules shipped in this
package, read into memory once and served under /ui/. It is a client of the public API only; the
server gains these files and nothing else.

Only two kinds of path exist: `/ui/` (the page) and `/ui/assets/<release>/<file>`, where the
release is a digest of every file. So an asset may be cached for a year (a new release has new
URLs), the page itself is revalidated on every load (it names the release), and a lookup in a
dict of known names leaves no room for path traversal or a directory listing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from proxy.errors import ApiError, not_found

HERE = Path(__file__).resolve().parent
CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".svg": b"image/svg+xml",
}
# On every answer under /ui, errors included: nothing but this origin's files may run or load.
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
ASSET_CACHE = b"public, max-age=31536000, immutable"
PAGE_CACHE = b"no-cache"  # kept, but revalidated (ETag) before every use
ASSETS = "assets"
# index.html names its assets `__ASSETS__/...`; the server writes `assets/<release>` there.
PLACEHOLDER = b"__ASSETS__"


@dataclass(frozen=True)
class File:
    body: bytes
    etag: bytes
    headers: list[tuple[bytes, bytes]]


def _file(body: bytes, content_type: bytes, cache: bytes) -> File:
    etag = b'"' + hashlib.sha256(body).hexdigest()[:20].encode() + b'"'
    headers = [
        (b"content-type", content_type),
        (b"cache-control", cache),
        (b"etag", etag),
        *SECURITY_HEADERS,
    ]
    return File(body, etag, headers)


def read_sources(directory: Path = HERE) -> dict[str, bytes]:
    """Every file the console is made of, by its path relative to `directory`."""
    return {
        path.relative_to(directory).as_posix(): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.suffix in CONTENT_TYPES
    }


class Console:
    """The pure-ASGI app behind the two console routes."""

    def __init__(self, directory: Path = HERE) -> None:
        sources = read_sources(directory)
        if "index.html" not in sources:  # an install without the package data
            raise RuntimeError(f"the console's files are missing from {directory}")
        page = sources.pop("index.html")
        digest = hashlib.sha256()
        for name, body in sorted(sources.items()):
            digest.update(name.encode() + b"\0" + body + b"\0")
        digest.update(page)
        self.release = digest.hexdigest()[:12]
        prefix = f"{ASSETS}/{self.release}"
        self.page = _file(
            page.replace(PLACEHOLDER, prefix.encode()), CONTENT_TYPES[".html"], PAGE_CACHE
        )
        self.files = {
            f"{prefix}/{name}": _file(body, CONTENT_TYPES[Path(name).suffix], ASSET_CACHE)
            for name, body in sources.items()
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            error = ApiError(405, "Method not allowed", [(b"allow", b"GET, HEAD")])
            await self._error(scope, send, error)
            return
        if "path" not in scope["path_params"]:
            # `/ui`: relative, so it is never built from the Host header and survives a prefix.
            await self._send(scope, send, 307, b"", [(b"location", b"ui/"), *SECURITY_HEADERS])
            return
        name: str = scope["path_params"]["path"]
        file = self.page if name == "" else self.files.get(name)
        if file is None:
            await self._error(scope, send, not_found())
            return
        if _header(scope, b"if-none-match") == file.etag:
            await self._send(scope, send, 304, b"", file.headers)
            return
        await self._send(scope, send, 200, file.body, file.headers)

    async def _error(self, scope: Scope, send: Send, error: ApiError) -> None:
        """The API's one error shape, under the console's headers."""
        headers = [(b"content-type", b"application/json"), *SECURITY_HEADERS, *error.headers]
        await self._send(scope, send, error.status, error.body(), headers)

    async def _send(
        self, scope: Scope, send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> None:
        if status != 304:  # a 304's length would be the 200's: leave it out
            headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        head = scope["method"] == "HEAD"
        await send({"type": "http.response.body", "body": b"" if head else body})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def routes(enabled: bool = True) -> list[BaseRoute]:
    """`/ui` and everything under `/ui/`, or nothing when the console is turned off (then
    they are the router's 404). No methods listed: the app answers 405 itself, and the console
    stays out of the API's route table (it is not part of /openapi.json)."""
    if not enabled:
        return []
    console = Console()
    return [Route("/ui", console), Route("/ui/{path:path}", console)]
