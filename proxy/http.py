"""The few bytes-level helpers every route shares: read a bounded body, find the token, reply."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from itertools import chain
from typing import Any

import orjson

from proxy.errors import ApiError, malformed, too_large

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, bytes, Headers]  # a whole answer: status, body, headers

JSON_HEADERS = [(b"content-type", b"application/json")]
# Per-user answers: no shared cache may hand one user's variant to another.
PRIVATE_HEADERS = [*JSON_HEADERS, (b"cache-control", b"private, no-store")]


def error_answer(error: ApiError) -> Answer:
    return error.status, error.body(), [*JSON_HEADERS, *error.headers]


def headers_of(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers as a dict, built once per request and kept in the scope."""
    headers: dict[bytes, bytes] | None = scope.get("edge.headers")
    if headers is None:
        headers = scope["edge.headers"] = dict(scope["headers"])
    return headers


def header_bytes(scope: Scope) -> int:
    return sum(map(len, chain.from_iterable(scope["headers"])))


def token(headers: Mapping[bytes, bytes]) -> bytes | None:
    """The API token: `Authorization: Bearer <token>`, or OFREP's `X-API-Key: <token>`."""
    value = headers.get(b"authorization")
    if value is not None:
        return value[7:].strip() if value[:7].lower() == b"bearer " else None
    value = headers.get(b"x-api-key")
    return None if value is None else value.strip()


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    length = headers_of(scope).get(b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
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
