"""Locust load test of any deployment of the proxy: evaluate and track, 10:1, for users drawn
from 100,000 ids (`python -m loadtests.run_locust` runs it against a local server).

    EDGE_KEY=kr_live_... EDGE_PROJECT_ID=<uuid> [EDGE_ENVIRONMENT=production] \\
    [EDGE_FLAG_ID=<uuid> EDGE_EXPERIMENT_ID=<uuid>] [EDGE_WAIT_SECONDS=0] \\
    locust -f loadtests/locustfile.py --host https://edge.example.com

Track runs only when EDGE_FLAG_ID and EDGE_EXPERIMENT_ID name a running experiment. The key
needs `flags:evaluate` (or `flags:read`). Each simulated user waits up to EDGE_WAIT_SECONDS
between requests (default 0: as fast as it can).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any, ClassVar

from locust import FastHttpUser, TaskSet, between

USERS = 100_000
COUNTRIES = ("US", "DE", "FR", "GB", "NL", "ES", "BR", "IN", "JP", "CA")
PLANS = ("free",) * 6 + ("pro",) * 3 + ("enterprise",)
VERSIONS = ("1.9.3", "2.0.0", "2.3.1", "2.4.0", "2.5.2", "3.0.0")

KEY = os.environ.get("EDGE_KEY", "")
PROJECT_ID = os.environ.get("EDGE_PROJECT_ID", "")
ENVIRONMENT = os.environ.get("EDGE_ENVIRONMENT", "production")
FLAG_ID = os.environ.get("EDGE_FLAG_ID", "")
EXPERIMENT_ID = os.environ.get("EDGE_EXPERIMENT_ID", "")
WAIT = float(os.environ.get("EDGE_WAIT_SECONDS", "0") or 0)

if not KEY or not PROJECT_ID:
    raise RuntimeError("set EDGE_KEY and EDGE_PROJECT_ID (see the docstring of this file)")


def context(i: int) -> dict[str, Any]:
    """User i's attributes: always the same for the same user."""
    return {
        "user_id": f"user-{i:06d}",
        "country": COUNTRIES[i % len(COUNTRIES)],
        "plan": PLANS[(i // 10) % len(PLANS)],
        "app_version": VERSIONS[(i // 100) % len(VERSIONS)],
        "age": 18 + (i * 7919) % 53,
    }


def evaluate(user: EdgeUser) -> None:
    body = {"project_id": PROJECT_ID, "environment": ENVIRONMENT, "context": user.next_context()}
    user.client.post("/api/v1/flags/evaluate", json=body, headers=user.headers, name="evaluate")


def track(user: EdgeUser) -> None:
    body = {
        "flag_id": FLAG_ID,
        "experiment_id": EXPERIMENT_ID,
        "user_id": user.next_context()["user_id"],
    }
    user.client.post("/api/v1/flags/track", json=body, headers=user.headers, name="track")


class EdgeUser(FastHttpUser):
    wait_time = between(0, WAIT)
    tasks: list[Callable[..., Any] | TaskSet] = [evaluate] * 10  # 10:1 with track
    if FLAG_ID and EXPERIMENT_ID:
        tasks.append(track)
    headers: ClassVar[dict[str, str]] = {"Authorization": f"Bearer {KEY}"}

    def next_context(self) -> dict[str, Any]:
        return context(random.randrange(USERS))
