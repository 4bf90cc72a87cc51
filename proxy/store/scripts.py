"""Lua scripts sent by their SHA-1 (EVALSHA), with the source only when a server lacks them.

The event scripts are sent with every batch; their source (1.5 KB for conversions) would be
packed and sent, and hashed by Redis, each time. A server that does not have a script yet (a
restart, a new cluster node, a failover) answers NOSCRIPT, and the batch goes again with EVAL,
which also caches it there. Resending a batch is safe: every script is idempotent (SADDs, and
counts only where an SADD was new).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from proxy.store.connection import Redis


@dataclass(frozen=True)
class Script:
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())


Call = tuple[Script, Sequence[Any], Sequence[Any]]  # script, keys, arguments


async def run(redis: Redis, calls: Sequence[Call], *then: Sequence[Any]) -> list[Any]:
    """Every call in one pipeline, then the plain commands `then`; the replies in order."""
    # redis-py's cluster pipeline refuses EVALSHA outright: there, the source goes every time.
    for by_sha in (False,) if isinstance(redis, RedisCluster) else (True, False):
        pipe = redis.pipeline(transaction=False)
        for script, keys, args in calls:
            if by_sha:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            else:
                pipe.eval(script.source, len(keys), *keys, *args)
        for command in then:
            pipe.execute_command(*command)
        try:
            replies: list[Any] = await pipe.execute()
            return replies
        except NoScriptError:
            if not by_sha:
                raise
    raise AssertionError("unreachable")
