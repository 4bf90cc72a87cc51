"""One typed settings object, read from the environment once (see the README's table).

Each field is one line of the table: its environment variable, its parser and its default,
written once (`setting(...)`); `Settings.from_env` and the deployment tests read the table.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

BOOTSTRAP_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{20,}$")
REDIS_MODES = ("standalone", "cluster", "sentinel")
DEFAULT_DATA_DIR = Path(".edge-data")

Parser = Callable[[str, str], Any]  # (variable, raw value) -> value; raises SettingsError


class SettingsError(ValueError):
    """A setting has a value the service cannot run with."""


def text(variable: str, raw: str) -> str:
    return raw


def integer(variable: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{variable} must be an integer, got {raw!r}") from None


def positive_integer(variable: str, raw: str) -> int:
    value = integer(variable, raw)
    if value < 1:
        raise SettingsError(f"{variable} must be at least 1")
    return value


def number(variable: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{variable} must be a number, got {raw!r}") from None


def positive_number(variable: str, raw: str) -> float:
    value = number(variable, raw)
    if not value > 0:  # also refuses nan
        raise SettingsError(f"{variable} must be a number above 0")
    return value


def flag(variable: str, raw: str) -> bool:
    return raw.lower() not in ("0", "false", "off", "no")


def names(variable: str, raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def path(variable: str, raw: str) -> Path:
    return Path(raw)


def redis_mode(variable: str, raw: str) -> str:
    if raw not in REDIS_MODES:
        raise SettingsError(f"{variable} must be one of {', '.join(REDIS_MODES)}")
    return raw


def bootstrap_key(variable: str, raw: str) -> str:
    if not BOOTSTRAP_KEY_RE.fullmatch(raw):
        raise SettingsError(f"{variable} must be 20 or more characters of [A-Za-z0-9_-]")
    return raw


def setting(variable: str, parse: Parser, default: Any) -> Any:
    """A field of Settings: read from `variable` with `parse` when set and not empty."""
    return field(default=default, metadata={"variable": variable, "parse": parse})


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = setting("REDIS_URL", text, None)
    redis_mode: str = setting("REDIS_MODE", redis_mode, "standalone")
    redis_sentinels: tuple[str, ...] = setting("REDIS_SENTINELS", names, ())
    redis_sentinel_master: str = setting("REDIS_SENTINEL_MASTER", text, "mymaster")
    host: str = setting("EDGE_HOST", text, "127.0.0.1")
    port: int = setting("EDGE_PORT", integer, 8080)
    workers: int = setting("EDGE_WORKERS", positive_integer, 1)
    bootstrap_key: str | None = setting("EDGE_BOOTSTRAP_KEY", bootstrap_key, None)
    data_dir: Path = setting("EDGE_DATA_DIR", path, DEFAULT_DATA_DIR)  # noqa: RUF009 (a field)
    max_body_bytes: int = setting("EDGE_MAX_BODY_BYTES", integer, 64 * 1024)
    max_header_bytes: int = setting("EDGE_MAX_HEADER_BYTES", integer, 16 * 1024)
    # How often every process compares its project versions with Redis (pub/sub can drop).
    poll_interval: float = setting("EDGE_POLL_INTERVAL", number, 2.0)
    # /readyz turns 503 once the snapshot has not been confirmed current for this long.
    stale_after: float = setting("EDGE_STALE_AFTER", number, 30.0)
    exposure_flush_interval: float = setting("EDGE_EXPOSURE_FLUSH_INTERVAL", number, 0.25)
    exposure_buffer_max: int = setting("EDGE_EXPOSURE_BUFFER_MAX", integer, 100_000)
    exposure_seen_max: int = setting("EDGE_EXPOSURE_SEEN_MAX", integer, 4_194_304)
    spool_max_bytes: int = setting("EDGE_SPOOL_MAX_BYTES", integer, 256 * 1024 * 1024)
    cors_origins: tuple[str, ...] = setting("EDGE_CORS_ORIGINS", names, ())
    rate_limit_per_second: float = setting("EDGE_RATE_LIMIT", number, 0.0)
    redis_timeout: float = setting("EDGE_REDIS_TIMEOUT", number, 2.0)
    redis_max_connections: int = setting("EDGE_REDIS_MAX_CONNECTIONS", integer, 32)
    redis_wait_replicas: int = setting("EDGE_REDIS_WAIT_REPLICAS", integer, 0)
    shutdown_timeout: float = setting("EDGE_SHUTDOWN_TIMEOUT", number, 8.0)
    log_level: str = setting("EDGE_LOG_LEVEL", text, "info")
    metrics: bool = setting("EDGE_METRICS", flag, True)
    # Evaluate answered inside the HTTP protocol when nothing but the cost changes.
    fast_path: bool = setting("EDGE_FAST_PATH", flag, True)
    # Read deadlines (slowloris): headers within this of a request's first byte, its body
    # within this of its headers; an idle connection is closed after the keep-alive timeout.
    header_timeout: float = setting("EDGE_HEADER_TIMEOUT", number, 10.0)
    body_timeout: float = setting("EDGE_BODY_TIMEOUT", number, 10.0)
    keepalive_timeout: float = setting("EDGE_KEEPALIVE_TIMEOUT", number, 5.0)
    console: bool = setting("EDGE_CONSOLE", flag, True)  # the web console under /ui/
    # Audit entries kept per project (and for the global scope), trimmed approximately.
    audit_max_entries: int = setting("EDGE_AUDIT_MAX_ENTRIES", positive_integer, 100_000)
    # Lets webhooks target private, loopback and link-local addresses (tests, private networks).
    webhook_allow_private: bool = setting("EDGE_WEBHOOK_ALLOW_PRIVATE", flag, False)
    webhook_timeout: float = setting("EDGE_WEBHOOK_TIMEOUT", positive_number, 5.0)
    webhook_concurrency: int = setting("EDGE_WEBHOOK_CONCURRENCY", positive_integer, 16)
    # An entry pending this long on one proxy (a dead one) is claimed by another.
    webhook_claim_timeout: float = setting("EDGE_WEBHOOK_CLAIM_TIMEOUT", positive_number, 30.0)
    # Backoff after failed attempt n: between half and all of min(max, base * 2^(n-1)) seconds.
    webhook_retry_base: float = setting("EDGE_WEBHOOK_RETRY_BASE", positive_number, 5.0)
    webhook_retry_max: float = setting("EDGE_WEBHOOK_RETRY_MAX", positive_number, 600.0)
    # OFREP event streams (proxy/edge/streams.py): at most this many per process (0: none, and
    # bulk answers advertise none); a comment line to each every heartbeat; a stream whose
    # unsent bytes pass the bound is dropped (its client reconnects and re-fetches).
    max_streams: int = setting("EDGE_MAX_STREAMS", integer, 10_000)
    stream_heartbeat: float = setting("EDGE_STREAM_HEARTBEAT", positive_number, 15.0)
    stream_buffer_bytes: int = setting("EDGE_STREAM_BUFFER_BYTES", positive_integer, 64 * 1024)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        values = {}
        for f in fields(cls):
            raw = e.get(f.metadata["variable"], "")
            if raw:
                values[f.name] = f.metadata["parse"](f.metadata["variable"], raw)
        s = cls(**values)
        if s.redis_mode == "sentinel" and not s.redis_sentinels:
            raise SettingsError("REDIS_MODE=sentinel needs REDIS_SENTINELS=host:port,...")
        return s

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Environment variable -> field name, for every setting."""
        return {f.metadata["variable"]: f.name for f in fields(cls)}
