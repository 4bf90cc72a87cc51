"""Experiment results end to end: thousands of users evaluated and some tracked, on two
processes; the counts and statistics must match what the test computes on its own."""

from __future__ import annotations

import math
import random

from tests.e2e.helpers import evaluate, start_experiment
from tests.support import Client, eventually

VARIANTS = [
    {"key": "control", "value": "a", "percentage": 50},
    {"key": "blue", "value": "b", "percentage": 30},
    {"key": "green", "value": "c", "percentage": 20},
]
Z = 1.959963984540054


def wilson(x: int, n: int) -> tuple[float, float]:
    p = x / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return centre - half, centre + half


def close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


def test_results_match_an_independent_computation(
    backend_clients: tuple[Client, Client],
) -> None:
    a, b = backend_clients
    w = start_experiment(a, variants=VARIANTS)
    eventually(
        lambda: evaluate(b, w["project_id"], "user-0")["checkout_flow"]["value"] != "control"
    )
    value_to_index = {v["value"]: i for i, v in enumerate(VARIANTS)}
    variant_of = {}
    for i in range(3000):
        user = f"user-{i}"
        flags = evaluate(a if i % 2 else b, w["project_id"], user)
        variant_of[user] = value_to_index[flags["checkout_flow"]["value"]]
    rng = random.Random(7)
    converted = {u for u in variant_of if rng.random() < 0.08 + 0.04 * variant_of[u]}
    buyers = set(list(converted)[:40])
    for n, user in enumerate(sorted(converted)):
        body = {"flag_id": w["flag_id"], "experiment_id": w["experiment_id"], "user_id": user}
        assert (a if n % 2 else b).post("/api/v1/flags/track", body).status == 200
    for user in sorted(converted)[:25]:  # duplicates are ignored
        body = {"flag_id": w["flag_id"], "experiment_id": w["experiment_id"], "user_id": user}
        assert a.post("/api/v1/flags/track", body).status == 200
    for user in buyers:
        body = {"flag_id": w["flag_id"], "experiment_id": w["experiment_id"], "user_id": user,
                "goal": "purchase"}  # fmt: skip
        assert b.post("/api/v1/flags/track", body).status == 200

    n = [sum(1 for v in variant_of.values() if v == i) for i in range(3)]
    x = [sum(1 for u in converted if variant_of[u] == i) for i in range(3)]
    data = eventually(
        lambda: (
            (d := a.get(w["path"]).json["data"])["results"]["variants"][0]["exposures"] == n[0]
            and sum(v["exposures"] for v in d["results"]["variants"]) == 3000
            and d
        )
    )
    results = data["results"]
    assert data["conversions"] == len(converted)
    assert results["control"] == "control" and results["goal"] == "conversion"
    got = results["variants"]
    assert [v["key"] for v in got] == ["control", "blue", "green"]
    assert [v["exposures"] for v in got] == n
    assert [v["conversions"] for v in got] == x
    assert got[0]["absolute_lift"] is None and got[0]["p_value"] is None

    pc = x[0] / n[0]
    for i in (1, 2):
        pt = x[i] / n[i]
        v = got[i]
        assert close(v["conversion_rate"], pt)
        assert close(v["absolute_lift"], pt - pc)
        assert close(v["relative_lift"], (pt - pc) / pc)
        (lc, uc), (lt, ut) = wilson(x[0], n[0]), wilson(x[i], n[i])
        d = pt - pc
        lo = d - math.sqrt((pt - lt) ** 2 + (uc - pc) ** 2)
        hi = d + math.sqrt((ut - pt) ** 2 + (pc - lc) ** 2)
        assert close(v["absolute_lift_ci"][0], lo) and close(v["absolute_lift_ci"][1], hi)
        pooled = (x[0] + x[i]) / (n[0] + n[i])
        z = d / math.sqrt(pooled * (1 - pooled) * (1 / n[0] + 1 / n[i]))
        assert close(v["p_value"], math.erfc(abs(z) / math.sqrt(2)))
        # Monte Carlo of the Beta posteriors, seeded: within 0.01 of the exact figure.
        draws = random.Random(i)
        wins = sum(
            draws.betavariate(1 + x[i], 1 + n[i] - x[i])
            > draws.betavariate(1 + x[0], 1 + n[0] - x[0])
            for _ in range(20_000)
        )
        assert abs(v["chance_to_beat_control"] - wins / 20_000) < 0.01
    expected = [3000 * vv["percentage"] / 100 for vv in VARIANTS]
    chi2 = sum((o - e) ** 2 / e for o, e in zip(n, expected, strict=True))
    assert close(results["srm"]["p_value"], math.exp(-chi2 / 2))  # chi-square, 2 df
    assert results["srm"]["warning"] is False

    purchase = a.get(w["path"] + "?goal=purchase").json["data"]
    assert purchase["results"]["goal"] == "purchase"
    by_goal = [sum(1 for u in buyers if variant_of[u] == i) for i in range(3)]
    assert [v["conversions"] for v in purchase["results"]["variants"]] == by_goal
    assert purchase["conversions"] == len(converted)  # `conversions` is the default goal

    a.post(w["path"] + "/stop")
    assert a.get(w["path"]).json["data"]["results"]["variants"] == got


def test_traffic_allocation_admits_a_share_and_a_rise_moves_no_one(
    backend_clients: tuple[Client, Client],
) -> None:
    a, _ = backend_clients
    w = start_experiment(a, variants=VARIANTS, traffic_percentage=30)
    users = [f"t-{i}" for i in range(1000)]
    first = {u: evaluate(a, w["project_id"], u)["checkout_flow"]["value"] for u in users}
    inside = {u for u, v in first.items() if v != "control"}
    assert 240 < len(inside) < 360
    body = {"flag_id": w["flag_id"], "experiment_id": w["experiment_id"]}
    outsider = next(u for u in users if u not in inside)
    r = a.post("/api/v1/flags/track", {**body, "user_id": outsider})
    assert r.status == 409
    assert a.patch(w["path"], {"traffic_percentage": 20}).status == 422
    assert a.patch(w["path"], {"traffic_percentage": 60}).status == 200
    second = {u: evaluate(a, w["project_id"], u)["checkout_flow"]["value"] for u in users}
    assert all(second[u] == first[u] for u in inside)
    assert 540 < sum(1 for v in second.values() if v != "control") < 660
    exposures = eventually(
        lambda: (
            (t := sum(v["exposures"] for v in a.get(w["path"]).json["data"]["results"]["variants"]))
            == sum(1 for v in second.values() if v != "control")
            and t
        )
    )
    assert exposures < len(users)
