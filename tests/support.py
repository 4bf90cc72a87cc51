"""Real processes for the tests: redis-server on a free port, `python -m proxy serve`, and a
small keep-alive HTTP client. Nothing here is a fake: tests talk to what users run."""

from __future__ import annotations

import http.client
import os
import random
import select
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import redis

from proxy.store.embedded import free_port, redis_server_binary

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = "kr_live_abc123def456"
# Sending one of these twice does what sending it once does: only they are retried.
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class RedisProcess:
    """A redis-server of the tests' own, which fault tests may stop, pause and restart."""

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        persist: bool = False,
        extra: tuple[str, ...] = (),
        binary: str | None = None,
    ) -> None:
        self.binary = binary or redis_server_binary()
        self.directory = directory
        self.port = port or free_port()
        self.persist = persist
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        args += ["--dir", str(self.directory), "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.persist else []
        args += list(self.extra)
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not self.answers():
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.02)
        return self

    def answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too, so at most 55535."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 45000)
        ok = True
        for p in (port, port + 10000):
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
        if ok:
            return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisCluster:
    """Three masters (no replicas) made into a cluster with `redis-cli --cluster create`."""

    def __init__(self, directory: Path) -> None:
        self.nodes = [
            RedisProcess(
                directory / f"node-{i}",
                port=cluster_port(),
                persist=True,
                extra=("--cluster-enabled", "yes", "--cluster-node-timeout", "2000"),
            )
            for i in range(3)
        ]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start()
        cli = str(Path(redis_server_binary()).with_name("redis-cli"))
        addresses = [f"127.0.0.1:{n.port}" for n in self.nodes]
        subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            infos = [n.client().execute_command("CLUSTER", "INFO") for n in self.nodes]
            if all(b"cluster_state:ok" in i for i in infos):
                return self
            time.sleep(0.1)
        raise RuntimeError("cluster did not become ok")

    def node_for(self, key: str) -> RedisProcess:
        slot = int(self.nodes[0].client().execute_command("CLUSTER", "KEYSLOT", key))
        for node in self.nodes:
            for start, end, *_ in node.client().execute_command("CLUSTER", "SLOTS"):
                owner = _[0]
                if start <= slot <= end and int(owner[1]) == node.port:
                    return node
        raise LookupError(key)

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()


