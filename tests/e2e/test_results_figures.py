"""Every figure of the results end to end: known exposures, conversions and values driven
through two server processes, each figure checked against the test's own computation of
shared/API.md's formulas (fixed, sequential, corrected, value goals) to 1e-6; the daily series
on those events; analysis settings over HTTP at every status."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from proxy.store import keys
from tests.e2e.helpers import evaluate, make_flag, make_project
from tests.support import Client, RedisProcess, ServerProcess, eventually

VARIANTS = [
    {"key": "control", "value": "a", "percentage": 40},
    {"key": "blue", "value": "b", "percentage": 30},
    {"key": "green", "value": "c", "percentage": 30},
]
USERS = 1500
GOAL = "revenue"
DEFAULTS = {"alpha": 0.05, "sequential_tuning": 5000, "correction": None}


# --- The formulas, written again here, independently of proxy.domain.stats ---------------------


def z_of(alpha: float) -> float:
    return statistics.NormalDist().inv_cdf(1 - alpha / 2)


def t_density(x: float, dof: float) -> float:
    log_c = math.lgamma((dof + 1) / 2) - math.lgamma(dof / 2) - 0.5 * math.log(dof * math.pi)
    return math.exp(log_c - (dof + 1) / 2 * math.log1p(x * x / dof))


def t_tail(t: float, dof: float, panels: int = 4000) -> float:
    """P(T > t) for t > 0: the integral of the density from t to infinity, with x = t / s over
    s in (0, 1], by Simpson's rule (smooth, and zero at s = 0 for dof > 1)."""

    def g(s: float) -> float:
        return 0.0 if s == 0 else t_density(t / s, dof) * t / (s * s)

    h = 1 / panels
    total = g(0) + g(1) + sum((4 if i % 2 else 2) * g(i * h) for i in range(1, panels))
    return total * h / 3


def t_quantile(q: float, dof: float) -> float:
    """The t with P(T > t) = q, by Newton's method from the normal quantile."""
    t = statistics.NormalDist().inv_cdf(1 - q)
    for _ in range(50):
        step = (t_tail(t, dof) - q) / t_density(t, dof)
        t += step
        if abs(step) < 1e-12 * t:
            break
    return t


def log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def chance_to_beat(x_t: int, n_t: int, x_c: int, n_c: int) -> float:
    """Evan Miller's closed form of P(p_t > p_c) under Beta(1 + x, 1 + n - x) posteriors."""
    a_t, b_t, a_c, b_c = 1 + x_t, 1 + n_t - x_t, 1 + x_c, 1 + n_c - x_c
    terms = [
        math.exp(
            log_beta(a_c + i, b_c + b_t)
            - math.log(b_t + i)
            - log_beta(1 + i, b_t)
            - log_beta(a_c, b_c)
        )
        for i in range(a_t)
    ]
    return math.fsum(terms)


def wilson(x: int, n: int, z: float) -> tuple[float, float]:
    p = x / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def sequential(
    lift: float, se: float, rel: float, rel_se: float, n: int, alpha: float, tuning: int
) -> dict[str, Any]:
    rho2 = (-2 * math.log(alpha) + math.log(1 - 2 * math.log(alpha))) / tuning
    nr = n * rho2

    def half(s: float) -> float:
        return s * math.sqrt(2 * (nr + 1) / nr * math.log(math.sqrt(nr + 1) / alpha))

    z = lift / se
    return {
        "absolute_lift_ci": [lift - half(se), lift + half(se)],
        "relative_lift_ci": [rel - half(rel_se), rel + half(rel_se)],
        "p_value": min(1.0, math.sqrt(nr + 1) * math.exp(-nr * z * z / (2 * (nr + 1)))),
    }


def adjusted(p: Sequence[float], correction: str | None) -> list[float | None]:
    m = len(p)
    if correction is None:
        return [None] * m
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    if correction == "holm-bonferroni":
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (m - rank) * p[i]))
            out[i] = running
    else:
        running = 1.0
        for rank in range(m - 1, -1, -1):
            i = order[rank]
            running = min(running, m * p[i] / (rank + 1))
            out[i] = running
    return list(out)


