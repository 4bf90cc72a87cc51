"""Load generators: wrk (installed with apt-get when missing) replaying POST bodies through a
Lua script, or, where wrk cannot be had, a small asyncio client (`python -m loadtests.loadgen`).

Both replay a file of request bodies (one per line), a random one per request, over keep-alive
connections, and report requests per second and the 50th/99th latency percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import orjson

from loadtests.procs import HOST, LOAD_CORE, Processes

WRK_SCRIPT = """\
-- Replays POST bodies from a file (one per line), a random one per request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local requests = {}

function init(args)
  wrk.headers["Authorization"] = "Bearer " .. args[2]
  for line in io.lines(args[1]) do
    if #line > 0 then
      requests[#requests + 1] = wrk.format(nil, nil, nil, line)
    end
  end
  math.randomseed(os.time())
end

function request()
  return requests[math.random(#requests)]
end
"""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx answers and socket errors


class LoadGenerator(Protocol):
    name: str

    def run(
        self, procs: Processes, port: int, path: str, bodies: Path, token: str, duration: int
    ) -> LoadResult: ...


def _wait(procs: Processes, argv: list[str], name: str, duration: int) -> str:
    """Run a load generator on the load core until it ends; return what it printed."""
    child = procs.spawn(name, argv, cpu=LOAD_CORE)
    try:
        code = child.popen.wait(duration + 120)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{name} did not finish\n{child.log_tail()}") from None
    finally:
        procs.stop(child)
    output = child.log.read_text(errors="replace")
    if code != 0:
        raise RuntimeError(f"{name} failed with exit code {code}\n{output[-2000:]}")
    return output


# wrk -------------------------------------------------------------------------------------------


def ensure_wrk() -> tuple[str | None, str]:
    """The path of wrk, installing it with apt-get if needed; or None and the reason."""
    found = shutil.which("wrk")
    if found:
        return found, "found on PATH"
    if shutil.which("apt-get") is None:
        return None, "wrk is not installed and there is no apt-get"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    reason = ""
    for update_first in (False, True):
        steps = [["apt-get", "update"]] if update_first else []
        steps.append(["apt-get", "install", "-y", "wrk"])
        for step in steps:
            try:
                done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=600)
            except (OSError, subprocess.TimeoutExpired) as e:
                return None, f"{' '.join(step)}: {e}"
            reason = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        found = shutil.which("wrk")
        if found:
            return found, "installed with apt-get"
    return None, f"apt-get install wrk failed: {reason}"


class Wrk:
    name = "wrk"

    def __init__(self, binary: str, workdir: Path, connections: int = 64) -> None:
        self.binary = binary
        self.connections = connections
        self.script = workdir / "replay.lua"
        self.script.write_text(WRK_SCRIPT)

    def run(
        self, procs: Processes, port: int, path: str, bodies: Path, token: str, duration: int
    ) -> LoadResult:
        argv = [
            self.binary, "-t1", f"-c{self.connections}", f"-d{duration}s", "--latency",
            "--timeout", "10s", "-s", str(self.script), f"http://{HOST}:{port}{path}",
            "--", str(bodies), token,
        ]  # fmt: skip
        return parse_wrk(_wait(procs, argv, "wrk", duration))


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def parse_wrk(output: str) -> LoadResult:
    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"unexpected wrk output (no {pattern!r}):\n{output}")
        return match

    total = find(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),")
    p50, p99 = (find(rf"^\s*{p}%\s+([\d.]+)(us|ms|s|m)\s*$") for p in (50, 99))
    errors = sum(map(int, re.findall(r"Non-2xx or 3xx responses: (\d+)", output)))
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket:
        errors += sum(map(int, socket.groups()))
    return LoadResult(
        requests=int(total[1]),
        seconds=_ms(total[2], total[3]) / 1000,
        rps=float(find(r"^Requests/sec:\s+([\d.]+)")[1]),
        p50_ms=_ms(p50[1], p50[2]),
        p99_ms=_ms(p99[1], p99[2]),
        errors=errors,
    )


# The asyncio fallback --------------------------------------------------------------------------


class AsyncioLoad:
    name = "asyncio fallback"

    def __init__(self, connections: int = 64) -> None:
        self.connections = connections

    def run(
        self, procs: Processes, port: int, path: str, bodies: Path, token: str, duration: int
    ) -> LoadResult:
        argv = [
            sys.executable, "-m", "loadtests.loadgen", "--port", str(port), "--path", path,
            "--bodies", str(bodies), "--token", token, "--duration", str(duration),
            "--connections", str(self.connections),
        ]  # fmt: skip
        output = _wait(procs, argv, "loadgen", duration)
        return LoadResult(**orjson.loads(output.strip().splitlines()[-1]))


def _requests(port: int, path: str, bodies: Path, token: str) -> list[bytes]:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\n"
    ).encode()
    return [
        head + b"Content-Length: %d\r\n\r\n" % len(body) + body
        for body in bodies.read_bytes().splitlines()
        if body
    ]


async def _connection(
    port: int, requests: list[bytes], deadline: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    pick = random.Random().randrange
    try:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            writer.write(requests[pick(len(requests))])
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
            await reader.readexactly(int(length[1]) if length else 0)
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 2"):
                errors[0] += 1
    finally:
        writer.close()


async def generate(
    port: int, path: str, bodies: Path, token: str, duration: float, connections: int
) -> LoadResult:
    requests = _requests(port, path, bodies, token)
    latencies: list[float] = []
    errors = [0]
    start = time.perf_counter()
    deadline = start + duration
    tasks = [_connection(port, requests, deadline, latencies, errors) for _ in range(connections)]
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    seconds = time.perf_counter() - start
    errors[0] += sum(isinstance(o, BaseException) for o in outcomes)
    latencies.sort()
    return LoadResult(
        requests=len(latencies),
        seconds=round(seconds, 3),
        rps=round(len(latencies) / seconds, 2),
        p50_ms=round(percentile(latencies, 50) * 1000, 3),
        p99_ms=round(percentile(latencies, 99) * 1000, 3),
        errors=errors[0],
    )


T = TypeVar("T")


async def beside_ticker(work: Awaitable[T], gaps: list[float]) -> tuple[T, float]:
    """Await `work` beside a ticker that only yields, appending to `gaps` the CPU time (ms)
    the loop was held between two of the ticker's turns: the most an evaluate on the same
    loop waits behind `work`. CPU time, not wall time: on a shared machine a wall gap may be
    the process preempted, which no code of ours causes. Returns work's result and its wall
    time in ms."""
    done = False

    async def ticker() -> None:
        last = time.process_time()
        while not done:
            await asyncio.sleep(0)
            now = time.process_time()
            gaps.append((now - last) * 1000)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = time.perf_counter()
    try:
        result = await work
    finally:
        done = True
        await tick
    return result, (time.perf_counter() - started) * 1000


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 for an empty one)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(len(ordered) * p / 100))
    return ordered[rank - 1]


def main() -> None:
    cli = argparse.ArgumentParser(description="The asyncio load generator (wrk's stand-in).")
    cli.add_argument("--port", type=int, required=True)
    cli.add_argument("--path", required=True)
    cli.add_argument("--bodies", type=Path, required=True)
    cli.add_argument("--token", required=True)
    cli.add_argument("--duration", type=float, default=10.0)
    cli.add_argument("--connections", type=int, default=64)
    a = cli.parse_args()
    work = generate(a.port, a.path, a.bodies, a.token, a.duration, a.connections)
    try:
        import uvloop

        result = uvloop.run(work)
    except ImportError:
        result = asyncio.run(work)
    sys.stdout.write(orjson.dumps(asdict(result)).decode() + "\n")


if __name__ == "__main__":
    main()
