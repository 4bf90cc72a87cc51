"""Experiments: `/api/v1/flags/{flag_id}/experiments[/{id}[/start|/stop]]`, and their results.

Lifecycle: draft -> running -> stopped, nothing else; at most one running experiment per flag
and environment. Results are read from the event sets: two SCARDs per variant.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.control.common import (
    READ,
    WRITE,
    body,
    commit,
    found,
    new_id,
    now,
    path_id,
    project_of,
    project_record,
    reply,
    runtime,
    validated,
)
from proxy.domain import model, stats
from proxy.edge.track import DEFAULT_GOAL
from proxy.errors import conflict, invalid, not_found
from proxy.store.config import ScopeState
from proxy.store.events import EventStore


def experiment_of(state: ScopeState, flag_id: str, experiment_id: str) -> model.Record:
    experiment: model.Record = found(state.of("experiments").get(experiment_id))
    if experiment["flag_id"] != flag_id:
        raise not_found()
    return experiment


async def view(
    events: EventStore, experiment: model.Record, goal: str | None = None
) -> model.Record:
    """The stored experiment with `conversions` (the default goal's converting users), and
    `results` for `goal` when one is asked for."""
    variants = experiment["variants"]
    exposures, converted = await events.counts(experiment["id"], DEFAULT_GOAL, len(variants))
    out = {**experiment, "conversions": sum(converted)}
    if goal is not None:
        if goal != DEFAULT_GOAL:
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

    def add(state: ScopeState) -> model.Record:
        flag = found(state.of("flags").get(flag_id))
        experiment = validated(
            lambda: model.new_experiment(data, flag=flag, project=project, id=new_id(), now=now())
        )
        state.put("experiments", experiment)
        return experiment

    experiment = await commit(request, project_id, add)
    return reply({**experiment, "conversions": 0}, 201)


async def list_all(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    project_id = await project_of(request, "flags", flag_id, READ)
    state = await runtime(request).store.load(project_id)
    found(state.of("flags").get(flag_id))
    experiments = [e for e in state.of("experiments").values() if e["flag_id"] == flag_id]
    experiments.sort(key=lambda e: (e["created_at"], e["id"]))
    events = runtime(request).events
    return reply([await view(events, e) for e in experiments])


async def read(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    experiment_id = path_id(request, "experiment_id")
    project_id = await project_of(request, "flags", flag_id, READ)
    goal = request.query_params.get("goal", DEFAULT_GOAL)
    if not model.NAME_RE.fullmatch(goal):
        raise invalid({"goal": "must match ^[A-Za-z0-9_.-]{1,64}$"})
    state = await runtime(request).store.load(project_id)
    experiment = experiment_of(state, flag_id, experiment_id)
    return reply(await view(runtime(request).events, experiment, goal))


async def update(request: Request) -> Response:
    flag_id = path_id(request, "flag_id")
    experiment_id = path_id(request, "experiment_id")
    project_id = await project_of(request, "flags", flag_id, WRITE)
    data = await body(request)

    def patch(state: ScopeState) -> Any:
        experiment = experiment_of(state, flag_id, experiment_id)
        updated = validated(lambda: model.patch_experiment(experiment, data, now=now()))
        state.put("experiments", updated)
        return updated

    experiment = await commit(request, project_id, patch)
    return reply(await view(runtime(request).events, experiment))


def _transition(state: ScopeState, flag_id: str, experiment_id: str, to: str) -> model.Record:
    experiment = experiment_of(state, flag_id, experiment_id)
    at = now()
    if to == "running":
        if experiment["status"] != "draft":
            raise conflict(f"Experiment is {experiment['status']}; only a draft can start")
        for other in state.of("experiments").values():
            if (
                other["flag_id"] == flag_id
                and other["environment"] == experiment["environment"]
                and other["status"] == "running"
            ):
                raise conflict("Another experiment is already running on this flag")
        changed = {**experiment, "status": "running", "started_at": at, "updated_at": at}
    else:
        if experiment["status"] != "running":
            raise conflict(f"Experiment is {experiment['status']}; only a running one can stop")
        changed = {**experiment, "status": "stopped", "stopped_at": at, "updated_at": at}
    state.put("experiments", changed)
    return changed


def transition(to: str) -> Any:
    async def handle(request: Request) -> Response:
        flag_id = path_id(request, "flag_id")
        experiment_id = path_id(request, "experiment_id")
        project_id = await project_of(request, "flags", flag_id, WRITE)
        experiment = await commit(
            request, project_id, lambda s: _transition(s, flag_id, experiment_id, to)
        )
        return reply(await view(runtime(request).events, experiment))

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
