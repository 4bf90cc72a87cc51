"""Redis clients for the three modes, bounded in connections and time."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

from proxy.settings import Settings
from proxy.store.embedded import ensure_embedded

# Both speak every command the store uses; the store calls nothing that only one of them has.
Redis = aredis.Redis | RedisCluster


def resolve_url(settings: Settings) -> str:
    if settings.redis_url:
        return settings.redis_url
    return ensure_embedded(settings.data_dir)


def _common(settings: Settings) -> dict[str, Any]:
    return {
        "socket_timeout": settings.redis_timeout,
        "socket_connect_timeout": settings.redis_timeout,
    }


def connect(settings: Settings, url: str | None = None) -> Redis:
    """The command client: every control write, load, track and exposure batch goes here."""
    if settings.redis_mode == "sentinel":
        master: aredis.Redis = _sentinel(settings).master_for(
            settings.redis_sentinel_master, max_connections=settings.redis_max_connections
        )
        return master
    url = url or resolve_url(settings)
    if settings.redis_mode == "cluster":
        return RedisCluster.from_url(
            url, max_connections=settings.redis_max_connections, **_common(settings)
        )
    pool = aredis.BlockingConnectionPool.from_url(
        url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout,
        **_common(settings),
    )
    return aredis.Redis(connection_pool=pool)


def connect_pubsub(settings: Settings, url: str | None = None) -> aredis.Redis:
    """A plain client for SUBSCRIBE. On a cluster any node will do: PUBLISH reaches them all."""
    if settings.redis_mode == "sentinel":
        client: aredis.Redis = _sentinel(settings).master_for(settings.redis_sentinel_master)
        return client
    url = url or resolve_url(settings)
    return aredis.Redis.from_url(url, socket_connect_timeout=settings.redis_timeout)


def _sentinel(settings: Settings) -> Sentinel:
    nodes = []
    for item in settings.redis_sentinels:
        host, _, port = item.rpartition(":")
        nodes.append((host, int(port)))
    return Sentinel(nodes, **_common(settings))  # type: ignore[no-untyped-call]
