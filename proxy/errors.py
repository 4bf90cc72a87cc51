"""The one error shape of the API: `{"error": "<sentence>"}` plus optional sibling fields, and
how each refusal of the domain becomes one."""

from __future__ import annotations

from typing import Any

import orjson

from proxy.domain.model import Conflict, DomainError, NotFound, ValidationError


class ApiError(Exception):
    """Raised anywhere below a route; rendered by the app as the documented error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or []
        self.extra = extra

    def body(self) -> bytes:
        return orjson.dumps({"error": self.message, **self.extra})


def malformed() -> ApiError:
    return ApiError(400, "Malformed JSON body")


def unauthorized() -> ApiError:
    return ApiError(401, "Invalid or missing API key")


def forbidden() -> ApiError:
    return ApiError(403, "Insufficient scope")


def not_found() -> ApiError:
    return ApiError(404, "Not found")


def conflict(message: str) -> ApiError:
    return ApiError(409, message)


def too_large() -> ApiError:
    return ApiError(413, "Request body too large")


def invalid(details: dict[str, str]) -> ApiError:
    return ApiError(422, "Validation failed", details=details)


def unavailable(reason: str) -> ApiError:
    return ApiError(503, "Service unavailable", reason=reason)


def from_domain(error: DomainError) -> ApiError:
    if isinstance(error, ValidationError):
        return invalid(error.details)
    if isinstance(error, NotFound):
        return not_found()
    if isinstance(error, Conflict):
        return conflict(error.message)
    raise TypeError(f"no answer for {type(error).__name__}")  # a new kind must choose one
