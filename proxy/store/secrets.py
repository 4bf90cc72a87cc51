"""The fleet's shared secrets in Redis: made once by whichever process asks first, then read by
every other, so that what one proxy signs any other verifies."""

from __future__ import annotations

import secrets

from proxy.store import keys
from proxy.store.connection import Redis

MIN_BYTES = 16  # a secret an operator set by hand must still be worth its name


class WeakSecret(Exception):
    """The stored secret is too short to sign with."""


async def stream_secret(redis: Redis) -> bytes:
    """The secret that signs event stream channels, created (SET NX) if Redis has none."""
    await redis.set(keys.STREAM_SECRET, secrets.token_urlsafe(32), nx=True)
    value = await redis.get(keys.STREAM_SECRET)
    if value is None:  # deleted between the two calls: the next look makes a new one
        raise WeakSecret("the stream secret vanished while it was read")
    secret = value if isinstance(value, bytes) else value.encode()
    if len(secret) < MIN_BYTES:
        raise WeakSecret(f"{keys.STREAM_SECRET} holds fewer than {MIN_BYTES} bytes")
    return secret
