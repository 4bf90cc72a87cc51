"""`GET /openapi.json`: the whole HTTP contract as OpenAPI 3.1 (being written)."""

from __future__ import annotations

from starlette.routing import Route

routes: list[Route] = []
