"""A small keep-alive JSON client for the proxy's HTTP API (http.client, no dependency)."""

from __future__ import annotations

import http.client
import time
from typing import Any

import orjson


class ApiFailure(RuntimeError):
    """The server answered a status the caller did not expect."""


IDLE_LIMIT = 2.0  # seconds; uvicorn closes an idle keep-alive connection after 5


class Api:
    def __init__(self, port: int, token: str, host: str = "127.0.0.1", timeout: float = 60.0):
        self.host, self.port, self.timeout = host, port, timeout
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.conn = self._connect()
        self.used = time.monotonic()

    def _connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def close(self) -> None:
        self.conn.close()

    def send(self, method: str, path: str, body: Any = None) -> None:
        """Write a request without reading its answer (see `answer`)."""
        payload = None if body is None else orjson.dumps(body)
        if time.monotonic() - self.used > IDLE_LIMIT:  # the server may be closing it right now
            self.conn.close()
            self.conn = self._connect()
        self.conn.request(method, path, payload, self.headers)
        self.used = time.monotonic()

    def answer(self, expect: tuple[int, ...] = (200, 201, 204)) -> Any:
        response = self.conn.getresponse()
        raw = response.read()
        self.used = time.monotonic()
        if response.status not in expect:
            raise ApiFailure(f"HTTP {response.status}: {raw[:500].decode(errors='replace')}")
        return orjson.loads(raw) if raw else None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        self.send(method, path, body)
        return self.answer()

    def data(self, method: str, path: str, body: Any = None) -> Any:
        """The `data` of a control route's answer."""
        return self.call(method, path, body)["data"]

    def evaluate(self, project_id: str, context: dict[str, Any]) -> dict[str, Any]:
        body = {"project_id": project_id, "environment": "production", "context": context}
        flags: dict[str, Any] = self.call("POST", "/api/v1/flags/evaluate", body)["flags"]
        return flags
