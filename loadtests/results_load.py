"""The bench phase `results_while_evaluating`: evaluate on the realistic project while a client
reads a 10-variant experiment's results in a loop on the same server, against evaluate alone.

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

import http.client
import threading
import time
from typing import Any, Protocol

import redis

from loadtests import procs
from loadtests.api import Api
from loadtests.loadgen import percentile
from loadtests.scenarios import ENV, Project
from proxy.store import keys

VARIANTS = 10
EXPOSED = 100_000  # per variant
EVALUATE = "/api/v1/flags/evaluate"


class BenchLike(Protocol):
    """What this phase uses of loadtests.bench.Bench (which imports this module)."""

    token: str

    def measure(self, server: procs.Server, path: str, bodies: Any) -> Any: ...

    def evaluate_bodies(self, project: Project) -> Any: ...

    def record(self, name: str, text: str, figure: dict[str, Any]) -> None: ...


def say(text: str) -> None:
    print(f"# {text}", flush=True)


def results_while_evaluating(
    bench: BenchLike, proxy: procs.Server, api: Api, redis_url: str, realistic: Project
) -> None:
    say(f"results: evaluate_realistic alone, then while a client reads a {VARIANTS}-variant")
    say(f"experiment's results ({EXPOSED:,} users a variant) in a loop: polling, recomputing")
    path = _experiment(api, redis_url)
    bodies = bench.evaluate_bodies(realistic)
    client = redis.Redis.from_url(redis_url)
    try:
        alone = bench.measure(proxy, EVALUATE, bodies)
        runs = {"alone": (alone, None)}
        for mode in ("polling", "recomputing"):
            reader = Reader(proxy.port, bench.token, path, client, experiment_key(path), mode)
            reader.start()
            try:
                measured = bench.measure(proxy, EVALUATE, bodies)
            finally:
                reader.stop()
            runs[mode] = (measured, reader.figures())
    finally:
        client.close()
    figure: dict[str, Any] = {}
    parts = []
    for mode, (measured, reads) in runs.items():
        load = measured.load
        figure[mode] = {
            "rps": round(load.rps),
            "p50_ms": load.p50_ms,
            "p99_ms": load.p99_ms,
            "errors": load.errors,
            "server_cpu": round(measured.cpu, 3),
            **({"reads": reads} if reads else {}),
        }
        parts.append(f"{mode} p50={load.p50_ms:.2f}ms p99={load.p99_ms:.2f}ms")
    ratio = {m: figure[m]["p99_ms"] / max(figure["alone"]["p99_ms"], 1e-9) for m in runs}
    figure["p99_ratio"] = {m: round(r, 3) for m, r in ratio.items() if m != "alone"}
    reads = figure["recomputing"]["reads"]
    text = (
        "  ".join(parts)
        + f"  p99 ratio polling={ratio['polling']:.2f} recomputing={ratio['recomputing']:.2f}"
        + f"  (reads/s polling={figure['polling']['reads']['per_second']:.0f}"
        + f" recomputing={reads['per_second']:.0f}, a recomputing read p50={reads['p50_ms']:.1f}ms)"
    )
    bench.record("results_while_evaluating", text, figure)


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
                self.client.sadd(name, f"late-{self.mode}-{n}")
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
