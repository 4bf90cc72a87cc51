"""An experiment's analysis settings (shared/API.md, "Analysis settings"): validated on POST and
PATCH, merged by PATCH at any status, and complete on every record, old ones included."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.domain import model, stats
from tests.unit.test_model import LATER, details, experiment

DEFAULTS = {"alpha": 0.05, "sequential_tuning": 5000, "correction": None}


def test_a_new_experiment_carries_the_default_analysis() -> None:
    assert experiment({})["analysis"] == DEFAULTS
    assert model.analysis_settings(experiment({})["analysis"]) == stats.DEFAULT_ANALYSIS


@pytest.mark.parametrize(
    "analysis",
    [
        {"alpha": 0.2},
        {"alpha": 1e-9},
        {"alpha": 0.01, "sequential_tuning": 100, "correction": "holm-bonferroni"},
        {"sequential_tuning": 1_000_000_000, "correction": "benjamini-hochberg"},
        {"sequential_tuning": 2000.0},  # an integral number is an integer, as JSON Schema says
        {"correction": None},
        {},
    ],
)
def test_a_new_experiment_takes_the_analysis_fields_it_names(analysis: dict[str, Any]) -> None:
    got = experiment({"analysis": analysis})["analysis"]
    assert got == {**DEFAULTS, **analysis}
    assert type(got["sequential_tuning"]) is int and type(got["alpha"]) is float
    model.analysis_settings(got)  # the statistics accept every valid setting


@pytest.mark.parametrize(
    ("analysis", "path"),
    [
        ({"alpha": 0}, "analysis.alpha"),
        ({"alpha": -0.05}, "analysis.alpha"),
        ({"alpha": 0.21}, "analysis.alpha"),
        ({"alpha": 1}, "analysis.alpha"),
        ({"alpha": 5e-324}, "analysis.alpha"),  # halves to 0: no quantile
        ({"alpha": 10**400}, "analysis.alpha"),
        ({"alpha": "0.05"}, "analysis.alpha"),
        ({"alpha": True}, "analysis.alpha"),
        ({"alpha": None}, "analysis.alpha"),
        ({"sequential_tuning": 99}, "analysis.sequential_tuning"),
        ({"sequential_tuning": 5000.5}, "analysis.sequential_tuning"),
        ({"sequential_tuning": 10**9 + 1}, "analysis.sequential_tuning"),
        ({"sequential_tuning": 10**400}, "analysis.sequential_tuning"),
        ({"sequential_tuning": "5000"}, "analysis.sequential_tuning"),
        ({"sequential_tuning": False}, "analysis.sequential_tuning"),
        ({"correction": "bonferroni"}, "analysis.correction"),
        ({"correction": ["holm-bonferroni"]}, "analysis.correction"),
        ({"correction": {}}, "analysis.correction"),
        ({"power": 0.8}, "analysis.power"),
        ([], "analysis"),
        (None, "analysis"),
        ("holm-bonferroni", "analysis"),
    ],
)
def test_a_bad_analysis_is_a_422_at_its_field(analysis: Any, path: str) -> None:
    assert set(details(lambda: experiment({"analysis": analysis}))) == {path}
    e = experiment({})
    assert set(details(lambda: model.patch_experiment(e, {"analysis": analysis}, now=LATER))) == {
        path
    }


def test_every_bad_field_of_an_analysis_is_named() -> None:
    body = {"analysis": {"alpha": 2, "sequential_tuning": 1, "correction": "x", "extra": 1}}
    assert set(details(lambda: experiment(body))) == {
        "analysis.alpha",
        "analysis.sequential_tuning",
        "analysis.correction",
        "analysis.extra",
    }


@pytest.mark.parametrize("status", ["draft", "running", "stopped"])
def test_patch_merges_the_analysis_fields_it_names_at_any_status(status: str) -> None:
    e = {
        **experiment({"analysis": {"alpha": 0.1, "correction": "holm-bonferroni"}}),
        "status": status,
    }
    patched = model.patch_experiment(e, {"analysis": {"sequential_tuning": 800}}, now=LATER)
    assert patched["analysis"] == {
        "alpha": 0.1,
        "sequential_tuning": 800,
        "correction": "holm-bonferroni",
    }
    assert patched == {**e, "analysis": patched["analysis"], "updated_at": LATER}
    cleared = model.patch_experiment(patched, {"analysis": {"correction": None}}, now=LATER)
    assert cleared["analysis"]["correction"] is None
    assert cleared["analysis"]["alpha"] == 0.1


def test_a_refused_patch_changes_no_analysis_field() -> None:
    e = experiment({})
    body = {"analysis": {"alpha": 0.1, "sequential_tuning": 7}}
    assert set(details(lambda: model.patch_experiment(e, body, now=LATER))) == {
        "analysis.sequential_tuning"
    }
    assert e["analysis"] == DEFAULTS


def test_a_record_stored_before_analysis_settings_reads_as_the_defaults() -> None:
    old = {k: v for k, v in experiment({}).items() if k != "analysis"}
    assert model.analysis_of(old) == DEFAULTS  # type: ignore[arg-type]
    assert model.with_analysis(old)["analysis"] == DEFAULTS  # type: ignore[arg-type]
    partial = {**old, "analysis": {"alpha": 0.01}}
    assert model.analysis_of(partial) == {**DEFAULTS, "alpha": 0.01}  # type: ignore[arg-type]
    patched = model.patch_experiment(old, {"analysis": {"alpha": 0.1}}, now=LATER)  # type: ignore[arg-type]
    assert patched["analysis"] == {**DEFAULTS, "alpha": 0.1}
