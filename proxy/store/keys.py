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


def audit(scope: str) -> str:
    """The scope's audit log: a stream appended by the same script that writes the scope (so
    under its tag), trimmed to about EDGE_AUDIT_MAX_ENTRIES."""
    return _tag(scope) + ":audit"


# The webhook deliveries' consumer group on each project's audit stream: one for the whole
# fleet, so that each entry is handed to one proxy.
DELIVERY_GROUP = "webhooks"


def webhook_secrets(project_id: str) -> str:
    """Hash of webhook id -> signing secret, outside the records that every snapshot and its
    last-known-good file hold (see proxy.store.webhooks)."""
    return _tag(project_id) + ":webhook-secrets"


def webhook_failures(project_id: str) -> str:
    """Hash of webhook id -> failed attempts in a row (not a record: it changes per attempt)."""
    return _tag(project_id) + ":webhook-failures"


def webhook_deliveries(project_id: str, webhook_id: str) -> str:
    """List of a webhook's latest delivery attempts, newest first, capped."""
    return _tag(project_id) + ":webhook-deliveries:" + webhook_id


def owner_index(kind: str) -> str:
    """Hash of record id -> project id, so `/flags/{id}` finds its project (not versioned)."""
    return "{g}:owner:" + kind


def exposures(experiment_id: str, variant: int) -> str:
    return "{x:" + experiment_id + "}:exp:" + str(variant)


def conversions(experiment_id: str, goal: str, variant: int) -> str:
    return "{x:" + experiment_id + "}:conv:" + goal + ":" + str(variant)


def value_sums(experiment_id: str, goal: str) -> str:
    """Hash of a goal's value sums per variant, as double-doubles (proxy.store.events): fields
    `<variant>:s`, `<variant>:s~` (sum and its low part), `<variant>:q`, `<variant>:q~` (sum of
    squares). It exists once a counted conversion of the goal carried a value."""
    return "{x:" + experiment_id + "}:sums:" + goal


def exposure_days(experiment_id: str, variant: int) -> str:
    """Hash of UTC day (YYYY-MM-DD) -> users first exposed to the variant that day."""
    return "{x:" + experiment_id + "}:days:exp:" + str(variant)


def conversion_days(experiment_id: str, goal: str, variant: int) -> str:
    """Hash of UTC day -> users of the variant whose conversion of the goal counted that day."""
    return "{x:" + experiment_id + "}:days:conv:" + goal + ":" + str(variant)


def goals(experiment_id: str) -> str:
    return "{x:" + experiment_id + "}:goals"


def tombstone(experiment_id: str) -> str:
    """Set when the experiment is deleted: no event of it is ever written again."""
    return "{x:" + experiment_id + "}:deleted"
