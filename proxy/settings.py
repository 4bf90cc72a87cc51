"""One typed settings object, read from the environment once (see the README's table)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

BOOTSTRAP_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{20,}$")
REDIS_MODES = ("standalone", "cluster", "sentinel")


class SettingsError(ValueError):
    """A setting has a value the service cannot run with."""


def _int(env: dict[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


def _float(env: dict[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None


def _list(env: dict[str, str], name: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in env.get(name, "").split(",") if p.strip())


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
    redis_mode: str = "standalone"
    redis_sentinels: tuple[str, ...] = ()
    redis_sentinel_master: str = "mymaster"
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    bootstrap_key: str | None = None
    data_dir: Path = field(default_factory=lambda: Path(".edge-data"))
    max_body_bytes: int = 64 * 1024
    max_header_bytes: int = 16 * 1024
    # How often every process compares its project versions with Redis (pub/sub can drop).
    poll_interval: float = 2.0
    # /readyz turns 503 once the snapshot has not been confirmed current for this long.
    stale_after: float = 30.0
    exposure_flush_interval: float = 0.25
    exposure_buffer_max: int = 100_000
    exposure_seen_max: int = 4_194_304
    spool_max_bytes: int = 256 * 1024 * 1024
    cors_origins: tuple[str, ...] = ()
    rate_limit_per_second: float = 0.0
    redis_timeout: float = 2.0
    redis_max_connections: int = 32
    redis_wait_replicas: int = 0
    shutdown_timeout: float = 8.0
    log_level: str = "info"
    metrics: bool = True
    console: bool = True  # the web console under /ui/

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)
        mode = e.get("REDIS_MODE", "standalone") or "standalone"
        if mode not in REDIS_MODES:
            raise SettingsError(f"REDIS_MODE must be one of {', '.join(REDIS_MODES)}")
        key = e.get("EDGE_BOOTSTRAP_KEY") or None
        if key is not None and not BOOTSTRAP_KEY_RE.fullmatch(key):
            raise SettingsError("EDGE_BOOTSTRAP_KEY must be 20 or more characters of [A-Za-z0-9_-]")
        s = cls(
            redis_url=e.get("REDIS_URL") or None,
            redis_mode=mode,
            redis_sentinels=_list(e, "REDIS_SENTINELS"),
            redis_sentinel_master=e.get("REDIS_SENTINEL_MASTER") or "mymaster",
            host=e.get("EDGE_HOST") or "127.0.0.1",
            port=_int(e, "EDGE_PORT", 8080),
            workers=_int(e, "EDGE_WORKERS", 1),
            bootstrap_key=key,
            data_dir=Path(e.get("EDGE_DATA_DIR") or ".edge-data"),
            max_body_bytes=_int(e, "EDGE_MAX_BODY_BYTES", 64 * 1024),
            max_header_bytes=_int(e, "EDGE_MAX_HEADER_BYTES", 16 * 1024),
            poll_interval=_float(e, "EDGE_POLL_INTERVAL", 2.0),
            stale_after=_float(e, "EDGE_STALE_AFTER", 30.0),
            exposure_flush_interval=_float(e, "EDGE_EXPOSURE_FLUSH_INTERVAL", 0.25),
            exposure_buffer_max=_int(e, "EDGE_EXPOSURE_BUFFER_MAX", 100_000),
            exposure_seen_max=_int(e, "EDGE_EXPOSURE_SEEN_MAX", 4_194_304),
            spool_max_bytes=_int(e, "EDGE_SPOOL_MAX_BYTES", 256 * 1024 * 1024),
            cors_origins=_list(e, "EDGE_CORS_ORIGINS"),
            rate_limit_per_second=_float(e, "EDGE_RATE_LIMIT", 0.0),
            redis_timeout=_float(e, "EDGE_REDIS_TIMEOUT", 2.0),
            redis_max_connections=_int(e, "EDGE_REDIS_MAX_CONNECTIONS", 32),
            redis_wait_replicas=_int(e, "EDGE_REDIS_WAIT_REPLICAS", 0),
            shutdown_timeout=_float(e, "EDGE_SHUTDOWN_TIMEOUT", 8.0),
            log_level=e.get("EDGE_LOG_LEVEL") or "info",
            metrics=(e.get("EDGE_METRICS") or "1") not in ("0", "false", "off"),
            console=(e.get("EDGE_CONSOLE") or "1") not in ("0", "false", "off"),
        )
        if s.workers < 1:
            raise SettingsError("EDGE_WORKERS must be at least 1")
        if s.redis_mode == "sentinel" and not s.redis_sentinels:
            raise SettingsError("REDIS_MODE=sentinel needs REDIS_SENTINELS=host:port,...")
        return s
