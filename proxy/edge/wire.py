"""The few bytes-level helpers every route shares: read a bounded body, find the key, reply."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from proxy.errors import ApiError, malformed, too_large

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_HEADERS = [(b"content-type", b"application/json")]
# Per-user answers: no shared cache may hand one user's variant to another.
PRIVATE_HEADERS = [*JSON_HEADERS, (b"cache-control", b"private, no-store")]


def token_hash(scope: Scope) -> str | None:
    """SHA-256 hex of the token (`Authorization: Bearer`, or OFREP's `X-API-Key`), the only
    form in which keys are known."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            if value[:7].lower() != b"bearer ":
                return None
            return hashlib.sha256(value[7:].strip()).hexdigest()
        if name == b"x-api-key":
            return hashlib.sha256(value.strip()).hexdigest()
    return None


def header_bytes(scope: Scope) -> int:
    size = 0
    for name, value in scope["headers"]:
        size += len(name) + len(value)
    return size


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise too_large()
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "Client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def json_object(body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise malformed() from None
    if not isinstance(data, dict):
        raise malformed()
    return data


async def reply_error(send: Send, error: ApiError) -> int:
    await reply(send, error.status, error.body(), [*JSON_HEADERS, *error.headers])
    return error.status


async def reply(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] = JSON_HEADERS
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
