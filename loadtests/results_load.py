"""The bench phase `results_while_evaluating`: evaluate on the realistic project while a client
reads a 10-variant experiment's results in a loop on the same server, against evaluate alone,
both under the throughput load (64 connections: the server saturated, so its p99 is a queue
and shows the CPU the reader takes) and on a single connection (a request waits for nothing
but the server: its p99 shows any stall of the event loop).

The experiment's sets are filled directly in Redis (100,000 exposed users per variant, about a
tenth converting, value sums for the value block), so that one computation of its results is
tens of milliseconds of chance-to-beat: enough to show whether it stalls evaluate. Three runs:
- alone: no reader;
- polling: the reader in a loop while the counts change once a second (as exposure batches
  make them), so nearly every read is a cache hit;
- recomputing: one new conversion before every read, so that every read computes anew, the
  worst a reader can do.
"""

from __future__ import annotations

import asyncio
import gc
import http.client
import statistics
import threading
import time
import uuid
from dataclasses import asdict
from typing import Any, Protocol

import redis

from loadtests import procs
from loadtests.api import Api
from loadtests.loadgen import AsyncioLoad, LoadGenerator, Wrk, beside_ticker, percentile
from loadtests.scenarios import ENV, Project
from proxy.control import results
from proxy.store import keys
from proxy.store.events import Tally

VARIANTS = 10
EXPOSED = 100_000  # per variant
EVALUATE = "/api/v1/flags/evaluate"


class BenchLike(Protocol):
    """What this phase uses of loadtests.bench.Bench (which imports this module)."""

    token: str
    procs: procs.Processes
    plan: Any
    load: LoadGenerator

    def measure(self, server: procs.Server, path: str, bodies: Any) -> Any: ...

    def evaluate_bodies(self, project: Project) -> Any: ...

    def record(self, name: str, text: str, figure: dict[str, Any]) -> None: ...


MODES = ("alone", "polling", "recomputing")


def say(text: str) -> None:
    print(f"# {text}", flush=True)


def one_connection(load: LoadGenerator) -> LoadGenerator:
    """The same load generator on a single connection: each request waits for nothing but the
    server, so its latency shows any stall of the event loop, not a queue of 64."""
    if isinstance(load, Wrk):
        return Wrk(load.binary, load.script.parent, connections=1)
    return AsyncioLoad(connections=1)


def results_while_evaluating(
    bench: BenchLike, proxy: procs.Server, api: Api, redis_url: str, realistic: Project
) -> None:
    rounds = 2 if bench.plan.duration < 5 else 3
    say(f"results: evaluate_realistic alone, then while a client reads a {VARIANTS}-variant")
    say(f"experiment's results ({EXPOSED:,} users a variant) in a loop: polling (counts change")
    say("once a second), recomputing (they change before every read); each with 64 connections")
    say(f"and with one; {rounds} rounds alternating the order, the median of each")
    path = _experiment(api, redis_url)
    bodies = bench.evaluate_bodies(realistic)
    single = one_connection(bench.load)
    client = redis.Redis.from_url(redis_url)
    runs: dict[str, list[tuple[Any, Any, dict[str, Any] | None]]] = {m: [] for m in MODES}
    try:
        for n in range(rounds):
            for mode in MODES if n % 2 == 0 else MODES[::-1]:
                reader = None
                if mode != "alone":
                    reader = Reader(
                        proxy.port, bench.token, path, client, experiment_key(path), mode
                    )
                    reader.start()
                try:
                    loaded = bench.measure(proxy, EVALUATE, bodies)
                    alone_conn = single.run(
                        bench.procs, proxy.port, EVALUATE, bodies, bench.token, bench.plan.duration
                    )
                finally:
                    if reader is not None:
                        reader.stop()
                runs[mode].append((loaded, alone_conn, reader.figures() if reader else None))
    finally:
        client.close()
    figure: dict[str, Any] = {}
    for mode, measured in runs.items():
        figure[mode] = {
            "c64_rps": median(m.load.rps for m, _, _ in measured),
            "c64_p50_ms": median(m.load.p50_ms for m, _, _ in measured),
            "c64_p99_ms": median(m.load.p99_ms for m, _, _ in measured),
            "c1_p50_ms": median(s.p50_ms for _, s, _ in measured),
            "c1_p99_ms": median(s.p99_ms for _, s, _ in measured),
            "errors": sum(m.load.errors + s.errors for m, s, _ in measured),
            "rounds": [
                {"c64": asdict(m.load), "c1": asdict(s), "server_cpu": round(m.cpu, 3),
                 "reads": reads}
                for m, s, reads in measured
            ],
        }  # fmt: skip
        if mode != "alone":
            reads = [r for _, _, r in measured if r]
            figure[mode]["reads_per_second"] = median(r["per_second"] for r in reads)
            figure[mode]["read_p50_ms"] = median(r["p50_ms"] for r in reads)
    alone = figure["alone"]
    for mode in MODES[1:]:
        f = figure[mode]
        f["c64_p99_ratio"] = round(f["c64_p99_ms"] / max(alone["c64_p99_ms"], 1e-9), 3)
        f["c1_p99_ratio"] = round(f["c1_p99_ms"] / max(alone["c1_p99_ms"], 1e-9), 3)
    text = "  ".join(
        f"{mode}: c64 p50={f['c64_p50_ms']:.2f} p99={f['c64_p99_ms']:.2f}"
        f" c1 p50={f['c1_p50_ms']:.2f} p99={f['c1_p99_ms']:.2f}ms"
        + (
            f" (x{f['c64_p99_ratio']:.2f}/x{f['c1_p99_ratio']:.2f},"
            f" {f['reads_per_second']:.0f} reads/s)"
            if mode != "alone"
            else ""
        )
        for mode, f in figure.items()
    )
    gaps = loop_gaps()
    figure["loop_gaps"] = gaps
    text += (
        f"  in-process: a recomputation took {gaps['compute_ms']:.1f}ms, the loop was held at"
        f" most {gaps['max_gap_ms']:.2f}ms of CPU between turns (p99 {gaps['p99_gap_ms']:.2f}ms)"
    )
    bench.record("results_while_evaluating", text, figure)


