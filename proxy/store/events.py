"""Experiment events in Redis: exposure and conversion sets, and the counts read back.

Sets make both idempotent: SADD of a member already there changes nothing, so a replayed batch
(after a timeout, or from the spool) never counts a user twice. Deleting an experiment leaves a
tombstone in its own slot, which every write script checks first: events still in flight (a
batch in another proxy's buffer, a spool replayed hours later) can never bring a deleted
experiment's data back.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson
from redis.exceptions import RedisError

from proxy.domain.model import DEFAULT_GOAL
from proxy.store import keys, scripts
from proxy.store.connection import Redis
from proxy.store.scripts import Script

# Value sums are double-doubles (hi + lo, |lo| <= ulp(hi) / 2) updated with error-free
# transformations in Lua's doubles: TwoSum for the addition, Dekker's split for the exact square.
# HINCRBYFLOAT would be simpler, but it stores its long double as "%.17Lf", fixed-point with 17
# decimals: a sum of squares of values below 1e-3 then keeps only a few digits (README, "Value
# goals", has the figures). Each part is written with "%.17g", which reads back exactly.
_SUMS = """
local function two_sum(a, b)
  local s = a + b
  local bb = s - a
  return s, (a - (s - bb)) + (b - bb)
end
local function add(hi, lo, x, e)
  local s, t = two_sum(hi, x)
  t = t + lo + e
  hi = s + t
  return hi, t - (hi - s)
end
local function add_value(key, variant, y)
  local f = {variant .. ':s', variant .. ':s~', variant .. ':q', variant .. ':q~'}
  local got = redis.call('HMGET', key, f[1], f[2], f[3], f[4])
  local old = {}
  for j = 1, 4 do old[j] = tonumber(got[j]) or 0 end
  local c = 134217729 * y
  local yh = c - (c - y)
  local yl = y - yh
  local p = y * y
  local pe = ((yh * yh - p) + 2 * yh * yl) + yl * yl
  local s, sl = add(old[1], old[2], y, 0)
  local q, ql = add(old[3], old[4], p, pe)
  local out = {s, sl, q, ql}
  local args = {}
  for j = 1, 4 do
    args[2 * j - 1] = f[j]
    args[2 * j] = string.format('%.17g', out[j])
  end
  redis.call('HSET', key, unpack(args))
end
"""

# KEYS[1] the tombstone, KEYS[2] the goals set, then every other key the batch touches, once
# each (conversion sets, exposure sets, their day hashes, the goals' value sums: a batch of one
# experiment touches a handful, however many conversions it has); ARGV[1] the day, ARGV[2] a
# JSON array with per conversion [goal, user id, variant, value or false, and the KEYS indexes
# of its conversion set, exposure set, their day hashes and the value sums]. One argument for
# the whole batch: redis-py packs every argument in Python, nine a conversion otherwise. All
# keys share the experiment's hash tag, so this is one slot, one command and one reply per
# experiment. Only a conversion that is new (its SADD said 1) counts on its day and adds its
# value: a duplicate changes nothing at all. JSON numbers are written in their shortest form,
# which Lua reads back as the same double.
_CONVERT = Script(
    _SUMS
    + """
local batch = cjson.decode(ARGV[2])
local added = {}
if redis.call('EXISTS', KEYS[1]) == 1 then
  for i = 1, #batch do added[i] = 0 end
  return added
end
local day = ARGV[1]
for i, c in ipairs(batch) do
  local goal, user, variant, value = c[1], c[2], c[3], c[4]
  redis.call('SADD', KEYS[2], goal)
  added[i] = redis.call('SADD', KEYS[c[5]], user)
  if redis.call('SADD', KEYS[c[6]], user) == 1 then
    redis.call('HINCRBY', KEYS[c[7]], day, 1)
  end
  if added[i] == 1 then
    redis.call('HINCRBY', KEYS[c[8]], day, 1)
    if value then add_value(KEYS[c[9]], tostring(variant), value) end
  end
end
return added
"""
)

# KEYS[1] the tombstone, KEYS[2] a set, KEYS[3] its day hash; ARGV[1] a JSON array of members,
# ARGV[2] the day: one argument however many members, so the client packs one string instead
# of thousands (redis-py packs arguments in Python). SADD answers how many members were new,
# and those are the day's new exposures.
_ADD_ALL = Script("""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local members = cjson.decode(ARGV[1])
local new = 0
for i = 1, #members, 1000 do
  new = new + redis.call('SADD', KEYS[2], unpack(members, i, math.min(i + 999, #members)))
end
if new > 0 then redis.call('HINCRBY', KEYS[3], ARGV[2], new) end
return new
""")

# KEYS: sets to count, then hashes to read whole; ARGV[1] how many sets. Read in one script so
# that exposures, conversions, sums and day counts are one consistent instant.
_READ = """
local out = {}
local sets = tonumber(ARGV[1])
for i = 1, #KEYS do
  if i <= sets then
    out[i] = redis.call('SCARD', KEYS[i])
  else
    out[i] = redis.call('HGETALL', KEYS[i])
  end
end
return out
"""


Exposure = tuple[str, int, str]  # experiment id, variant index, user id
ExposureGroup = tuple[str, int, list[str]]  # experiment id, variant index, user ids
# experiment id, goal, variant index, user id, and the value when the track carried one (the
# 4-tuple is a conversion without value, as every spool line written before values existed).
Conversion = tuple[str, str, int, str] | tuple[str, str, int, str, float]


@dataclass(frozen=True)
class Tally:
    """What an experiment's results are computed from, for one goal, per variant."""

    exposures: tuple[int, ...]
    conversions: tuple[int, ...]
    # (sum, sum of squares) of the users' values, each as the double-double (hi, lo) stored;
    # None while no counted conversion of the goal carried a value.
    sums: tuple[tuple[tuple[float, float], tuple[float, float]], ...] | None
    default_conversions: int  # converting users of the default goal, all variants

    def values(self) -> list[tuple[float, float]] | None:
        """The sums as the statistics take them: each double-double rounded to a float."""
        if self.sums is None:
            return None
        return [(s[0] + s[1], q[0] + q[1]) for s, q in self.sums]


@dataclass(frozen=True)
class DayCounts:
    """A goal's events per UTC day and variant, and the totals they add up to."""

    exposures: tuple[int, ...]
    conversions: tuple[int, ...]
    exposure_days: tuple[dict[str, int], ...]
    conversion_days: tuple[dict[str, int], ...]


def utc_day(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(timestamp))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _hash(flat: Sequence[bytes | str]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


class _Keys:
    """The KEYS of a script call, each once, and where each is (1-based, as Lua counts)."""

    def __init__(self, *names: str) -> None:
        self.names = list(names)
        self.places = {name: i + 1 for i, name in enumerate(names)}

    def at(self, name: str) -> int:
        place = self.places.get(name)
        if place is None:
            self.names.append(name)
            place = self.places[name] = len(self.names)
        return place


class NotReplicated(RedisError):
    """WAIT saw fewer replicas acknowledge the write than required."""


class EventStore:
    def __init__(
        self,
        redis: Redis,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 1000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        # The day an event counts on is the day it reaches Redis, by this clock (a test's own
        # crosses midnight at will). Each proxy's clock decides for its own writes.
        self.clock = clock
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
        """Exposures already grouped by experiment and variant: one script call per group,
        each new member counted on the day the batch reaches Redis."""
        day = utc_day(self.clock())
        calls: list[scripts.Call] = []
        for experiment_id, variant, users in groups:
            names = (
                keys.tombstone(experiment_id),
                keys.exposures(experiment_id, variant),
                keys.exposure_days(experiment_id, variant),
            )
            calls.append((_ADD_ALL, names, (orjson.dumps(users), day)))
        await scripts.run(self.redis, calls)

    async def add_conversions(self, batch: Sequence[Conversion]) -> list[bool]:
        """Record each conversion (the converter also counts as exposed); True where new."""
        by_experiment: dict[str, list[int]] = defaultdict(list)
        for i, conversion in enumerate(batch):
            by_experiment[conversion[0]].append(i)
        day = utc_day(self.clock())
        calls: list[scripts.Call] = []
        for experiment_id, indexes in by_experiment.items():
            names = _Keys(keys.tombstone(experiment_id), keys.goals(experiment_id))
            at = names.at
            entries = []
            for i in indexes:
                conversion = batch[i]
                _, goal, variant, user_id = conversion[:4]
                value = float(conversion[4]) if len(conversion) == 5 else False
                entries.append(
                    (
                        goal,
                        user_id,
                        variant,
                        value,
                        at(keys.conversions(experiment_id, goal, variant)),
                        at(keys.exposures(experiment_id, variant)),
                        at(keys.exposure_days(experiment_id, variant)),
                        at(keys.conversion_days(experiment_id, goal, variant)),
                        at(keys.value_sums(experiment_id, goal)),
                    )
                )
            calls.append((_CONVERT, names.names, (day, orjson.dumps(entries))))
        wait = [("WAIT", self.wait_replicas, self.wait_timeout_ms)] if self.wait_replicas else []
        results = await scripts.run(self.redis, calls, *wait)
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

    async def tally(self, experiment_id: str, goal: str, variants: int) -> Tally:
        """Exposures, conversions and value sums of a goal per variant, and the default goal's
        converting users: one script (one round trip, one instant), no set is scanned."""
        names = [keys.exposures(experiment_id, v) for v in range(variants)]
        names += [keys.conversions(experiment_id, goal, v) for v in range(variants)]
        if goal != DEFAULT_GOAL:
            names += [keys.conversions(experiment_id, DEFAULT_GOAL, v) for v in range(variants)]
        sets = len(names)
        names.append(keys.value_sums(experiment_id, goal))
        *counts, flat = await self.redis.eval(_READ, len(names), *names, sets)
        exposures = tuple(int(x) for x in counts[:variants])
        conversions = tuple(int(x) for x in counts[variants : 2 * variants])
        default = conversions if goal == DEFAULT_GOAL else counts[2 * variants :]
        stored = _hash(flat)
        sums = None
        if stored:

            def part(v: int, name: str) -> tuple[float, float]:
                return float(stored.get(f"{v}:{name}", 0)), float(stored.get(f"{v}:{name}~", 0))

            sums = tuple((part(v, "s"), part(v, "q")) for v in range(variants))
        return Tally(exposures, conversions, sums, sum(int(x) for x in default))

    async def days(self, experiment_id: str, goal: str, variants: int) -> DayCounts:
        """A goal's per-day counts per variant with the totals, in one script."""
        names = [keys.exposures(experiment_id, v) for v in range(variants)]
        names += [keys.conversions(experiment_id, goal, v) for v in range(variants)]
        names += [keys.exposure_days(experiment_id, v) for v in range(variants)]
        names += [keys.conversion_days(experiment_id, goal, v) for v in range(variants)]
        replies = await self.redis.eval(_READ, len(names), *names, 2 * variants)
        counts = [int(x) for x in replies[: 2 * variants]]
        hashes = []
        for flat in replies[2 * variants :]:
            hashes.append({_text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)})
            # A hash of a thousand days is a few hundred microseconds: the loop runs between.
            await asyncio.sleep(0)
        return DayCounts(
            tuple(counts[:variants]),
            tuple(counts[variants:]),
            tuple(hashes[:variants]),
            tuple(hashes[variants:]),
        )

    async def goals(self, experiment_id: str) -> list[str]:
        raw = await self.redis.smembers(keys.goals(experiment_id))
        return sorted(g.decode() if isinstance(g, bytes) else g for g in raw)

    async def delete_experiment(self, experiment_id: str, variants: int) -> None:
        """The tombstone first: from then on no script adds a key, so the goals read next
        name every key there is to delete."""
        await self.redis.set(keys.tombstone(experiment_id), b"1")
        goals = await self.goals(experiment_id)
        names = [keys.goals(experiment_id)]
        names += [keys.value_sums(experiment_id, g) for g in goals]
        for v in range(variants):
            names += [keys.exposures(experiment_id, v), keys.exposure_days(experiment_id, v)]
            names += [keys.conversions(experiment_id, g, v) for g in goals]
            names += [keys.conversion_days(experiment_id, g, v) for g in goals]
        pipe = self.redis.pipeline(transaction=False)
        for name in names:  # one DEL per key: they share a slot, but a pipeline keeps it simple
            pipe.delete(name)
        await pipe.execute()
