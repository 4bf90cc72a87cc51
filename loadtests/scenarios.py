"""What the benchmark evaluates: projects of a realistic flag mix built through the HTTP API,
and the 100,000 users (ids with attributes) whose request bodies the load generator replays."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import redis

from loadtests.api import Api
from proxy.store import keys

USERS = 100_000
ENV = "production"
FLAG_TYPES = ("boolean", "string", "number", "json")
AREAS = ("checkout", "search", "profile", "billing", "onboarding", "mobile", "pricing", "feed")
COUNTRIES = ("US", "DE", "FR", "GB", "NL", "ES", "BR", "IN", "JP", "CA")
PLANS = ("free",) * 6 + ("pro",) * 3 + ("enterprise",)
VERSIONS = ("1.9.3", "2.0.0", "2.3.1", "2.4.0", "2.5.2", "3.0.0")
LOCALES = ("en-US", "de-DE", "fr-FR", "en-GB", "es-ES")
WORDS = ("rollout", "of", "the", "new", "flow", "behind", "a", "flag", "for", "team", "measure")

# Conditions of targeting rules: every one matches some of the users below.
CONDITIONS: tuple[tuple[str, str, Any], ...] = (
    ("country", "equals", "US"),
    ("country", "in", ["DE", "FR", "NL", "ES"]),
    ("plan", "in", ["pro", "enterprise"]),
    ("age", "gt", 40),
    ("app_version", "semver_gt", "2.4.0"),
    ("locale", "starts_with", "en"),
    ("plan", "equals", "enterprise"),
    ("age", "lte", 25),
    ("app_version", "semver_lt", "2.0.0"),
)


@dataclass(frozen=True)
class Mix:
    """How many flags of each kind a project has; the text sizes tune its stored bytes."""

    static: int
    targeted: int  # enabled, with 1-3 rules; every fifth one with a percentage rollout
    experiments: int  # each with a running experiment of 2-3 variants
    description: int = 40  # characters of each flag's description (0: none)
    json_fields: int = 3  # fields of a json flag's value

    @property
    def flags(self) -> int:
        return self.static + self.targeted + self.experiments

    def scaled(self, factor: int, **sizes: int) -> Mix:
        n = factor
        return Mix(self.static * n, self.targeted * n, self.experiments * n, **sizes)


REALISTIC = Mix(static=35, targeted=10, experiments=5)
# The same project before targeting rules: its 10 targeted flags are plain static ones.
WITHOUT_RULES = Mix(static=45, targeted=0, experiments=5)
LARGE = REALISTIC.scaled(7, description=0, json_fields=1)  # 350 flags, lean records
MEMORY = REALISTIC.scaled(20)  # 1,000 flags, 100 running experiments


@dataclass(frozen=True)
class Experiment:
    flag_id: str
    flag_key: str
    id: str


@dataclass
class Project:
    id: str
    flags: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> flag record
    experiments: list[Experiment] = field(default_factory=list)
    facts: dict[str, Any] = field(default_factory=dict)  # sizes, for the figures

    def probe(self) -> dict[str, Any]:
        """A disabled static boolean flag: its default is its answer, for everyone."""
        return next(
            f
            for f in self.flags.values()
            if f["flag_type"] == "boolean" and not f["enabled"] and f["key"].startswith("static.")
        )


# Users -----------------------------------------------------------------------------------------


def user_context(i: int) -> dict[str, Any]:
    """User i's evaluation context: a pure function of i, so a user keeps their attributes."""
    return {
        "user_id": f"user-{i:06d}",
        "country": COUNTRIES[i % len(COUNTRIES)],
        "plan": PLANS[(i // 10) % len(PLANS)],
        "app_version": VERSIONS[(i // 100) % len(VERSIONS)],
        "age": 18 + (i * 7919) % 53,
        "locale": LOCALES[(i // 7) % len(LOCALES)],
    }


def evaluate_bodies(project_id: str, users: int = USERS) -> list[bytes]:
    return [
        orjson.dumps({"project_id": project_id, "environment": ENV, "context": user_context(i)})
        for i in range(users)
    ]


def track_bodies(experiment: Experiment, users: int = USERS) -> list[bytes]:
    return [
        orjson.dumps(
            {
                "flag_id": experiment.flag_id,
                "experiment_id": experiment.id,
                "user_id": f"user-{i:06d}",
            }
        )
        for i in range(users)
    ]


def write_lines(path: Path, bodies: Iterable[bytes]) -> Path:
    path.write_bytes(b"\n".join(bodies) + b"\n")
    return path


# Projects --------------------------------------------------------------------------------------


def build_project(api: Api, name: str, mix: Mix, seed: int = 1) -> Project:
    """Create the project, its flags, rules and running experiments through the HTTP API, one
    request at a time (more connections do not help: the server's CPU is the bound)."""
    project = Project(api.data("POST", "/api/v1/flags/projects", {"name": name})["id"])
    rng = random.Random(seed)
    # Each write makes the server reload and recompile the whole project, at a cost of about
    # flags x rules: creating the rules last keeps building 1,000 flags to about half a minute.
    phases: list[tuple[FlagMaker, int]] = [
        (_static_flag, mix.static),
        (_experiment_flag, mix.experiments),
        (_targeted_flag, mix.targeted),
    ]
    for make, count in phases:
        for i in range(count):
            make(api, project, mix, rng, i)
    return project


FlagMaker = Callable[[Api, Project, Mix, random.Random, int], None]


def _create_flag(
    api: Api, project: Project, mix: Mix, rng: random.Random, key: str, flag_type: str
) -> dict[str, Any]:
    body = {
        "project_id": project.id,
        "key": key,
        "name": key.replace(".", " ").replace("-", " ").title(),
        "flag_type": flag_type,
        "default_value": _value(flag_type, mix, rng),
        "description": _text(mix.description, rng) if mix.description else None,
        "tags": [key.split(".")[1], f"team-{rng.randint(1, 9)}"],
    }
    flag: dict[str, Any] = api.data("POST", "/api/v1/flags", body)
    project.flags[key] = flag
    return flag


def _static_flag(api: Api, project: Project, mix: Mix, rng: random.Random, i: int) -> None:
    flag_type = FLAG_TYPES[i % len(FLAG_TYPES)]
    key = f"static.{AREAS[i % len(AREAS)]}.{flag_type}-{i}"
    flag = _create_flag(api, project, mix, rng, key, flag_type)
    if i % 3 == 1:  # a third are on; a disabled static flag answers its default
        project.flags[key] = api.data("PATCH", f"/api/v1/flags/{flag['id']}", {"enabled": True})


def _targeted_flag(api: Api, project: Project, mix: Mix, rng: random.Random, i: int) -> None:
    flag_type = FLAG_TYPES[i % 3]  # boolean, string, number
    key = f"targeted.{AREAS[i % len(AREAS)]}.{flag_type}-{i}"
    flag = _create_flag(api, project, mix, rng, key, flag_type)
    for r in range(1 + i % 3):
        conditions = [_condition(i + r + c) for c in range(1 + (i + r) % 2)]
        body: dict[str, Any] = {
            "environment": ENV,
            "conditions": conditions,
            "value": _value(flag_type, mix, rng),
        }
        if i % 5 == 0 and r == 0:  # one flag in five rolls out to a share of its audience
            body["percentage"] = 25 if i % 10 == 0 else 50
        api.data("POST", f"/api/v1/flags/{flag['id']}/rules", body)
    project.flags[key] = api.data("PATCH", f"/api/v1/flags/{flag['id']}", {"enabled": True})


def _experiment_flag(api: Api, project: Project, mix: Mix, rng: random.Random, i: int) -> None:
    flag_type = "boolean" if i % 2 == 0 else "string"
    key = f"experiment.{AREAS[i % len(AREAS)]}.{flag_type}-{i}"
    flag = _create_flag(api, project, mix, rng, key, flag_type)
    if flag_type == "boolean":
        variants = [
            {"key": "control", "value": False, "percentage": 50},
            {"key": "treatment", "value": True, "percentage": 50},
        ]
    else:
        variants = [
            {"key": "control", "value": "classic", "percentage": 34},
            {"key": "blue", "value": "blue", "percentage": 33},
            {"key": "green", "value": "green", "percentage": 33},
        ]
    path = f"/api/v1/flags/{flag['id']}/experiments"
    body = {"name": f"Experiment {i}", "environment": ENV, "variants": variants}
    experiment = api.data("POST", path, body)
    api.data("POST", f"{path}/{experiment['id']}/start")
    project.experiments.append(Experiment(flag["id"], key, experiment["id"]))


def _condition(n: int) -> dict[str, Any]:
    attribute, operator, value = CONDITIONS[n % len(CONDITIONS)]
    return {"attribute": attribute, "operator": operator, "value": value}


def _value(flag_type: str, mix: Mix, rng: random.Random) -> Any:
    if flag_type == "boolean":
        return rng.random() < 0.5
    if flag_type == "string":
        return rng.choice(("blue", "green", "control", "compact", "v2-layout", "legacy"))
    if flag_type == "number":
        return rng.choice((10, 25, 50, 100, 0.5, 1.25, 3000))
    fields: dict[str, Any] = {
        "color": f"#{rng.randrange(1 << 24):06x}",
        "limit": rng.randint(1, 99),
    }
    for n in range(mix.json_fields):
        fields[f"option_{n}"] = _text(12, rng)
    return fields


def _text(length: int, rng: random.Random) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < length:
        words.append(rng.choice(WORDS))
    return " ".join(words)[:length].strip().capitalize()


def stored_config_bytes(redis_url: str, project_id: str) -> int:
    """Bytes of the project's flags, rules and experiments, as JSON, as stored in Redis."""
    client = redis.Redis.from_url(redis_url)
    try:
        total = 0
        for kind in ("flags", "rules", "experiments"):
            total += sum(len(v) for v in client.hvals(keys.records(project_id, kind)))
        return total
    finally:
        client.close()