class RedisSentinelSet:
    """A master, one replica and one Sentinel watching them as `mymaster`."""

    def __init__(self, directory: Path) -> None:
        self.master = RedisProcess(directory / "master", persist=True)
        self.replica = RedisProcess(
            directory / "replica",
            persist=True,
            extra=("--replicaof", "127.0.0.1", str(self.master.port)),
        )
        self.directory = directory
        self.sentinel_port = free_port()
        while self.sentinel_port in (self.master.port, self.replica.port):
            self.sentinel_port = free_port()
        self.sentinel: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisSentinelSet:
        self.master.start()
        self.replica.start()
        conf = self.directory / "sentinel.conf"
        conf.write_text(
            f"port {self.sentinel_port}\nbind 127.0.0.1\ndir {self.directory}\n"
            f"sentinel monitor mymaster 127.0.0.1 {self.master.port} 1\n"
            "sentinel down-after-milliseconds mymaster 1000\n"
            "sentinel failover-timeout mymaster 5000\n"
        )
        self.sentinel = subprocess.Popen(
            [redis_server_binary(), str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                info = self.master.client().info("replication")
                if info.get("connected_slaves", 0) >= 1 and self.master_port() == self.master.port:
                    # The Sentinel learns of replicas from the master's INFO, not at once: a
                    # failover asked for before it knows one fails with NOGOODSLAVE.
                    replicas = self.sentinel_client().execute_command(
                        "SENTINEL", "REPLICAS", "mymaster"
                    )
                    if any(
                        r.get(b"flags") == b"slave" and r.get(b"master-link-status") == b"ok"
                        for r in replicas
                    ):
                        return self
            except (redis.RedisError, OSError):
                pass
            time.sleep(0.1)
        raise RuntimeError("sentinel set did not come up")

    def sentinel_client(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_port, socket_timeout=2)

    def master_port(self) -> int:
        _host, port = self.sentinel_client().execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster"
        )
        return int(port)

    def stop(self) -> None:
        if self.sentinel is not None:
            self.sentinel.kill()
            self.sentinel.wait()
        self.replica.kill()
        self.master.kill()


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


class Client:
    """HTTP/1.1 keep-alive client bound to one server and one token."""

    def __init__(self, port: int, token: str | None = BOOTSTRAP) -> None:
        self.port = port
        self.token = token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)

    def with_token(self, token: str | None) -> Client:
        return Client(self.port, token)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        h = dict(headers or {})
        if self.token is not None:
            h.setdefault("Authorization", f"Bearer {self.token}")
        data = raw if raw is not None else (None if body is None else orjson.dumps(body))
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        self._drop_if_closed()
        # A POST or PATCH that failed on the connection may have reached the server: sent
        # again, it could count twice and hide the failure. Only idempotent requests retry.
        attempts = 2 if method.upper() in IDEMPOTENT else 1
        for attempt in range(attempts):
            try:
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                return Reply(r.status, r.read(), {k.lower(): v for k, v in r.getheaders()})
            except (ConnectionError, http.client.HTTPException):
                self._reconnect()
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _drop_if_closed(self) -> None:
        """Replace a keep-alive connection the server has closed (its idle timeout, a restart)
        before sending anything on it: no request is sent into a dead connection."""
        sock = self.conn.sock
        # Readable while no request is outstanding: the server closed it (EOF).
        if sock is not None and select.select([sock], [], [], 0)[0]:
            self._reconnect()

    def _reconnect(self) -> None:
        self.conn.close()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("POST", path, body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request("PATCH", path, body, **kw)

    def delete(self, path: str, **kw: Any) -> Reply:
        return self.request("DELETE", path, **kw)


class ServerProcess:
    """`python -m proxy serve` on a free port."""

    def __init__(self, redis_url: str | None, data_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        self.env = {
            **os.environ,
            "EDGE_PORT": str(self.port),
            "EDGE_DATA_DIR": str(data_dir),
            "EDGE_BOOTSTRAP_KEY": BOOTSTRAP,
            "EDGE_POLL_INTERVAL": "1",
            "EDGE_LOG_LEVEL": "warning",
            **env,
        }
        if redis_url is not None:
            self.env["REDIS_URL"] = redis_url
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / f"server-{self.port}.log"

    def start(self, wait_ready: bool = True) -> ServerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "proxy", "serve"],
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        if wait_ready:
            self.wait("/readyz", 200)
        return self

    def wait(self, path: str, status: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()
            try:
                if self.client(None).get(path).status == status:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"{path} never answered {status}:\n{self.log.read_text()}")

    def client(self, token: str | None = BOOTSTRAP) -> Client:
        return Client(self.port, token)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code


def eventually(check: Any, timeout: float = 5.0, interval: float = 0.02) -> Any:
    """Poll `check` until it returns a truthy value (convergence across processes); an
    assertion failing inside it counts as not yet."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (AssertionError, KeyError) as e:  # e.g. a flag not there yet
            last = e
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def lkg_flags(path: Path, project_id: str) -> dict[str, Any]:
    """Flag key -> default value of a project in a last-known-good snapshot file (the sync
    writes it at most 0.5 s after a change); empty while missing or without the project."""
    try:
        doc = orjson.loads(path.read_bytes())
        flags = doc["projects"][project_id]["records"]["flags"].values()
    except (OSError, ValueError, KeyError):
        return {}
    return {f["key"]: f["default_value"] for f in flags}


def shared(name: str) -> Path:
    """A file of the shared contract beside the repository (`../shared/<name>`), wherever the
    checkout sits (a worktree one level deeper included)."""
    for candidate in (ROOT.parent / "shared" / name, ROOT.parent.parent / "shared" / name):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(f"shared/{name} not found beside the repository")


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """The status and the headers (lower-cased names) of a raw HTTP answer's head."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers
