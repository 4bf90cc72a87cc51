"""Experiment events in Redis: exposure and conversion sets, and the counts read back.

Sets make both idempotent: SADD of a member already there changes nothing, so a replayed batch
(after a timeout, or from the spool) never counts a user twice. Deleting an experiment leaves a
tombstone in its own slot, which every write script checks first: events still in flight (a
batch in another proxy's buffer, a spool replayed hours later) can never bring a deleted
experiment's data back.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import orjson
from redis.exceptions import RedisError

from proxy.store import keys
from proxy.store.connection import Redis

# KEYS[1] the tombstone, KEYS[2] the goals set, then (conversion set, exposure set) per
# conversion; ARGV: the goal of each conversion, then the user ids. All keys share the
# experiment's hash tag, so this is one slot, one command and one reply per experiment.
_CONVERT = """
local n = (#KEYS - 2) / 2
local added = {}
if redis.call('EXISTS', KEYS[1]) == 1 then
  for i = 1, n do added[i] = 0 end
  return added
end
for i = 1, n do
  redis.call('SADD', KEYS[2], ARGV[i])
  added[i] = redis.call('SADD', KEYS[2 * i + 1], ARGV[n + i])
  redis.call('SADD', KEYS[2 * i + 2], ARGV[n + i])
end
return added
"""

# KEYS[1] the tombstone, KEYS[2] a set; ARGV[1] a JSON array of members: one argument however
# many members, so the client packs one string instead of thousands (redis-py packs arguments
# in Python).
_ADD_ALL = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local members = cjson.decode(ARGV[1])
for i = 1, #members, 1000 do
  redis.call('SADD', KEYS[2], unpack(members, i, math.min(i + 999, #members)))
end
return #members
"""


Exposure = tuple[str, int, str]  # experiment id, variant index, user id
ExposureGroup = tuple[str, int, list[str]]  # experiment id, variant index, user ids
Conversion = tuple[str, str, int, str]  # experiment id, goal, variant index, user id


class NotReplicated(RedisError):
    """WAIT saw fewer replicas acknowledge the write than required."""


class EventStore:
    def __init__(self, redis: Redis, wait_replicas: int = 0, wait_timeout_ms: int = 1000) -> None:
        self.redis = redis
        # With Sentinel, a write the master acknowledged can still be lost in a failover;
        # WAIT makes "in Redis" mean "on N replicas too" before track answers 200.
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms

    async def add_exposures(self, batch: Sequence[Exposure]) -> None:
        members: dict[tuple[str, int], list[str]] = defaultdict(list)
        for experiment_id, variant, user_id in batch:
            members[experiment_id, variant].append(user_id)
        await self.add_exposure_groups([(e, v, users) for (e, v), users in members.items()])

    async def add_exposure_groups(self, groups: Sequence[ExposureGroup]) -> None:
        """Exposures already grouped by experiment and variant: one script call per group."""
        pipe = self.redis.pipeline(transaction=False)
        for experiment_id, variant, users in groups:
            names = (keys.tombstone(experiment_id), keys.exposures(experiment_id, variant))
            pipe.eval(_ADD_ALL, 2, *names, orjson.dumps(users))
        await pipe.execute()

    async def add_conversions(self, batch: Sequence[Conversion]) -> list[bool]:
        """Record each conversion (the converter also counts as exposed); True where new."""
        by_experiment: dict[str, list[int]] = defaultdict(list)
        for i, conversion in enumerate(batch):
            by_experiment[conversion[0]].append(i)
        pipe = self.redis.pipeline(transaction=False)
        for experiment_id, indexes in by_experiment.items():
            names = [keys.tombstone(experiment_id), keys.goals(experiment_id)]
            goals, users = [], []
            for i in indexes:
                _, goal, variant, user_id = batch[i]
                names += [keys.conversions(experiment_id, goal, variant),
                          keys.exposures(experiment_id, variant)]  # fmt: skip
                goals.append(goal)
                users.append(user_id)
            pipe.eval(_CONVERT, len(names), *names, *goals, *users)
        if self.wait_replicas:
            pipe.execute_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
        results = await pipe.execute()
        if self.wait_replicas and int(results[-1]) < self.wait_replicas:
            raise NotReplicated(f"{results[-1]} of {self.wait_replicas} replicas")
        added = [False] * len(batch)
        for indexes, replies in zip(by_experiment.values(), results, strict=False):
            for i, reply in zip(indexes, replies, strict=True):
                added[i] = bool(reply)
        return added

    async def counts(
        self, experiment_id: str, goal: str, variants: int
    ) -> tuple[list[int], list[int]]:
        """Exposures and conversions per variant: two SCARDs a variant, one round trip."""
        pipe = self.redis.pipeline(transaction=False)
        for v in range(variants):
            pipe.scard(keys.exposures(experiment_id, v))
            pipe.scard(keys.conversions(experiment_id, goal, v))
        values = [int(x) for x in await pipe.execute()]
        return values[0::2], values[1::2]

    async def goals(self, experiment_id: str) -> list[str]:
        raw = await self.redis.smembers(keys.goals(experiment_id))
        return sorted(g.decode() if isinstance(g, bytes) else g for g in raw)

    async def delete_experiment(self, experiment_id: str, variants: int) -> None:
        """The tombstone first: from then on no script adds a key, so the goals read next
        name every key there is to delete."""
        await self.redis.set(keys.tombstone(experiment_id), b"1")
        goals = await self.goals(experiment_id)
        names = [keys.goals(experiment_id)]
        for v in range(variants):
            names.append(keys.exposures(experiment_id, v))
            names += [keys.conversions(experiment_id, g, v) for g in goals]
        pipe = self.redis.pipeline(transaction=False)
        for name in names:  # one DEL per key: they share a slot, but a pipeline keeps it simple
            pipe.delete(name)
        await pipe.execute()
