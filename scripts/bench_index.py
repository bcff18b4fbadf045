#!/usr/bin/env python3
"""The in-memory recall index: what each kind of change costs, against a full rebuild.

A user's :class:`memory.recall.index.UserIndex` changes in three ways: new memories (merged in),
metadata updates (judge revisions, feedback, sleep cycles: applied in place, sharing vectors and
BM25) and deletions (rebuilt from the store). This builds an index of ``--memories`` synthetic
memories (384-d vectors, 30-word texts, 20 per session) and times, in the same run, a full
rebuild (the baseline: what every metadata update cost before, plus reading the store), merging
one new memory, and updating one memory's metadata. Prints medians of ``--repeat`` runs and the
ratios.

    python scripts/bench_index.py [--memories 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memory.recall.index import UserIndex
from memory.types import MemoryHit

WORDS = [
    "cat",
    "dog",
    "tea",
    "blue",
    "sea",
    "run",
    "jazz",
    "paris",
    "miso",
    "code",
    "book",
    "rain",
    "sun",
    "park",
    "film",
    "bike",
    "garden",
    "sister",
    "train",
    "coffee",
    "piano",
    "exam",
    "lisbon",
    "knee",
    "doctor",
    "recipe",
]


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = random.Random(0)
    n = args.memories
    hits = [
        MemoryHit(
            f"m{i}",
            " ".join(rng.choices(WORDS, k=30)),
            {"session": f"s{i // 20}", "event_at": float(i), "created_at": float(i)},
        )
        for i in range(n)
    ]
    vectors = np.random.default_rng(0).standard_normal((n, 384)).astype(np.float32)
    index = UserIndex(hits, vectors)
    new = [MemoryHit("new", "my sister lives in lisbon", {"session": "s0", "event_at": 0.5})]
    new_vector = vectors[:1]
    update = {"m5": {"symbiosis": 0.1, "polarity": "repulsor"}}
    rebuild = median_ms(lambda: UserIndex(hits, vectors), args.repeat)
    merge = median_ms(lambda: index.merged(new, new_vector), args.repeat)
    updated = median_ms(lambda: index.updated(update), args.repeat)
    print(f"UserIndex of {n} memories, median of {args.repeat} runs")
    print(f"  full rebuild:          {rebuild:8.1f} ms  (baseline)")
    print(f"  merge one new memory:  {merge:8.1f} ms  ({rebuild / merge:5.1f}x faster)")
    print(f"  update one's metadata: {updated:8.1f} ms  ({rebuild / updated:5.1f}x faster)")
    print(f"rebuild_ms={rebuild:.1f} merge_ms={merge:.1f} update_ms={updated:.1f}")


if __name__ == "__main__":
    main()
