"""The event streams phase of the benchmark: memory per idle stream at 1,000 and 10,000 streams on
one worker, the time one change takes to reach all 10,000, and evaluate's throughput with 10,000
idle streams open as a ratio to its figure without them (`python -m loadtests.streams_load` runs
this phase alone; `make bench` runs it after the others).

The streams are held by a client process of their own (`python -m loadtests.streams_load
client`, on the load core): plain non-blocking sockets on one epoll, which read and count event
lines and do nothing else, so that what it measures is the proxy's fan-out and not a client's
parsing. Changes are made through another proxy (on the load core too), as a fleet makes them:
the time runs from sending the PATCH there to each stream's event arriving here, over the same
monotonic clock (CLOCK_MONOTONIC is one clock for every process of the machine).
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import os
import re
import resource
import select
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from loadtests import procs, scenarios
from loadtests.api import Api
from loadtests.loadgen import percentile

if TYPE_CHECKING:
    from loadtests.bench import Bench

EVALUATE = "/api/v1/flags/evaluate"
BULK = "/ofrep/v1/evaluate/flags"
COUNTS = (1_000, 10_000)
BATCH = 500  # connections opened before their heads are awaited (the listen backlog is 2048)
ID = re.compile(rb"(?m)^id: (\d+)$")


def run(bench: Bench, redis_url: str, project: scenarios.Project) -> None:
    """The phase: a fresh worker that will hold the streams and a twin that holds none (both
    pinned like every measured server), and a writer proxy on the load core."""
    rounds = 3 if bench.plan.duration < 5 else 5
    print(f"# streams: {COUNTS[-1]} on one worker; memory, evaluate beside a twin without")
    print(f"# streams (alternating rounds), fan-out ({rounds} rounds)", flush=True)
    env = {"EDGE_MAX_STREAMS": str(COUNTS[-1] * 2)}
    server = procs.start_proxy(bench.procs, "proxy-streams", redis_url, bench.token, **env)
    twin = procs.start_proxy(bench.procs, "proxy-no-streams", redis_url, bench.token, **env)
    writer = procs.start_proxy(
        bench.procs, "proxy-writer-streams", redis_url, bench.token, procs.LOAD_CORE
    )
    api = Api(writer.port, bench.token)
    client: procs.Child | None = None
    try:
        bodies = bench.evaluate_bodies(project)
        for worker in (server, twin):  # their first exposures, before anything is measured
            bench.load.run(bench.procs, worker.port, EVALUATE, bodies, bench.token, 3)
        uri = channel_uri(server.port, bench.token, project.id)
        time.sleep(1.0)
        rss = {0: procs.rss_mb(server.pid)}
        control = bench.workdir / "streams-control"
        control.mkdir(exist_ok=True)
        argv = [sys.executable, "-m", "loadtests.streams_load", "client",
                "--port", str(server.port), "--uri", uri, "--control", str(control),
                "--counts", ",".join(map(str, COUNTS))]  # fmt: skip
        client = bench.procs.spawn("streams-client", argv, cpu=procs.LOAD_CORE)
        for n in COUNTS:
            until_line(client, {"open": n})
            time.sleep(1.0)
            rss[n] = procs.rss_mb(server.pid)
            (control / f"opened-{n}").touch()
        memory(bench, rss)
        evaluate(bench, server, twin, bodies)
        fanout(bench, api, server, client, project, rounds)
    finally:
        api.close()
        if client is not None:
            bench.procs.stop(client)
        for child in (writer, twin, server):
            bench.procs.stop(child.child)


def channel_uri(port: int, token: str, project_id: str) -> str:
    api = Api(port, token)
    try:
        answer = api.call("POST", BULK, {"context": {"project_id": project_id}})
    finally:
        api.close()
    uri: str = answer["eventStreams"][0]["endpoint"]["requestUri"]
    return uri


def memory(bench: Bench, rss: dict[int, float]) -> None:
    per = {n: (rss[n] - rss[0]) * 1024 / n for n in COUNTS}  # KiB a stream (rss is in MiB)
    text = "  ".join(f"{n}: {kb:.1f} KiB/stream" for n, kb in per.items())
    text += f"  (rss {rss[0]:.1f} -> {rss[COUNTS[-1]]:.1f} MiB; target <= 20 KB)"
    figure = {
        "rss_mib": {str(n): round(mib, 1) for n, mib in rss.items()},
        "kib_per_stream": {str(n): round(kb, 2) for n, kb in per.items()},
    }
    bench.record("stream_memory", text, figure)


def evaluate(bench: Bench, server: procs.Server, twin: procs.Server, bodies: Path) -> None:
    """Evaluate on the worker holding the streams and on its twin, alternating which goes first
    (as metrics_cost does), in more and shorter rounds than the other phases: on a shared
    machine requests per CPU-second swing by a third between two runs of one server, and only
    many alternations let both workers meet the same weather. Medians of each."""
    rounds = 2 if bench.plan.duration < 5 else 5
    with_streams: list[Any] = []
    without: list[Any] = []
    plan = bench.plan
    bench.plan = dataclasses.replace(plan, duration=max(2, plan.duration // 2), warmup=1)
    try:
        for n in range(rounds):
            pair = [(server, with_streams), (twin, without)]
            for worker, figures in pair if n % 2 == 0 else pair[::-1]:
                figures.append(bench.measure(worker, EVALUATE, bodies))
    finally:
        bench.plan = plan
    on = statistics.median(m.load.rps for m in with_streams)
    off = statistics.median(m.load.rps for m in without)
    cpu_on = statistics.median(m.per_cpu for m in with_streams)
    cpu_off = statistics.median(m.per_cpu for m in without)
    p99_on = statistics.median(m.load.p99_ms for m in with_streams)
    p99_off = statistics.median(m.load.p99_ms for m in without)
    # The two runs of a round follow each other, so they share the machine's weather best.
    pairs = list(zip(with_streams, without, strict=True))
    paired = statistics.median(w.load.rps / wo.load.rps for w, wo in pairs)
    paired_cpu = statistics.median(w.per_cpu / wo.per_cpu for w, wo in pairs)
    spread = [round(m.load.rps) for m in with_streams + without]
    text = (
        f"with {COUNTS[-1]} idle streams req/s={on:.0f}  without={off:.0f}"
        f"  ratio={on / off:.3f}  cpu_ratio={cpu_on / cpu_off:.3f}"
        f"  paired={paired:.3f}  paired_cpu={paired_cpu:.3f}"
        f"  p99={p99_on:.2f}ms (without {p99_off:.2f}ms; {rounds} rounds each, every run"
        f" between {min(spread)} and {max(spread)} req/s; target ratio >= 0.95)"
    )
    figure = {
        "with": [m.figure() for m in with_streams],
        "without": [m.figure() for m in without],
        "ratio": round(on / off, 3),
        "cpu_ratio": round(cpu_on / cpu_off, 3),
        "paired_ratio": round(paired, 3),
        "paired_cpu_ratio": round(paired_cpu, 3),
    }
    bench.record("stream_evaluate", text, figure)


def fanout(
    bench: Bench,
    api: Api,
    server: procs.Server,
    client: procs.Child,
    project: scenarios.Project,
    rounds: int,
) -> None:
    """Rounds of one PATCH through the writer proxy; per round, when each stream had it, and
    how long the worker itself took to write it to all (edge_stream_fanout_seconds)."""
    flag = project.probe()
    value = bool(flag["default_value"])
    lasts: list[float] = []
    every: list[float] = []
    writes: list[float] = []
    for _ in range(rounds):
        value = not value
        started = time.monotonic()
        api.call("PATCH", f"/api/v1/flags/{flag['id']}", {"default_value": value})
        version = metric(api.port, f'edge_snapshot_version{{project="{project.id}"}}')
        line = until_line(client, {"id": int(version)}, timeout=30.0)
        arrivals = [(t - started) * 1000 for t in line["arrivals"]]
        lasts.append(max(arrivals))
        every += arrivals
        writes.append(metric(server.port, "edge_stream_fanout_seconds") * 1000)
        time.sleep(0.5)
    lasts.sort()
    every.sort()
    figure = {
        "streams": COUNTS[-1],
        "rounds": rounds,
        "last_ms": [round(x, 2) for x in lasts],
        "last_p50_ms": round(statistics.median(lasts), 2),
        "last_max_ms": round(lasts[-1], 2),
        "every_p50_ms": round(percentile(every, 50), 2),
        "every_p99_ms": round(percentile(every, 99), 2),
        "every_max_ms": round(every[-1], 2),
        "server_write_ms": [round(x, 2) for x in writes],
    }
    text = (
        f"the last of {COUNTS[-1]}: p50={figure['last_p50_ms']:.1f}ms"
        f"  max={figure['last_max_ms']:.1f}ms over {rounds} rounds;  every stream:"
        f" p50={figure['every_p50_ms']:.1f}ms  p99={figure['every_p99_ms']:.1f}ms"
        f"  max={figure['every_max_ms']:.1f}ms  (from the PATCH on another proxy; the"
        f" worker's writes to all: median {statistics.median(writes):.1f}ms;"
        " target: the last within 250 ms)"
    )
    bench.record("stream_fanout", text, figure)


def metric(port: int, name: str) -> float:
    """One sample of a server's /metrics."""
    conn = http.client.HTTPConnection(procs.HOST, port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    for row in text.splitlines():
        if row.startswith(name + " "):
            return float(row.rsplit(" ", 1)[1])
    raise RuntimeError(f"no {name} in the metrics of port {port}")


def until_line(child: procs.Child, match: dict[str, Any], timeout: float = 120.0) -> Any:
    """The first JSON line the client printed whose fields include `match`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for row in child.log.read_text(errors="replace").splitlines():
            if row.startswith("{"):
                line = orjson.loads(row)
                if all(line.get(k) == v for k, v in match.items()):
                    return line
        if not child.alive():
            raise RuntimeError(f"the stream client exited\n{child.log_tail()}")
        time.sleep(0.05)
    raise RuntimeError(f"the stream client never said {match}\n{child.log_tail()}")


# The client process ------------------------------------------------------------------------------


def emit(line: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(line).decode() + "\n")
    sys.stdout.flush()


def client(port: int, uri: str, counts: list[int], control: Path) -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < counts[-1] + 64:
        raise SystemExit(f"RLIMIT_NOFILE {hard} is too low for {counts[-1]} streams")
    request = f"GET {uri} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    poll = select.epoll()
    socks: dict[int, socket.socket] = {}
    pending: dict[int, bytes] = {}  # fd -> bytes of an unfinished head or event
    opened = 0
    for n in counts:
        while opened < n:
            batch = []
            for _ in range(min(BATCH, n - opened)):
                s = socket.create_connection(("127.0.0.1", port))
                s.sendall(request.encode())
                s.setblocking(False)
                batch.append(s.fileno())
                socks[s.fileno()] = s
                pending[s.fileno()] = b""
                poll.register(s.fileno(), select.EPOLLIN)
            waiting = set(batch)
            while waiting:
                for fd, _ in poll.poll(5.0):
                    data = socks[fd].recv(65536)
                    if not data:
                        raise SystemExit("a stream closed while opening")
                    pending[fd] += data
                    if b"\r\n\r\n" in pending[fd]:
                        head, pending[fd] = pending[fd].split(b"\r\n\r\n", 1)
                        if not head.startswith(b"HTTP/1.1 200"):
                            raise SystemExit(f"refused: {head[:200]!r}")
                        waiting.discard(fd)
            opened += len(batch)
        emit({"open": opened})
        while not (control / f"opened-{n}").exists():
            time.sleep(0.05)
    arrivals: dict[int, list[float]] = {}
    while True:
        for fd, _ in poll.poll(1.0):
            data = socks[fd].recv(65536)
            now = time.monotonic()
            if not data:
                raise SystemExit("a stream was closed by the server")
            buffer = pending[fd] + data
            end = buffer.rfind(b"\n\n")
            pending[fd] = buffer[end + 2 :] if end >= 0 else buffer
            for match in ID.finditer(buffer, 0, max(end, 0)):
                times = arrivals.setdefault(int(match[1]), [])
                times.append(now)
                if len(times) == opened:
                    emit({"id": int(match[1]), "arrivals": times})


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m loadtests.streams_load", description=__doc__)
    sub = cli.add_subparsers(dest="command")
    c = sub.add_parser("client", help="hold the streams (run by the phase itself)")
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--uri", required=True)
    c.add_argument("--counts", required=True)
    c.add_argument("--control", type=Path, required=True)
    cli.add_argument("--quick", action="store_true", help="2 s measurements, 3 rounds")
    cli.add_argument("--no-wrk", action="store_true", help="use the asyncio load generator")
    cli.add_argument("--out", type=Path, default=Path("bench-streams.json"), help="JSON figures")
    args = cli.parse_args(argv)
    if args.command == "client":
        client(args.port, args.uri, [int(n) for n in args.counts.split(",")], args.control)
        return 0
    return standalone(args)


def standalone(args: argparse.Namespace) -> int:
    """This phase alone, on the realistic project: a Redis, a writer to build it, the phase."""
    from loadtests.bench import Bench, Plan

    procs.raise_on_termination()
    procs.pin_self(procs.LOAD_CORE)
    duration = 2 if args.quick else 10
    plan = Plan(duration=duration, warmup=1 if args.quick else 3, rounds=0, wrk=not args.no_wrk)
    with procs.workspace() as (workdir, processes):
        bench = Bench(plan, workdir, processes)
        bench.figures["meta"] = bench.meta()
        bench.choose_load_generator()
        redis_url = procs.start_redis(processes)
        builder = procs.start_proxy(processes, "proxy-build", redis_url, bench.token, cpu=None)
        api = Api(builder.port, bench.token)
        try:
            project = bench.build(api, redis_url, "realistic", scenarios.REALISTIC)
        finally:
            api.close()
        processes.stop(builder.child)
        run(bench, redis_url, project)
    args.out.write_bytes(orjson.dumps(bench.figures, option=orjson.OPT_INDENT_2) + b"\n")
    print("\nsummary")
    for text in bench.lines:
        print(text)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
