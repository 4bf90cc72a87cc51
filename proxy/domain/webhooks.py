"""Webhooks without the network: secrets, Standard Webhooks signatures, which entries a
webhook receives, and the retry schedule (pure: no I/O).

Signing follows the Standard Webhooks spec (standardwebhooks.com): the secret is `whsec_` +
base64 of random bytes, and each request carries `webhook-id`, `webhook-timestamp` (unix
seconds) and `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, keyed
with the secret's decoded bytes. Any Standard Webhooks library verifies it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import secrets
from collections.abc import Mapping
from typing import Any

import orjson

from proxy.domain.model import ALL_EVENTS, Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
# A webhook is disabled after this many failed attempts in a row, across all its entries; one
# entry is given up after as many attempts (so a dead receiver is disabled by its first entry).
DISABLE_AFTER = 10
MAX_ATTEMPTS = 10
DISABLED_REASON = f"disabled after {DISABLE_AFTER} consecutive failed deliveries"
_RANDOM = random.Random()


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = b"%s.%d.%s" % (message_id.encode(), timestamp, body)
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def message_id(entry_id: str, webhook_id: str) -> str:
    """The `webhook-id` of one entry's delivery to one webhook: the same on every retry and
    from every proxy (receivers deduplicate on it), unique across projects and endpoints."""
    return f"msg_{entry_id}_{webhook_id}"


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, message_id, timestamp, body),
    }


def payload(entry: Mapping[str, Any]) -> bytes:
    """The request body: `{type, timestamp, data}`, the entry as `GET /audit` shows it."""
    return orjson.dumps({"type": entry["action"], "timestamp": entry["at"], "data": entry})


def wants(webhook: Webhook, entry: Mapping[str, Any]) -> bool:
    """Whether `webhook` is to receive `entry`: enabled, subscribed to its action, and the entry
    is from a write after the one that created the webhook or last enabled it."""
    return (
        webhook["enabled"]
        and entry["version"] > webhook["since_version"]
        and (ALL_EVENTS in webhook["events"] or entry["action"] in webhook["events"])
    )


def retry_delay(attempt: int, base: float, cap: float, rand: random.Random | None = None) -> float:
    """Seconds to wait after failed attempt `attempt` (1, 2, ...): exponential, capped, with
    "equal jitter" (half fixed, half random), so that retries of many proxies spread out while
    each gap is still at least as long as the one before it (until the cap)."""
    ceiling = min(cap, base * 2.0 ** (attempt - 1))
    return ceiling / 2 + (rand or _RANDOM).uniform(0, ceiling / 2)
