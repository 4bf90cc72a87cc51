"""The audit log's entries: what a write did, derived from its changes (pure: no I/O).

The store appends these entries in the same atomic step as the changes themselves (see
proxy.store.config), one per record that changed, so the log can be neither short of a change
nor hold one that did not happen. `before` and `after` are the records as stored, less what is
secret: a key's token hash, and the path and query of a webhook's URL (where receivers such as
Slack's put their token). The log is readable with flags:read; webhooks need flags:write.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypedDict
from urllib.parse import urlsplit

import orjson

from proxy.domain.access import ApiKey
from proxy.domain.model import RESOURCE_TYPES
from proxy.domain.scope import Change, Kind

# Stored fields that no entry may show: the audit log is readable with flags:read.
SECRET_FIELDS = ("token_sha256",)
# The fields a PATCH that only switches a flag on or off changes.
TOGGLE_FIELDS = {"enabled", "updated_at"}


class Actor(TypedDict):
    key_id: str | None  # None: not an API key (the CLI, the bootstrap, the proxy itself)
    key_name: str


def key_actor(key: ApiKey) -> Actor:
    return {"key_id": key.id, "key_name": key.name}


def local_actor(name: str) -> Actor:
    """A writer that is not an API key: `cli`, `bootstrap`, `webhook-delivery`."""
    return {"key_id": None, "key_name": name}


def action(kind: Kind, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    """The entry's action: `<type>.created|updated|deleted`, or the update's own name when it has
    one (flag.toggled, key.revoked, key.restored, experiment.started, experiment.stopped)."""
    resource = RESOURCE_TYPES[kind]
    if before is None:
        return f"{resource}.created"
    if after is None:
        return f"{resource}.deleted"
    if kind == "flags":
        changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
        if "enabled" in changed and changed <= TOGGLE_FIELDS:
            return "flag.toggled"
    elif kind == "keys":
        if after.get("revoked_at") and not before.get("revoked_at"):
            return "key.revoked"
        if before.get("revoked_at") and not after.get("revoked_at"):
            return "key.restored"
    elif kind == "experiments" and before.get("status") != after.get("status"):
        if after.get("status") == "running":
            return "experiment.started"
        if after.get("status") == "stopped":
            return "experiment.stopped"
    return f"{resource}.updated"


REDACTED = "/[redacted]"


def redacted_url(url: str) -> str:
    """A webhook URL with its path and query hidden: which host changes go to is history worth
    keeping; a token in the path is not."""
    parts = urlsplit(url)
    if parts.path in ("", "/") and not parts.query:
        return url
    return f"{parts.scheme}://{parts.netloc}{REDACTED}"


def shown(kind: Kind, record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A record as an entry shows it: as stored, without its secrets."""
    if record is None:
        return None
    out = {k: v for k, v in record.items() if k not in SECRET_FIELDS}
    if kind == "webhooks" and isinstance(out.get("url"), str):
        out["url"] = redacted_url(out["url"])
    return out


def entries(
    changes: Iterable[Change], actor: Actor, project_id: str | None
) -> list[tuple[str, bytes]]:
    """(resource id, entry JSON) for every record a write changed, in the order it first
    changed them. Several changes of one record make one entry, from the first `before` to the
    last `after`; a record that ends as it began (written back unchanged, or created and deleted
    in the same write) makes none. The store adds `id`, `at` and `version`."""
    first: dict[tuple[Kind, str], Change] = {}
    last: dict[tuple[Kind, str], Change] = {}
    for change in changes:
        first.setdefault((change.kind, change.id), change)
        last[(change.kind, change.id)] = change
    out = []
    for key, change in first.items():
        kind, record_id = key
        before, after = change.before, last[key].after
        if before == after:
            continue
        entry = {
            "action": action(kind, before, after),
            "resource_type": RESOURCE_TYPES[kind],
            "resource_id": record_id,
            "project_id": project_id,
            "actor": actor,
            "before": shown(kind, before),
            "after": shown(kind, after),
        }
        out.append((record_id, orjson.dumps(entry)))
    return out


def entry_time(entry_id: str) -> str:
    """When an entry was written: its stream id's milliseconds (Redis's clock), RFC 3339."""
    ms = int(entry_id.partition("-")[0])
    at = datetime.fromtimestamp(ms // 1000, UTC)
    return f"{at:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def entry(entry_id: str, version: int, stored: Mapping[str, Any]) -> dict[str, Any]:
    """An entry as the API shows it, from its stream id, its write's version and its JSON."""
    return {
        "id": entry_id,
        "at": entry_time(entry_id),
        "action": stored["action"],
        "resource_type": stored["resource_type"],
        "resource_id": stored["resource_id"],
        "project_id": stored["project_id"],
        "version": version,
        "actor": stored["actor"],
        "before": stored["before"],
        "after": stored["after"],
    }
