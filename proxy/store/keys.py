"""Every Redis key and channel name of the service, and nothing else.

Configuration lives in *scopes*: the global scope `g` (projects and API keys) and one scope per
project. A scope's keys share one hash tag, so its atomic write is one slot on Redis Cluster.
An experiment's event sets share their own hash tag, away from the configuration's slot. No
key name ever contains a user id or an attribute value; the only client-chosen part is a goal
name, which is validated against proxy.domain.model.NAME_RE before it gets here.
"""

from __future__ import annotations

from proxy.domain.scope import GLOBAL_KINDS, PROJECT_KINDS, Kind

GLOBAL = "g"
CHANGES_CHANNEL = "edge:changes"
# The fleet's secret that signs event stream channels (proxy/domain/channel.py): made once by
# whichever proxy starts first (SET NX), read by all; only an operator replaces it.
STREAM_SECRET = "{g}:stream-secret"


def _tag(scope: str) -> str:
    return "{g}" if scope == GLOBAL else "{p:" + scope + "}"


def version(scope: str) -> str:
    return _tag(scope) + ":version"


def records(scope: str, kind: Kind) -> str:
    """One Redis hash of id -> JSON record per kind of the scope."""
    return _tag(scope) + ":" + kind


def kinds(scope: str) -> tuple[Kind, ...]:
    return GLOBAL_KINDS if scope == GLOBAL else PROJECT_KINDS


def owner_index(kind: str) -> str:
    """Hash of record id -> project id, so `/flags/{id}` finds its project (not versioned)."""
    return "{g}:owner:" + kind


def exposures(experiment_id: str, variant: int) -> str:
    return "{x:" + experiment_id + "}:exp:" + str(variant)


def conversions(experiment_id: str, goal: str, variant: int) -> str:
    return "{x:" + experiment_id + "}:conv:" + goal + ":" + str(variant)


def goals(experiment_id: str) -> str:
    return "{x:" + experiment_id + "}:goals"


def tombstone(experiment_id: str) -> str:
    """Set when the experiment is deleted: no event of it is ever written again."""
    return "{x:" + experiment_id + "}:deleted"