def expected_results(
    exposed: list[list[str]],
    converted: list[set[str]],
    values: dict[str, float],
    alpha: float,
    tuning: int,
    correction: str | None,
) -> list[dict[str, Any]]:
    """Each variant's row, from the users themselves: who was exposed, who converted, and the
    value each counted conversion kept."""
    z = z_of(alpha)
    rows: list[dict[str, Any]] = []
    user_values = [[values.get(u, 0.0) for u in users] for users in exposed]
    n_c, x_c = len(exposed[0]), len(converted[0])
    p_c = x_c / n_c
    ys_c = user_values[0]
    mean_c, var_c = statistics.fmean(ys_c), statistics.variance(ys_c)
    for i, users in enumerate(exposed):
        n, x = len(users), len(converted[i])
        p = x / n
        ys = user_values[i]
        mean, var = statistics.fmean(ys), statistics.variance(ys)
        row: dict[str, Any] = {
            "key": VARIANTS[i]["key"],
            "exposures": n,
            "conversions": x,
            "conversion_rate": p,
        }
        block: dict[str, Any] = {"sum": math.fsum(ys), "mean": mean, "variance": var}
        rows.append({**row, "value": block})
        if i == 0:
            continue
        # Conversions: Newcombe's interval, the pooled z-test, the delta-method relative lift.
        lift = p - p_c
        (lc, uc), (lt, ut) = wilson(x_c, n_c, z), wilson(x, n, z)
        var_t_mean, var_c_mean = p * (1 - p) / n, p_c * (1 - p_c) / n_c
        rel = lift / p_c
        rel_se = math.sqrt(var_t_mean / p_c**2 + p**2 * var_c_mean / p_c**4)
        pooled = (x_c + x) / (n_c + n)
        pooled_z = lift / math.sqrt(pooled * (1 - pooled) * (1 / n_c + 1 / n))
        row.update(
            absolute_lift=lift,
            absolute_lift_ci=[
                lift - math.sqrt((p - lt) ** 2 + (uc - p_c) ** 2),
                lift + math.sqrt((ut - p) ** 2 + (p_c - lc) ** 2),
            ],
            relative_lift=rel,
            relative_lift_ci=[rel - z * rel_se, rel + z * rel_se],
            p_value=math.erfc(abs(pooled_z) / math.sqrt(2)),
            chance_to_beat_control=chance_to_beat(x, n, x_c, n_c),
            sequential=sequential(
                lift, math.sqrt(var_t_mean + var_c_mean), rel, rel_se, n + n_c, alpha, tuning
            ),
        )
        # Values: Welch's t with Welch-Satterthwaite degrees of freedom.
        a, b = var / n, var_c / n_c
        se = math.sqrt(a + b)
        dof = (a + b) ** 2 / (a * a / (n - 1) + b * b / (n_c - 1))
        t = t_quantile(alpha / 2, dof)
        v_lift = mean - mean_c
        v_rel = v_lift / abs(mean_c)
        v_rel_se = math.sqrt(a / mean_c**2 + mean**2 * b / mean_c**4)
        block.update(
            absolute_lift=v_lift,
            absolute_lift_ci=[v_lift - t * se, v_lift + t * se],
            relative_lift=v_rel,
            relative_lift_ci=[v_rel - t * v_rel_se, v_rel + t * v_rel_se],
            p_value=2 * t_tail(abs(v_lift / se), dof),
            sequential=sequential(v_lift, se, v_rel, v_rel_se, n + n_c, alpha, tuning),
        )
        rows[-1] = {**row, "value": block}
    others = rows[1:]
    for family in (
        others,
        [r["sequential"] for r in others],
        [r["value"] for r in others],
        [r["value"]["sequential"] for r in others],
    ):
        for figures, q in zip(
            family, adjusted([f["p_value"] for f in family], correction), strict=True
        ):
            figures["p_value_adjusted"] = q
    return rows


