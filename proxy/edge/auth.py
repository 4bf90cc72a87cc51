"""Who is calling: the API key of a request, from the snapshot, and its optional rate limit.

A key is known only by the SHA-256 of its token; the lookup is one dict access. The rate limit
(`EDGE_RATE_LIMIT` requests per second per key, burst of one second's worth) is a token bucket
per key in this process; 0 turns it off.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, Metric

from proxy import http
from proxy.domain.access import ApiKey, token_sha256
from proxy.edge.sync import Sync
from proxy.errors import ApiError, forbidden, too_large, unauthorized, unavailable

CACHE_MAX = 10_000


class Auth:
    def __init__(
        self, sync: Sync, rate_per_second: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.sync = sync
        self.clock = clock
        # Token -> key for known tokens, valid for one snapshot of the keys: saves the SHA-256
        # on every request, and a revocation (a new keys mapping) empties it.
        self._cache: dict[bytes, ApiKey] = {}
        self._cache_for: object = None
        self.rate = rate_per_second
        # A burst of one second's worth, and at least one request: below 1/s a smaller bucket
        # could never hold the token a request spends.
        self.burst = max(1.0, rate_per_second)
        self.buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, at)
        self.limited = 0

    def key(self, scope: http.Scope) -> ApiKey:
        """The request's key: 503 before any snapshot is loaded, 401 when unknown or revoked,
        429 past its rate."""
        return self.key_of(http.headers_of(scope))

    def reader(self, headers: Mapping[bytes, bytes]) -> ApiKey:
        """The key of an evaluate, track or OFREP request: `key_of`'s refusals, then 403 for a
        key that may not evaluate."""
        key = self.key_of(headers)
        if not key.can_evaluate:
            raise forbidden()
        return key

    async def read(
        self, scope: http.Scope, receive: http.Receive, limit: int
    ) -> tuple[ApiKey, bytes]:
        """The reader and body of an ASGI request: who is asking first, then the body (413 past
        `limit`)."""
        key = self.reader(http.headers_of(scope))
        return key, await http.read_body(scope, receive, limit)

    def admit(self, headers: Mapping[bytes, bytes], body: bytes, limit: int) -> ApiKey:
        """The reader of a request whose body is already in, refused in its ASGI route's order:
        who is asking first, then 413 for a body over `limit`."""
        key = self.reader(headers)
        if len(body) > limit:
            raise too_large()
        return key

    def key_of(self, headers: Mapping[bytes, bytes]) -> ApiKey:
        if not self.sync.loaded:
            raise unavailable("no configuration snapshot loaded yet")
        token = http.token(headers)
        if token is None:
            raise unauthorized()
        keys = self.sync.snapshot.keys
        if keys is not self._cache_for:
            self._cache, self._cache_for = {}, keys
        key = self._cache.get(token)
        if key is None:
            key = keys.get(token_sha256(token))
            if key is None:
                raise unauthorized()
            if len(self._cache) < CACHE_MAX:
                self._cache[token] = key
        if self.rate > 0:
            self._spend(key.id)
        return key

    def _spend(self, key_id: str) -> None:
        now = self.clock()
        tokens, at = self.buckets.get(key_id, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens < 1:
            self.buckets[key_id] = (tokens, now)
            self.limited += 1
            wait = math.ceil((1 - tokens) / self.rate)
            raise ApiError(
                429,
                "Rate limit exceeded",
                retry_after=wait,
                headers=[(b"retry-after", str(wait).encode())],
            )
        self.buckets[key_id] = (tokens - 1, now)

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "edge_rate_limited", "Requests refused by the per-key rate limit", self.limited
        )
