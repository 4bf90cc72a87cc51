"""Deterministic user bucketing: which variant a user gets and whether a rollout admits them.

A bucket is mmh3 (32-bit, unsigned) of a salt and the user id, modulo 10,000. The salt makes
buckets of different purposes independent: an experiment's variant (its id), its traffic
allocation (its id + ":traffic") and a rule's rollout (the rule's id) never correlate.
Percentages map to bucket limits (50 -> 5,000, 12.34 -> 1,234), so raising one only adds users.
"""

from __future__ import annotations

from collections.abc import Sequence

import mmh3

BUCKETS = 10_000


def variant_salt(experiment_id: str) -> str:
    return experiment_id + ":"


def traffic_salt(experiment_id: str) -> str:
    return experiment_id + ":traffic:"


def rollout_salt(rule_id: str) -> str:
    return rule_id + ":"


def bucket(salt: str, user_id: str) -> int:
    bucket: int = mmh3.hash(salt + user_id, 0, False) % BUCKETS
    return bucket


def limit(percentage: float) -> int:
    """Buckets below this limit are admitted: a percentage to 0.01 is an exact bucket count."""
    return round(percentage * 100)


def variant_table(percentages: Sequence[int]) -> bytes:
    """Bucket -> variant index for all 10,000 buckets, built once per experiment version.

    Variants take consecutive bucket ranges in their order, so a variant's users are exactly
    the buckets [sum of earlier percentages, + its own) * 100: changing nothing else keeps
    every user where they were.
    """
    if any(pct < 0 for pct in percentages):
        raise ValueError("variant percentages must not be negative")
    table = bytearray()
    for index, pct in enumerate(percentages):
        table += bytes([index]) * (pct * 100)
    if len(table) != BUCKETS:
        raise ValueError("variant percentages must sum to 100")
    return bytes(table)
