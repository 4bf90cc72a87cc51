"""Run the locustfile against a local server (`python -m loadtests.run_locust`): its own Redis
and proxy, a small project with a running experiment, 20 users for 20 s, locust's summary."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from loadtests import procs, scenarios
from loadtests.api import Api

SMALL = scenarios.Mix(static=7, targeted=2, experiments=1)
LOCUSTFILE = Path(__file__).with_name("locustfile.py")


def locust_command() -> list[str]:
    beside = Path(sys.executable).with_name("locust")
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "locust"]


def prepare(api: Api) -> dict[str, str]:
    """The project, and a browser-safe key for it: the environment of the locustfile."""
    project = scenarios.build_project(api, "locust", SMALL)
    key = api.data(
        "POST",
        "/api/v1/keys",
        {"name": "locust", "scopes": ["flags:evaluate"], "project_ids": [project.id]},
    )
    experiment = project.experiments[0]
    return {
        "EDGE_KEY": key["token"],
        "EDGE_PROJECT_ID": project.id,
        "EDGE_ENVIRONMENT": scenarios.ENV,
        "EDGE_FLAG_ID": experiment.flag_id,
        "EDGE_EXPERIMENT_ID": experiment.id,
    }


def run(users: int, spawn_rate: int, seconds: int) -> int:
    with procs.workspace() as (_, processes):
        token = "locust_" + os.urandom(16).hex()
        redis_url = procs.start_redis(processes)
        server = procs.start_proxy(processes, "proxy", redis_url, token)
        api = Api(server.port, token)
        try:
            env = prepare(api)
        finally:
            api.close()
        argv = [
            *locust_command(), "-f", str(LOCUSTFILE), "--headless", "-u", str(users),
            "-r", str(spawn_rate), "-t", f"{seconds}s", "--only-summary",
            "--host", f"http://{procs.HOST}:{server.port}",
        ]  # fmt: skip
        print(f"$ {' '.join(argv)}", flush=True)
        child = processes.spawn("locust", argv, cpu=procs.LOAD_CORE, env={**os.environ, **env})
        try:
            code = child.popen.wait(seconds + 60)
        except subprocess.TimeoutExpired:
            code = 1
            print("locust did not finish in time", file=sys.stderr)
        print(child.log.read_text(errors="replace"), flush=True)
        return code


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m loadtests.run_locust", description=__doc__)
    cli.add_argument("-u", "--users", type=int, default=20)
    cli.add_argument("-r", "--spawn-rate", type=int, default=10)
    cli.add_argument("-t", "--seconds", type=int, default=20)
    args = cli.parse_args(argv)
    procs.raise_on_termination()
    try:
        code = run(args.users, args.spawn_rate, args.seconds)
    except KeyboardInterrupt:
        print("\ninterrupted: every process started was stopped", file=sys.stderr)
        return 130
    print(f"locust exited with {code}" + (" (some requests failed)" if code == 1 else ""))
    return code


if __name__ == "__main__":
    sys.exit(main())
