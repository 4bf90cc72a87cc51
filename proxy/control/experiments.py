"""Experiments: `/api/v1/flags/{flag_id}/experiments[/{id}[/start|/stop]]`, and their results.

Lifecycle (proxy.domain.changes.transition): draft -> running -> stopped, nothing else; at most
one running experiment per flag and environment. Results are read from the event sets: two
SCARDs per variant.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.control.common import body, commit, path_id, project_of, project_record, reply
from proxy.domain import changes, model, stats
from proxy.domain.access import READ, WRITE
from proxy.domain.changes import found
from proxy.domain.scope import ScopeState
from proxy.runtime import runtime_of
from proxy.store.events import EventStore


async def view(
    events: EventStore, experiment: model.Experiment, goal: str | None = None
) -> dict[str, Any]:
    """The stored experiment with `conversions` (the default goal's converting users), and
    `results` for `goal` when one is asked for."""
    variants = experiment["variants"]
    default = model.DEFAULT_GOAL
    exposures, converted = await events.counts(experiment["id"], default, len(variants))
    out: dict[str, Any] = {**experiment, "conversions": sum(converted)}
    if goal is not None:
        if goal != default:
            exposures, converted = await events.counts(experiment["id"], goal, len(variants))
        computed = stats.experiment_results(
            [v["percentage"] for v in variants],
            [(v["key"], e, c) for v, e, c in zip(variants, exposures, converted, strict=True)],
        )
        out["results"] = {"control": variants[0]["key"], "goal": goal, **computed}
    return out


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
    return reply({**experiment, "conversions": 0}, 201)


async def list_all(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    project_id = await project_of(request, "flags", flag_id, READ)
    state = await runtime_of(request).store.load(project_id)
    found(state.flags.get(flag_id))
    events = runtime_of(request).events
    return reply([await view(events, e) for e in changes.flag_experiments(state, flag_id)])


async def read(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    experiment_id = path_id(request, "experiment_id")
    project_id = await project_of(request, "flags", flag_id, READ)
    goal = model.goal_name(request.query_params.get("goal"))
    state = await runtime_of(request).store.load(project_id)
    experiment = changes.experiment_of(state, flag_id, experiment_id)
    return reply(await view(runtime_of(request).events, experiment, goal))


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
