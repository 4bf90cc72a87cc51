"""The benchmark: evaluate and track throughput against a raw-ASGI baseline, config propagation
between two proxies, and a worker's memory, on one machine (`python -m loadtests.bench`)."""

from __future__ import annotations

import argparse
import os
import platform
import random
import secrets
import statistics
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from loadtests import flush_load, procs, results_load, scenarios, streams_load
from loadtests.api import Api, ApiFailure
from loadtests.loadgen import AsyncioLoad, LoadGenerator, LoadResult, Wrk, ensure_wrk, percentile

EVALUATE = "/api/v1/flags/evaluate"
TRACK = "/api/v1/flags/track"
PROBE_USER = scenarios.user_context(4242)
NO_PROJECT = "00000000-0000-0000-0000-000000000000"  # the baseline's bodies: same length
SATURATED = 0.9  # a process using less of its core than this was held back by something else

Figures = dict[str, Any]


@dataclass(frozen=True)
class Plan:
    duration: int  # seconds of each throughput measurement
    warmup: int  # seconds of load on each server and route before it is measured
    rounds: int  # propagation rounds
    wrk: bool = True  # False: the asyncio load generator even where wrk is available
    rounds_of_throughput: int = 3  # interleaved rounds; each figure is their median

    @classmethod
    def of(cls, args: argparse.Namespace) -> Plan:
        if args.quick:
            return cls(duration=2, warmup=1, rounds=10, wrk=not args.no_wrk)
        return cls(duration=args.duration, warmup=3, rounds=50, wrk=not args.no_wrk)


@dataclass(frozen=True)
class Measured:
    load: LoadResult
    cpu: float  # the share of one core the server used while it was measured
    loadgen_cpu: float  # the same for the load generator
    others_cpu: float  # the share of the server's core that other processes took

    @property
    def per_cpu(self) -> float:
        """Requests per CPU-second of the server: what other work on the machine moves least."""
        return self.load.rps / max(self.cpu, 1e-9)

    def figure(self, baseline: Measured | None = None) -> Figures:
        out = {
            **asdict(self.load),
            "server_cpu": round(self.cpu, 3),
            "loadgen_cpu": round(self.loadgen_cpu, 3),
            "others_on_server_core": round(self.others_cpu, 3),
            "requests_per_cpu_second": round(self.per_cpu),
        }
        if baseline is not None:
            out["ratio"] = round(self.load.rps / baseline.load.rps, 3)
            out["cpu_ratio"] = round(self.per_cpu / baseline.per_cpu, 3)
        return out

    def text(self, baseline: Measured | None = None) -> str:
        r = self.load
        text = f"req/s={r.rps:.0f}  p50={r.p50_ms:.2f}ms  p99={r.p99_ms:.2f}ms"
        if baseline is not None:
            text += f"  ratio={r.rps / baseline.load.rps:.2f}"
        text += f"  cpu={self.cpu:.0%}"
        if baseline is not None:
            text += f"  cpu_ratio={self.per_cpu / baseline.per_cpu:.2f}"
        if r.errors:
            text += f"  ERRORS={r.errors}"
        if self.cpu >= SATURATED:
            return text
        if self.others_cpu >= 1 - SATURATED:
            return text + f"  (other processes took {self.others_cpu:.0%} of its core)"
        if self.loadgen_cpu >= SATURATED:
            return text + "  (held back by the load generator)"
        return text + "  (the server was not saturated)"