def loop_gaps(repeats: int = 5) -> dict[str, float]:
    """The results' own code path (proxy.control.results) on this process's event loop beside
    a ticker that only yields: how long the loop was held between two of its turns, which is
    the most an evaluate on the server waits behind a recomputation (machine noise aside)."""

    # As the server does after each snapshot change: what lives long leaves the collector's
    # work, so a full collection here walks what the computation made, not the bench's heap.
    gc.collect()
    gc.freeze()

    async def main() -> dict[str, float]:
        gaps: list[float] = []
        computing = []
        for r in range(repeats):
            experiment: Any = {
                "id": f"bench-{uuid.uuid4()}",
                "variants": [
                    {"key": f"v{v}", "value": v, "percentage": 10} for v in range(VARIANTS)
                ],
            }
            conversions = tuple(EXPOSED // 10 + 150 * v + r for v in range(VARIANTS))
            tally = Tally(
                (EXPOSED,) * VARIANTS,
                conversions,
                tuple(((25.0 * x, 0.0), (900.0 * x, 0.0)) for x in conversions),
                sum(conversions),
            )
            _, took = await beside_ticker(
                results.experiment_results(experiment, "conversion", tally), gaps
            )
            computing.append(took)
        gaps.sort()
        return {
            "compute_ms": round(statistics.median(computing), 2),
            "max_gap_ms": round(gaps[-1], 3),
            "p99_gap_ms": round(percentile(gaps, 99), 3),
            "turns": len(gaps),
        }

    return asyncio.run(main())


def median(values: Any) -> float:
    return round(statistics.median(list(values)), 3)


def experiment_key(path: str) -> str:
    return path.rsplit("/", 1)[1]


def _experiment(api: Api, redis_url: str) -> str:
    """A project of its own with one running 10-variant experiment, its sets filled in Redis;
    returns the experiment's path."""
    project = api.data("POST", "/api/v1/flags/projects", {"name": "results bench"})
    flag = api.data(
        "POST",
        "/api/v1/flags",
        {"project_id": project["id"], "key": "layout", "name": "Layout", "flag_type": "string",
         "default_value": "v0"},
    )  # fmt: skip
    variants = [{"key": f"v{i}", "value": f"v{i}", "percentage": 10} for i in range(VARIANTS)]
    base = f"/api/v1/flags/{flag['id']}/experiments"
    body = {"name": "Ten", "environment": ENV, "variants": variants}
    experiment = api.data("POST", base, body)
    api.data("POST", f"{base}/{experiment['id']}/start")
    client = redis.Redis.from_url(redis_url)
    try:
        pipe = client.pipeline(transaction=False)
        exp = experiment["id"]
        for v in range(VARIANTS):
            users = [f"bench-{v}-{i}" for i in range(EXPOSED)]
            converted = users[: EXPOSED // 10 + 150 * v]
            for start in range(0, EXPOSED, 10_000):
                pipe.sadd(keys.exposures(exp, v), *users[start : start + 10_000])
            for start in range(0, len(converted), 10_000):
                pipe.sadd(
                    keys.conversions(exp, "conversion", v), *converted[start : start + 10_000]
                )
            total = 25.0 * len(converted)
            pipe.hset(
                keys.value_sums(exp, "conversion"),
                mapping={f"{v}:s": total, f"{v}:q": 900.0 * len(converted)},
            )
            pipe.execute()
    finally:
        client.close()
    return f"{base}/{experiment['id']}"


class Reader(threading.Thread):
    """A client reading the results in a loop, on its own connection, until stopped."""

    def __init__(
        self,
        port: int,
        token: str,
        path: str,
        client: redis.Redis,
        experiment_id: str,
        mode: str,
    ) -> None:
        super().__init__(daemon=True)
        self.port, self.path, self.mode = port, path, mode
        self.headers = {"Authorization": f"Bearer {token}"}
        self.client = client
        self.experiment_id = experiment_id
        self.halt = threading.Event()
        self.token = uuid.uuid4().hex
        self.latencies: list[float] = []
        self.failures = 0
        self.started = self.ended = 0.0

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.started = last_change = time.perf_counter()
        n = 0
        while not self.halt.is_set():
            now = time.perf_counter()
            if self.mode == "recomputing" or now - last_change >= 1.0:
                n += 1
                name = keys.conversions(self.experiment_id, "conversion", n % VARIANTS)
                self.client.sadd(name, f"late-{self.token}-{n}")  # new in every round
                last_change = now
            begun = time.perf_counter()
            try:
                conn.request("GET", self.path, headers=self.headers)
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    self.failures += 1
            except (OSError, http.client.HTTPException):
                self.failures += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.latencies.append((time.perf_counter() - begun) * 1000)
        self.ended = time.perf_counter()
        conn.close()

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=60)

    def figures(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        seconds = max(self.ended - self.started, 1e-9)
        return {
            "count": len(ordered),
            "per_second": len(ordered) / seconds,
            "p50_ms": round(percentile(ordered, 50), 2),
            "p99_ms": round(percentile(ordered, 99), 2),
            "failures": self.failures,
        }
