"""Seeded choice of few-shot demonstrations from a pool disjoint from the scored items.

The paper's code drew demonstrations from the scored split itself, so a query could see its own
answer among the demonstrations; here the pool is a separate split (EvalSet.demo_path).
"""

from __future__ import annotations

import random
import zlib

from amuro.errors import AmuroError


def _rng(seed: int, query_id: str) -> random.Random:
    # crc32, not hash(): Python's str hash is salted per process, which would break reruns.
    return random.Random(zlib.crc32(f"{seed}:{query_id}".encode()))


def draw_demonstrations(demo_records: list[dict], k: int, seed: int, query_id: str) -> list[dict]:
    """k demonstrations sampled without replacement; the same for the same (seed, query id).

    No label balancing: classification demos follow the pool's label distribution.
    """
    if k < 0:
        raise AmuroError(f"shots must be >= 0, got {k}")
    if k > len(demo_records):
        raise AmuroError(
            f"{k}-shot needs {k} demonstrations but the demo pool has {len(demo_records)}"
        )
    if k == 0:
        return []
    return _rng(seed, str(query_id)).sample(demo_records, k)
