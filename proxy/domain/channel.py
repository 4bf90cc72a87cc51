"""Event stream channels: the opaque token in `GET /ofrep/v1/sse?channel=<token>` (pure: no I/O).

A channel names a key (by id, never its token: the address may end up in access logs), a
project, an environment and the hour it was issued in, signed with the fleet's secret:

    base64url("1|<key id>|<project id>|<environment>|<issued at>") "." base64url(HMAC-SHA256[:16])

Signed, not encrypted: whoever holds a channel can read which key id, project and environment
it names, and nothing else (ids are not secrets; a channel grants no read of any flag). Any
proxy that holds the same secret verifies it locally, without Redis. `issued at` is rounded
down to the hour, so one key, project and environment get the same channel all hour long on
every proxy: the bulk answer that carries it keeps its ETag, and the web provider keeps its
connection. A channel is valid for LIFETIME after its hour began (so at least 47 hours after
it was handed out); a 128-bit truncated HMAC leaves forging to chance at 2^-128 a try.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

FORMAT = "1"
LIFETIME = 48 * 3600  # seconds after the hour of issue
HOUR = 3600
SKEW = 300  # seconds a channel's hour may lie in the future: another proxy's clock ahead
MAC_BYTES = 16
MAX_TOKEN = 512  # characters: ids and names are short, so anything longer is not ours


class InvalidChannel(Exception):
    """Not a channel this fleet issued, or no longer valid; the message says which."""


@dataclass(frozen=True, slots=True)
class Channel:
    key_id: str
    project_id: str
    environment: str
    issued_at: int  # unix seconds, the start of an hour


def issued_hour(now: float) -> int:
    return int(now) // HOUR * HOUR


def mint(secret: bytes, channel: Channel) -> str:
    fields = (channel.key_id, channel.project_id, channel.environment)
    if any("|" in f for f in fields):
        raise ValueError("a channel field contains the separator")  # ids and names never do
    payload = "|".join((FORMAT, *fields, str(channel.issued_at))).encode()
    return _b64(payload) + "." + _b64(_mac(secret, payload))


def read(secret: bytes, token: str, now: float) -> Channel:
    """The channel a token names, once its signature and age are checked."""
    if len(token) > MAX_TOKEN or token.count(".") != 1:
        raise InvalidChannel("malformed")
    encoded, mac = token.split(".")
    try:
        payload, signature = _unb64(encoded), _unb64(mac)
    except (binascii.Error, ValueError):
        raise InvalidChannel("malformed") from None
    if not hmac.compare_digest(signature, _mac(secret, payload)):
        raise InvalidChannel("forged")
    fields = payload.decode().split("|")  # ours, so well formed from here on
    if len(fields) != 5 or fields[0] != FORMAT:
        raise InvalidChannel("malformed")
    issued_at = int(fields[4])
    if not issued_at - SKEW <= now < issued_at + LIFETIME:
        raise InvalidChannel("expired")
    return Channel(fields[1], fields[2], fields[3], issued_at)


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, payload, hashlib.sha256).digest()[:MAC_BYTES]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    # validate: the default decoder skips characters outside the alphabet instead of failing;
    # and only the one spelling mint writes (the last character's unused bits are zero)
    standard = text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4)
    data = base64.b64decode(standard, validate=True)
    if _b64(data) != text:
        raise ValueError("not the canonical spelling")
    return data