def assert_matches(got: Any, want: Any, path: str = "") -> None:
    """Every figure in `want` is in `got`, numbers to 1e-6 relative."""
    if isinstance(want, dict):
        for name, value in want.items():
            assert name in got, f"{path}.{name} missing"
            assert_matches(got[name], value, f"{path}.{name}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), (path, got, want)
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_matches(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert isinstance(got, int | float), (path, got, want)
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-12), (path, got, want)
    else:
        assert got == want, (path, got, want)


# --- The experiment, its users and their events ------------------------------------------------


def running_experiment(c: Client, analysis: dict[str, Any]) -> dict[str, Any]:
    project_id = make_project(c)
    flag = make_flag(c, project_id)
    r = c.post(
        f"/api/v1/flags/{flag['id']}/experiments",
        {"name": "E", "environment": "production", "variants": VARIANTS, "analysis": analysis},
    )
    assert r.status == 201, r.body
    assert r.json["data"]["analysis"] == analysis
    base = f"/api/v1/flags/{flag['id']}/experiments/{r.json['data']['id']}"
    assert c.post(f"{base}/start").status == 200
    return {"project_id": project_id, "flag_id": flag["id"], "id": r.json["data"]["id"],
            "base": base}  # fmt: skip


def track(c: Client, w: dict[str, Any], user: str, **fields: Any) -> None:
    body = {"flag_id": w["flag_id"], "experiment_id": w["id"], "user_id": user, **fields}
    r = c.post("/api/v1/flags/track", body)
    assert r.status == 200, r.body


def test_every_figure_matches_an_independent_computation(a: Client, b: Client) -> None:
    w = running_experiment(
        a, {"alpha": 0.1, "sequential_tuning": 1000, "correction": "holm-bonferroni"}
    )
    eventually(lambda: evaluate(b, w["project_id"], "warm")["checkout_flow"]["value"] != "control")
    index_of = {v["value"]: i for i, v in enumerate(VARIANTS)}
    exposed: list[list[str]] = [[], [], []]
    variant_of: dict[str, int] = {}
    for n in range(USERS):
        user = f"buyer-{n}"
        i = index_of[evaluate(a if n % 2 else b, w["project_id"], user)["checkout_flow"]["value"]]
        exposed[i].append(user)
        variant_of[user] = i
    exposed[index_of[evaluate(a, w["project_id"], "warm")["checkout_flow"]["value"]]].append("warm")

    rng = random.Random(15)
    converted: list[set[str]] = [set(), set(), set()]
    values: dict[str, float] = {}
    for n, user in enumerate(sorted(variant_of)):
        i = variant_of[user]
        if rng.random() >= 0.12 + 0.03 * i:
            continue
        converted[i].add(user)
        c = a if n % 2 else b
        if rng.random() < 0.25:
            track(c, w, user, goal=GOAL)  # a conversion without a value counts 0
        else:
            values[user] = round(rng.uniform(5, 120) * (1 + 0.15 * i), 2)
            track(c, w, user, goal=GOAL, value=values[user])
        if rng.random() < 0.2:  # a duplicate: ignored, its value too
            track(b if n % 2 else a, w, user, goal=GOAL, value=9999.0)
    default_goal = [u for u in sorted(variant_of)[::7]]
    for user in default_goal:
        track(a, w, user)

    def settled() -> Any:
        data = a.get(w["base"] + f"?goal={GOAL}").json["data"]
        counts = [v["exposures"] for v in data["results"]["variants"]]
        return counts == [len(e) for e in exposed] and data

    data = eventually(settled)
    assert data["conversions"] == len(default_goal)
    results = data["results"]
    assert (results["control"], results["goal"]) == ("control", GOAL)
    control = results["variants"][0]
    assert control["sequential"] is None and control["p_value_adjusted"] is None
    assert control["value"]["sequential"] is None and control["value"]["p_value_adjusted"] is None
    want = expected_results(exposed, converted, values, 0.1, 1000, "holm-bonferroni")
    assert_matches(results["variants"], want)
    assert b.get(w["base"] + f"?goal={GOAL}").json["data"] == data  # the other process

    # The default goal has no values: no value block; its conversions are its own.
    plain = a.get(w["base"]).json["data"]["results"]["variants"]
    assert all(v["value"] is None for v in plain)
    assert [v["conversions"] for v in plain] == [
        sum(1 for u in default_goal if variant_of[u] == i) for i in range(3)
    ]

    # New settings while running: every figure follows, Benjamini-Hochberg now.
    r = a.patch(w["base"], {"analysis": {"alpha": 0.05, "correction": "benjamini-hochberg"}})
    assert r.status == 200, r.body
    assert r.json["data"]["analysis"] == {
        "alpha": 0.05,
        "sequential_tuning": 1000,
        "correction": "benjamini-hochberg",
    }
    want = expected_results(exposed, converted, values, 0.05, 1000, "benjamini-hochberg")
    for c in (a, b):
        now = c.get(w["base"] + f"?goal={GOAL}").json["data"]
        assert now["analysis"]["alpha"] == 0.05  # read from Redis, on either process
        assert_matches(now["results"]["variants"], want)

    # The series of the same events: the last day is the results.
    series = a.get(w["base"] + f"/series?goal={GOAL}")
    assert series.status == 200 and series.headers["cache-control"] == "no-store"
    days = series.json["data"]["days"]
    assert series.json["data"]["goal"] == GOAL
    assert 1 <= len(days) <= 2  # two only when the test ran across midnight UTC
    assert_series_ends_at_the_results(days, now["results"])
    for earlier, later in itertools.pairwise(days):
        assert earlier["date"] < later["date"]
        for e, la in zip(earlier["variants"], later["variants"], strict=True):
            assert e["exposures"] <= la["exposures"] and e["conversions"] <= la["conversions"]
    # Cached by its inputs, and the same on the other process.
    assert a.get(w["base"] + f"/series?goal={GOAL}").body == series.body
    assert eventually(lambda: b.get(w["base"] + f"/series?goal={GOAL}").body == series.body)

    # Stopped: the results stay, and the settings still change how they are read.
    assert a.post(w["base"] + "/stop").status == 200
    r = a.patch(w["base"], {"analysis": {"correction": None}})
    assert r.status == 200, r.body
    want = expected_results(exposed, converted, values, 0.05, 1000, None)
    assert_matches(a.get(w["base"] + f"?goal={GOAL}").json["data"]["results"]["variants"], want)


def assert_series_ends_at_the_results(days: list[Any], results: dict[str, Any]) -> None:
    for day, row in zip(days[-1]["variants"], results["variants"], strict=True):
        assert day["key"] == row["key"]
        assert (day["exposures"], day["conversions"]) == (row["exposures"], row["conversions"])
        assert day["conversion_rate"] == row["conversion_rate"]
        assert day["absolute_lift"] == row["absolute_lift"]
        seq = row["sequential"]
        assert day["sequential_absolute_lift_ci"] == (seq and seq["absolute_lift_ci"])


def test_the_series_ends_at_the_results_on_every_topology(
    backends: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = (server.client() for server in backends)
    w = running_experiment(a, DEFAULTS)
    eventually(lambda: evaluate(b, w["project_id"], "warm")["checkout_flow"]["value"] != "control")
    users = [f"s-{n}" for n in range(200)]
    for n, user in enumerate(users):
        evaluate(a if n % 2 else b, w["project_id"], user)
    for user in users[::5]:
        track(b, w, user, value=10.0)

    def settled() -> Any:
        data = a.get(w["base"]).json["data"]
        total = sum(v["exposures"] for v in data["results"]["variants"])
        return total == len(users) + 1 and data

    results = eventually(settled)["results"]
    r = b.get(w["base"] + "/series")
    assert r.status == 200, r.body
    assert r.json["data"]["goal"] == "conversion"
    assert_series_ends_at_the_results(r.json["data"]["days"], results)
    assert results["variants"][1]["value"]["sum"] == 10.0 * sum(
        v["conversions"] for v in results["variants"][1:2]
    )


# --- Analysis settings over HTTP -----------------------------------------------------------------


def draft(c: Client, **fields: Any) -> tuple[str, Any]:
    project_id = make_project(c)
    flag = make_flag(c, project_id)
    path = f"/api/v1/flags/{flag['id']}/experiments"
    r = c.post(path, {"name": "E", "environment": "production", "variants": VARIANTS, **fields})
    return path, r


@pytest.mark.parametrize(
    ("analysis", "field"),
    [
        ({"alpha": 0.5}, "analysis.alpha"),
        ({"alpha": 0}, "analysis.alpha"),
        ({"sequential_tuning": 50}, "analysis.sequential_tuning"),
        ({"sequential_tuning": 1.5e3 + 0.5}, "analysis.sequential_tuning"),
        ({"correction": "bonferroni"}, "analysis.correction"),
        ({"alpha": 0.05, "power": 0.8}, "analysis.power"),
        ("holm-bonferroni", "analysis"),
    ],
)
def test_a_bad_analysis_is_a_422_naming_its_field(a: Client, analysis: Any, field: str) -> None:
    path, r = draft(a, analysis=analysis)
    assert r.status == 422 and set(r.json["details"]) == {field}, r.body
    path, r = draft(a)
    experiment = f"{path}/{r.json['data']['id']}"
    r = a.patch(experiment, {"analysis": analysis})
    assert r.status == 422 and set(r.json["details"]) == {field}, r.body
    assert a.get(experiment).json["data"]["analysis"] == DEFAULTS


def test_analysis_is_complete_everywhere_and_patch_merges_it_at_every_status(a: Client) -> None:
    path, r = draft(a)
    assert r.status == 201 and r.json["data"]["analysis"] == DEFAULTS
    experiment = f"{path}/{r.json['data']['id']}"
    expected = dict(DEFAULTS)
    for step, change in [
        (None, {"sequential_tuning": 20000}),
        ("start", {"alpha": 0.01}),
        ("stop", {"correction": "holm-bonferroni"}),
    ]:
        if step is not None:
            assert a.post(f"{experiment}/{step}").status == 200
        r = a.patch(experiment, {"analysis": change})
        assert r.status == 200, r.body
        expected.update(change)
        assert r.json["data"]["analysis"] == expected
        assert a.get(experiment).json["data"]["analysis"] == expected
        assert [e["analysis"] for e in a.get(path).json["data"]] == [expected]


def test_an_experiment_stored_without_analysis_reads_as_the_defaults(
    a: Client, redis_server: RedisProcess
) -> None:
    path, r = draft(a)
    record = r.json["data"]
    stored = {k: v for k, v in record.items() if k not in ("analysis", "conversions")}
    name = keys.records(record["project_id"], "experiments")
    redis_server.client().hset(name, record["id"], orjson.dumps(stored))
    experiment = f"{path}/{record['id']}"
    assert a.get(experiment).json["data"]["analysis"] == DEFAULTS
    r = a.patch(experiment, {"analysis": {"alpha": 0.1}})
    assert r.status == 200 and r.json["data"]["analysis"] == {**DEFAULTS, "alpha": 0.1}


def test_a_track_value_must_be_a_finite_number_within_bounds(a: Client) -> None:
    w = running_experiment(a, DEFAULTS)
    body = {"flag_id": w["flag_id"], "experiment_id": w["id"], "user_id": "u1"}
    for value in ["12", True, 1e13, -1e13, [1], {"v": 1}]:
        r = a.post("/api/v1/flags/track", {**body, "value": value})
        assert r.status == 422 and set(r.json["details"]) == {"value"}, (value, r.body)
    for value in [1e12, -1e12, 0, 19.99]:
        r = a.post("/api/v1/flags/track", {**body, "user_id": f"u{value}", "value": value})
        assert r.status == 200, r.body
