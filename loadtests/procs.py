"""The child processes of the load tests: a private Redis and proxy servers, pinned to cores,
and always stopped again (on success, on error, on Ctrl-C, on SIGTERM)."""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType

import redis

from proxy.store.embedded import answers, free_port, redis_server_binary

HOST = "127.0.0.1"
SERVER_CORE = 0
LOAD_CORE = 1  # the load generator, Redis and the bench driver
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if the bench itself dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def pinned(argv: list[str], cpu: int | None) -> list[str]:
    """`argv` run on one core, or on any (None; the bench itself is pinned) with taskset;
    as it is when taskset or the core is missing."""
    cores = os.cpu_count() or 1
    if shutil.which("taskset") is None or (cpu is not None and cpu >= cores):
        return argv
    return ["taskset", "-c", f"0-{cores - 1}" if cpu is None else str(cpu), *argv]


def pin_self(cpu: int) -> None:
    with contextlib.suppress(OSError, AttributeError, ValueError):
        os.sched_setaffinity(0, {cpu})


def raise_on_termination() -> None:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt, so every `finally` cleans up."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)


@dataclass
class Child:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Processes:
    """Every process the load tests start; `stop_all` (also on exit) ends each by its id."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.children: list[Child] = []

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop_all()

    def spawn(
        self, name: str, argv: list[str], *, cpu: int | None, env: dict[str, str] | None = None
    ) -> Child:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                pinned(argv, cpu),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the bench only; it stops the rest
                preexec_fn=_die_with_parent,
            )
        child = Child(name, popen, log)
        self.children.append(child)
        return child

    def stop(self, child: Child, timeout: float = 12.0) -> None:
        """SIGTERM (the server drains and exits within 10 s), then SIGKILL."""
        if child in self.children:
            self.children.remove(child)
        if not child.alive():
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, sig)  # the child leads its own process group
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(wait)
                return

    def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            try:
                self.stop(child)
            except KeyboardInterrupt:  # a second Ctrl-C: stop the rest without waiting
                for rest in self.children:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(rest.pid, signal.SIGKILL)
                raise


@contextlib.contextmanager
def workspace() -> Iterator[tuple[Path, Processes]]:
    """A temporary directory and the processes started in it; both gone on the way out."""
    workdir = Path(tempfile.mkdtemp(prefix="edge-loadtest-"))
    try:
        with Processes(workdir) as processes:
            yield workdir, processes
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# Redis ---------------------------------------------------------------------------------------


def start_redis(procs: Processes, name: str = "redis", cpu: int | None = LOAD_CORE) -> str:
    """A throwaway redis-server on a free port with its own directory; returns its URL."""
    port = free_port()
    home = procs.workdir / name
    home.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_server_binary(),
        "--port", str(port),
        "--bind", HOST,
        "--dir", str(home),
        "--save", "",
        "--appendonly", "no",
    ]  # fmt: skip
    child = procs.spawn(name, argv, cpu=cpu)
    url = f"redis://{HOST}:{port}/0"
    _wait_for(lambda: answers(url), child, f"{name} did not start")
    return url


def flush_redis(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()


# HTTP servers ----------------------------------------------------------------------------------


@dataclass
class Server:
    child: Child
    port: int

    @property
    def pid(self) -> int:
        return self.child.pid


def start_proxy(
    procs: Processes,
    name: str,
    redis_url: str,
    token: str,
    cpu: int | None = SERVER_CORE,
    **settings: str,
) -> Server:
    """`python -m proxy serve`, one worker (uvicorn then serves in the process itself);
    `settings` are extra EDGE_* variables."""
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "EDGE_HOST": HOST,
        "EDGE_PORT": str(port),
        "EDGE_WORKERS": "1",
        "EDGE_BOOTSTRAP_KEY": token,
        "EDGE_DATA_DIR": str(procs.workdir / name),
        "EDGE_LOG_LEVEL": "warning",
        **settings,
    }
    child = procs.spawn(name, [sys.executable, "-m", "proxy", "serve"], cpu=cpu, env=env)
    _wait_for(lambda: get_status(port, "/readyz") == 200, child, f"{name} did not become ready")
    return Server(child, port)


def start_baseline(procs: Processes, cpu: int | None = SERVER_CORE) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "loadtests.baseline", "--host", HOST, "--port", str(port)]
    child = procs.spawn("baseline", argv, cpu=cpu)
    _wait_for(lambda: get_status(port, "/") == 200, child, "the baseline app did not start")
    return Server(child, port)


def get_status(port: int, path: str) -> int | None:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


def _wait_for(ready: Callable[[], bool], child: Child, message: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if not child.alive():
            raise RuntimeError(f"{message}: it exited\n{child.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{message} within {timeout:.0f}s\n{child.log_tail()}")
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_process_seconds(core: int) -> float:
    """CPU time that processes (user, nice, system; not interrupts) have spent on `core`."""
    for row in Path("/proc/stat").read_text().splitlines():
        if row.startswith(f"cpu{core} "):
            user, nice, system = map(int, row.split()[1:4])
            return (user + nice + system) / os.sysconf("SC_CLK_TCK")
    return 0.0


def children_cpu_seconds() -> float:
    """CPU time of this process's children that have ended (the load generator's runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS of /proc/PID/status), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
