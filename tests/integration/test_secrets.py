"""The fleet's stream secret on a real Redis: one secret whoever asks first, kept as found."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis.asyncio as aredis

from proxy.store import keys
from proxy.store.secrets import WeakSecret, stream_secret
from tests.support import RedisProcess

Factory = Callable[..., RedisProcess]  # a Redis of the test's own: the suite's servers share one


def test_every_process_gets_the_secret_the_first_one_made(redis_factory: Factory) -> None:
    redis_server = redis_factory()

    async def main() -> list[bytes]:
        clients = [aredis.Redis.from_url(redis_server.url) for _ in range(5)]
        try:
            return await asyncio.gather(*(stream_secret(c) for c in clients))
        finally:
            for c in clients:
                await c.aclose()

    secrets = asyncio.run(main())
    assert len(set(secrets)) == 1 and len(secrets[0]) >= 32
    assert redis_server.client().get(keys.STREAM_SECRET) == secrets[0]


def test_a_secret_set_by_an_operator_is_used_as_it_is(redis_factory: Factory) -> None:
    redis_server = redis_factory()
    redis_server.client().set(keys.STREAM_SECRET, "an operator's own secret, long enough")

    async def main() -> bytes:
        client = aredis.Redis.from_url(redis_server.url)
        try:
            return await stream_secret(client)
        finally:
            await client.aclose()

    assert asyncio.run(main()) == b"an operator's own secret, long enough"


def test_a_secret_too_short_to_sign_with_is_refused(redis_factory: Factory) -> None:
    redis_server = redis_factory()
    redis_server.client().set(keys.STREAM_SECRET, "short")

    async def main() -> None:
        client = aredis.Redis.from_url(redis_server.url)
        try:
            await stream_secret(client)
        finally:
            await client.aclose()

    with pytest.raises(WeakSecret):
        asyncio.run(main())
