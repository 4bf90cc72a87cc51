"""Experiments: `/api/v1/flags/{flag_id}/experiments[/{id}[/start|/stop|/series]]`, and their
results.

Lifecycle (proxy.domain.changes.transition): draft -> running -> stopped, nothing else; at most
one running experiment per flag and environment. Results and series are computed from counts
read in one script (set sizes, value sums, day counts: no set is scanned), cached by those
counts and computed in slices that leave the loop to evaluate (proxy.control.results).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.control import results
from proxy.control.common import (
    NO_STORE,
    body,
    commit,
    path_id,
    project_of,
    project_record,
    reply,
)
from proxy.domain import changes, model
from proxy.domain.access import READ, WRITE
from proxy.domain.changes import found
from proxy.domain.scope import ScopeState
from proxy.runtime import runtime_of
from proxy.store.events import EventStore


async def view(
    events: EventStore, experiment: model.Experiment, goal: str | None = None
) -> dict[str, Any]:
    """The stored experiment with its `analysis` complete, `conversions` (the default goal's
    converting users), and `results` for `goal` when one is asked for."""
    variants = experiment["variants"]
    out: dict[str, Any] = dict(model.with_analysis(experiment))
    if goal is None:
        _, converted = await events.counts(experiment["id"], model.DEFAULT_GOAL, len(variants))
        out["conversions"] = sum(converted)
        return out
    tally = await events.tally(experiment["id"], goal, len(variants))
    out["conversions"] = tally.default_conversions
    out["results"] = await results.experiment_results(experiment, goal, tally)
    return out


async def experiment_of(request: Request, need: str) -> model.Experiment:
    """The experiment the path names, after the key's check on its flag's project: one record
    read, not the project's whole configuration (results are polled)."""
    flag_id = path_id(request, "flag_id")
    experiment_id = path_id(request, "experiment_id")
    project_id = await project_of(request, "flags", flag_id, need)
    experiment: model.Experiment | None = await runtime_of(request).store.get(
        project_id, "experiments", experiment_id
    )
    if experiment is None or experiment["flag_id"] != flag_id:
        raise model.NotFound()
    return experiment


async def create(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    project_id = await project_of(request, "flags", flag_id, WRITE)
    project = await project_record(request, project_id)
    data = await body(request)

    def add(state: ScopeState) -> model.Experiment:
        flag = found(state.flags.get(flag_id))
        experiment = model.new_experiment(
            data, flag=flag, project=project, id=model.new_id(), now=model.now()
        )
        state.put("experiments", experiment)
        return experiment

    experiment = await commit(request, project_id, add)
    return reply({**model.with_analysis(experiment), "conversions": 0}, 201)


async def list_all(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    project_id = await project_of(request, "flags", flag_id, READ)
    state = await runtime_of(request).store.load(project_id)
    found(state.flags.get(flag_id))
    events = runtime_of(request).events
    return reply([await view(events, e) for e in changes.flag_experiments(state, flag_id)])


async def read(request: Request) -> Response:
    experiment = await experiment_of(request, READ)
    goal = model.goal_name(request.query_params.get("goal"))
    return reply(await view(runtime_of(request).events, experiment, goal))


async def read_series(request: Request) -> Response:
    """`GET .../series?goal=`: per UTC day with events, the cumulative figures per variant."""
    experiment = await experiment_of(request, READ)
    goal = model.goal_name(request.query_params.get("goal"))
    answer = await results.experiment_series(runtime_of(request).events, experiment, goal)
    return Response(answer, 200, NO_STORE, media_type="application/json")


async def update(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    experiment_id = path_id(request, "experiment_id")
    project_id = await project_of(request, "flags", flag_id, WRITE)
    data = await body(request)

    def patch(state: ScopeState) -> model.Experiment:
        experiment = changes.experiment_of(state, flag_id, experiment_id)
        updated = model.patch_experiment(experiment, data, now=model.now())
        state.put("experiments", updated)
        return updated

    experiment = await commit(request, project_id, patch)
    return reply(await view(runtime_of(request).events, experiment))


def transition(to: str) -> Any:
    async def handle(request: Request) -> Response:
        flag_id = path_id(request, "flag_id")
        experiment_id = path_id(request, "experiment_id")
        project_id = await project_of(request, "flags", flag_id, WRITE)
        experiment = await commit(
            request,
            project_id,
            lambda s: changes.transition(s, flag_id, experiment_id, to, now=model.now()),
        )
        return reply(await view(runtime_of(request).events, experiment))

    return handle


routes = [
    Route("/api/v1/flags/{flag_id}/experiments", create, methods=["POST"]),
    Route("/api/v1/flags/{flag_id}/experiments", list_all, methods=["GET"]),
    Route("/api/v1/flags/{flag_id}/experiments/{experiment_id}", read, methods=["GET"]),
    Route("/api/v1/flags/{flag_id}/experiments/{experiment_id}", update, methods=["PATCH"]),
    Route(
        "/api/v1/flags/{flag_id}/experiments/{experiment_id}/series", read_series, methods=["GET"]
    ),
    Route(
        "/api/v1/flags/{flag_id}/experiments/{experiment_id}/start",
        transition("running"),
        methods=["POST"],
    ),
    Route(
        "/api/v1/flags/{flag_id}/experiments/{experiment_id}/stop",
        transition("stopped"),
        methods=["POST"],
    ),
]