def median_of(runs: list[Measured]) -> Measured:
    """The run of median req/s (its latencies and CPU with it: one real run, not a blend)."""
    return sorted(runs, key=lambda m: m.load.rps)[len(runs) // 2]


def say(text: str) -> None:
    print(f"# {text}", flush=True)


class Bench:
    def __init__(self, plan: Plan, workdir: Path, processes: procs.Processes) -> None:
        self.plan = plan
        self.workdir = workdir
        self.procs = processes
        self.token = "bench_" + secrets.token_urlsafe(24)
        self.figures: Figures = {}
        self.lines: list[str] = []
        self.load: LoadGenerator = AsyncioLoad()

    # Plumbing ----------------------------------------------------------------------------------

    def choose_load_generator(self) -> None:
        binary, how = ensure_wrk() if self.plan.wrk else (None, "--no-wrk")
        if binary is not None:
            self.load = Wrk(binary, self.workdir)
            say(f"load generator: wrk ({binary}, {how}), -t1 -c64, on core 1")
        else:
            self.load = AsyncioLoad()
            say(f"load generator: wrk unavailable ({how})")
            say("FALLING BACK to the asyncio load generator of loadtests/loadgen.py, on core 1;")
            say("its figures compare only with other runs of the same generator")
        self.figures["meta"]["load_generator"] = self.load.name

    def measure(self, server: procs.Server, path: str, bodies: Path) -> Measured:
        """Warm the server up, then measure it, and the CPU it, the load generator and any
        other process on its core used meanwhile."""
        self.load.run(self.procs, server.port, path, bodies, self.token, self.plan.warmup)
        before = self.cpu_clocks(server)
        result = self.load.run(
            self.procs, server.port, path, bodies, self.token, self.plan.duration
        )
        seconds = max(result.seconds, 1e-9)
        after = self.cpu_clocks(server)
        used = [(end - start) / seconds for start, end in zip(before, after, strict=True)]
        server_cpu, loadgen_cpu, core_cpu = (min(1.0, share) for share in used)
        return Measured(result, server_cpu, loadgen_cpu, max(0.0, core_cpu - server_cpu))

    def cpu_clocks(self, server: procs.Server) -> tuple[float, float, float]:
        return (
            procs.cpu_seconds(server.pid),
            procs.children_cpu_seconds(),
            procs.core_process_seconds(procs.SERVER_CORE),
        )

    def record(self, name: str, text: str, figure: Figures) -> None:
        self.figures[name] = figure
        out = f"{name:<19} {text}"
        self.lines.append(out)
        print(out, flush=True)

    def bodies(self, name: str, lines: list[bytes]) -> Path:
        return scenarios.write_lines(self.workdir / f"{name}.jsonl", lines)

    # Phases ------------------------------------------------------------------------------------

    def run(self) -> None:
        self.figures["meta"] = self.meta()
        self.choose_load_generator()
        redis_url = procs.start_redis(self.procs)
        baseline = procs.start_baseline(self.procs)
        proxy = procs.start_proxy(self.procs, "proxy-a", redis_url, self.token)
        api = Api(proxy.port, self.token)
        try:
            realistic = self.build(api, redis_url, "realistic", scenarios.REALISTIC)
            large = self.build(api, redis_url, "large", scenarios.LARGE)
            plain = self.build(api, redis_url, "realistic without rules", scenarios.WITHOUT_RULES)
            self.throughput(baseline, proxy, api, realistic, large, plain, redis_url)
            self.metrics_cost(proxy, redis_url, realistic)
            results_load.results_while_evaluating(self, proxy, api, redis_url, realistic)
            flush_load.exposure_flush(self, redis_url, repeats=2 if self.plan.duration < 5 else 5)
            self.propagation(api, redis_url, {"": realistic, "_large": large})
            streams_load.run(self, redis_url, realistic)
        finally:
            api.close()
        self.procs.stop(baseline.child)
        self.procs.stop(proxy.child)
        procs.flush_redis(redis_url)
        self.memory(redis_url)

    def meta(self) -> Figures:
        load = os.getloadavg()[0]
        if load > 0.5:
            say(f"load average {load:.1f} on {os.cpu_count()} cores: other work competes with")
            say("the bench, and lowers (and scatters) its figures; `cpu=` shows how much")
        return {
            "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "duration_s": self.plan.duration,
            "warmup_s": self.plan.warmup,
            "connections": 64,
            "cores": "server on core 0; load generator, Redis and this driver on core 1",
            "load_average_at_start": round(load, 2),
            "python": platform.python_version(),
        }

    def build(self, api: Api, redis_url: str, name: str, mix: scenarios.Mix) -> scenarios.Project:
        say(f"building the {name} project through the HTTP API ({mix.flags} flags)")
        started = time.perf_counter()
        project = scenarios.build_project(api, name, mix)
        built = time.perf_counter() - started
        config = scenarios.stored_config_bytes(redis_url, project.id)
        answer = len(orjson.dumps({"flags": api.evaluate(project.id, PROBE_USER)}))
        project.facts = {
            "flags": mix.flags,
            "targeted_flags": mix.targeted,
            "running_experiments": mix.experiments,
            "config_bytes": config,
            "answer_bytes": answer,
            "build_seconds": round(built, 1),
        }
        say(
            f"  {mix.static} static, {mix.targeted} with rules, {mix.experiments} experiments;"
            f" config {config / 1000:.1f} KB as stored; answer {answer / 1000:.1f} KB;"
            f" built in {built:.1f}s"
        )
        return project

    def throughput(
        self,
        baseline: procs.Server,
        proxy: procs.Server,
        api: Api,
        realistic: scenarios.Project,
        large: scenarios.Project,
        plain: scenarios.Project,
        redis_url: str,
    ) -> None:
        """Rounds of: the baseline, then each route on the proxy with the fast path and on one
        without it (EDGE_FAST_PATH=0), the order alternating between rounds. Each figure is the
        median of its rounds, so a burst of other work on the machine moves one round only;
        ratios are of medians, to the baseline's median."""
        asgi = procs.start_proxy(
            self.procs, "proxy-asgi", redis_url, self.token, EDGE_FAST_PATH="0"
        )
        experiment = realistic.experiments[0]
        base_bodies = self.bodies("baseline", scenarios.evaluate_bodies(NO_PROJECT))
        routes = {
            "evaluate_realistic": (EVALUATE, self.evaluate_bodies(realistic), realistic.facts),
            "evaluate_no_rules": (EVALUATE, self.evaluate_bodies(plain), plain.facts),
            "evaluate_large": (EVALUATE, self.evaluate_bodies(large), large.facts),
            "track": (TRACK, self.bodies("track", scenarios.track_bodies(experiment)), {}),
        }
        rounds = self.plan.rounds_of_throughput
        say(
            f"throughput: {rounds} rounds of {self.plan.warmup}s warm-up then {self.plan.duration}s"
        )
        say("each: baseline, then every route on the fast path and with EDGE_FAST_PATH=0")
        base: list[Measured] = []
        runs: dict[str, dict[str, list[Measured]]] = {n: {"fast": [], "asgi": []} for n in routes}
        try:
            for n in range(rounds):
                base.append(self.measure(baseline, "/", base_bodies))
                servers = [("fast", proxy), ("asgi", asgi)]
                for name, (path, bodies, _) in routes.items():
                    for setting, server in servers if n % 2 == 0 else servers[::-1]:
                        runs[name][setting].append(self.measure(server, path, bodies))
        finally:
            self.procs.stop(asgi.child)
        best = median_of(base)
        self.record(
            "baseline",
            best.text()
            + f"  (median of {rounds}; req/s {' '.join(f'{m.load.rps:.0f}' for m in base)})",
            {**best.figure(), "runs_rps": [round(m.load.rps) for m in base]},
        )
        for name, (_, _, facts) in routes.items():
            fast, slow = median_of(runs[name]["fast"]), median_of(runs[name]["asgi"])
            text = fast.text(best) + f"  p99/p50={fast.load.p99_ms / fast.load.p50_ms:.1f}"
            text += f"  | fast_path=0: req/s={slow.load.rps:.0f} p99={slow.load.p99_ms:.2f}ms"
            text += f" ratio={slow.load.rps / best.load.rps:.2f}"
            figure = {
                **fast.figure(best),
                "runs_rps": [round(m.load.rps) for m in runs[name]["fast"]],
                "fast_path_off": {
                    **slow.figure(best),
                    "runs_rps": [round(m.load.rps) for m in runs[name]["asgi"]],
                },
                **facts,
            }
            if name == "track":
                figure["distinct_converters"] = self.converters(api, experiment)
            self.record(name, text, figure)

    def metrics_cost(
        self, proxy: procs.Server, redis_url: str, realistic: scenarios.Project
    ) -> None:
        """What request metrics cost evaluate: alternating runs of the same project on a proxy
        with metrics and one with EDGE_METRICS=0, the median of each."""
        bare = procs.start_proxy(self.procs, "proxy-bare", redis_url, self.token, EDGE_METRICS="0")
        bodies = self.evaluate_bodies(realistic)
        rounds = 2 if self.plan.duration < 5 else 5
        say(f"metrics: evaluate_realistic with and without request metrics, {rounds} rounds each")
        say("(alternating which goes first, after a warm-up of the fresh proxy)")
        with_metrics, without = [], []
        try:
            self.measure(bare, EVALUATE, bodies)  # its first exposures, as the other had
            for n in range(rounds):
                pair = [(proxy, with_metrics), (bare, without)]
                for server, figures in pair if n % 2 == 0 else pair[::-1]:
                    figures.append(self.measure(server, EVALUATE, bodies).load.rps)
        finally:
            self.procs.stop(bare.child)
        on, off = statistics.median(with_metrics), statistics.median(without)
        cost = 1 - on / off
        self.record(
            "metrics_cost",
            f"with={on:.0f} req/s  without={off:.0f} req/s  cost={cost:.1%}",
            {"with_rps": with_metrics, "without_rps": without, "cost": round(cost, 4)},
        )

    def evaluate_bodies(self, project: scenarios.Project) -> Path:
        return self.bodies(f"evaluate-{project.id}", scenarios.evaluate_bodies(project.id))

    def converters(self, api: Api, experiment: scenarios.Experiment) -> int:
        path = f"/api/v1/flags/{experiment.flag_id}/experiments/{experiment.id}"
        return int(api.data("GET", path)["conversions"])

    def propagation(self, a: Api, redis_url: str, projects: dict[str, scenarios.Project]) -> None:
        say(f"propagation: PATCH on proxy A, poll evaluate on proxy B, {self.plan.rounds} rounds")
        other = procs.start_proxy(self.procs, "proxy-b", redis_url, self.token, procs.LOAD_CORE)
        b = Api(other.port, self.token)
        try:
            for suffix, project in projects.items():
                delays, misses = self.propagation_rounds(a, b, project)
                figure = {
                    "rounds": len(delays) + misses,
                    "p50_ms": round(percentile(delays, 50), 2),
                    "p99_ms": round(percentile(delays, 99), 2),
                    "max_ms": round(max(delays, default=0.0), 2),
                    "missed": misses,
                    "flags": len(project.flags),
                }
                text = (
                    f"p50={figure['p50_ms']:.2f}ms  p99={figure['p99_ms']:.2f}ms"
                    f"  max={figure['max_ms']:.2f}ms  ({figure['rounds']} rounds,"
                    f" {figure['flags']} flags)" + (f"  MISSED={misses}" if misses else "")
                )
                self.record(f"propagation{suffix}", text, figure)
        finally:
            b.close()
        self.procs.stop(other.child)

    def propagation_rounds(
        self, a: Api, b: Api, project: scenarios.Project, timeout: float = 10.0
    ) -> tuple[list[float], int]:
        """Delays (ms, ascending) from sending the PATCH to B's first changed answer, and how
        many rounds B did not show the change within `timeout`."""
        flag = project.probe()
        value = bool(flag["default_value"])
        delays: list[float] = []
        misses = 0
        for _ in range(self.plan.rounds):
            value = not value
            started = time.perf_counter()
            a.send("PATCH", f"/api/v1/flags/{flag['id']}", {"default_value": value})
            while b.evaluate(project.id, PROBE_USER)[flag["key"]]["value"] != value:
                if time.perf_counter() - started > timeout:
                    misses += 1
                    break
            else:
                delays.append((time.perf_counter() - started) * 1000)
            a.answer()
            time.sleep(random.uniform(0.02, 0.05))
        return sorted(delays), misses

    def memory(self, redis_url: str) -> None:
        mix = scenarios.MEMORY
        say(f"memory: {mix.flags} flags and {mix.experiments} running experiments, fresh worker")
        # Building is no measurement: the writer may use whichever core is free.
        writer = procs.start_proxy(self.procs, "proxy-writer", redis_url, self.token, cpu=None)
        empty = procs.rss_mb(writer.pid)
        api = Api(writer.port, self.token)
        started = time.perf_counter()
        try:
            project = scenarios.build_project(api, "memory", mix)
        finally:
            api.close()
        built = time.perf_counter() - started
        self.procs.stop(writer.child)
        fresh = procs.start_proxy(self.procs, "proxy-fresh", redis_url, self.token)
        answered = until_answers(Api(fresh.port, self.token), project.id)
        time.sleep(1.0)  # its last-known-good file is written 0.5 s after a load: count it too
        rss = procs.rss_mb(fresh.pid)
        self.procs.stop(fresh.child)
        figure = {
            "rss_mb": round(rss, 1),
            "empty_rss_mb": round(empty, 1),
            "flags": mix.flags,
            "running_experiments": mix.experiments,
            "config_bytes": scenarios.stored_config_bytes(redis_url, project.id),
            "answered_after_ready_s": round(answered, 2),
            "build_seconds": round(built, 1),
        }
        text = (
            f"rss={rss:.1f}MB  ({mix.flags} flags, {mix.experiments} running experiments;"
            f" a worker holding nothing: {empty:.1f}MB)"
        )
        self.record("memory", text, figure)
        say(f"  {figure['config_bytes'] / 1000:.0f} KB of config, built in {built:.1f}s")


def until_answers(api: Api, project_id: str, timeout: float = 60.0) -> float:
    """Seconds until evaluate answers for the project (polling)."""
    started = time.perf_counter()
    try:
        while True:
            try:
                api.evaluate(project_id, PROBE_USER)
                return time.perf_counter() - started
            except ApiFailure:
                if time.perf_counter() - started > timeout:
                    raise
                time.sleep(0.01)
    finally:
        api.close()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    cli = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__)
    cli.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    cli.add_argument("--quick", action="store_true", help="a ~1-minute smoke run")
    cli.add_argument("--out", type=Path, default=Path("bench-results.json"), help="JSON figures")
    cli.add_argument("--no-wrk", action="store_true", help="use the asyncio load generator")
    return cli.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    procs.raise_on_termination()
    procs.pin_self(procs.LOAD_CORE)
    bench: Bench | None = None
    code = 0
    try:
        with procs.workspace() as (workdir, processes):
            bench = Bench(Plan.of(args), workdir, processes)
            bench.run()
    except KeyboardInterrupt:
        print("\ninterrupted: every process started was stopped", file=sys.stderr)
        code = 130
        if bench is not None:
            bench.figures["error"] = "interrupted"
    except Exception as e:
        traceback.print_exc()
        code = 1
        if bench is not None:
            bench.figures["error"] = f"{type(e).__name__}: {e}"
    if bench is None or not bench.lines:
        return code
    args.out.write_bytes(orjson.dumps(bench.figures, option=orjson.OPT_INDENT_2) + b"\n")
    print("\nsummary")
    for text in bench.lines:
        print(text)
    print(f"figures written to {args.out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
