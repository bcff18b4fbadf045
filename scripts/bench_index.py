#!/usr/bin/env python3
"""The in-memory recall index: what each kind of change costs, and recall latency by size.

A user's :class:`memory.recall.index.UserIndex` changes in three ways: new memories (merged in),
metadata updates (judge revisions, feedback, sleep cycles: applied in place, sharing vectors and
BM25) and deletions (rebuilt from the store). This builds an index of ``--memories`` synthetic
memories (384-d vectors, 30-word texts, 20 per session) and times, in the same run, a full
rebuild (the baseline: what every metadata update cost before, plus reading the store), merging
one new memory, and updating one memory's metadata. Prints medians of ``--repeat`` runs and the
ratios.

    python scripts/bench_index.py [--memories 20000] [--repeat 5]

``--latency 10000,100000,1000000`` instead times the whole ranking (from a query vector and
text to the ranked memories, what :class:`memory.recall.recaller.Recaller` does after the
embedding) at each size, one fresh process per size (:func:`recall_latency`), with the
exhaustive index as the baseline where it is built (up to ``--exhaustive-upto``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import memory.recall.updates as index_module
from memory.recall.index import UserIndex
from memory.recall.query import analyse_query
from memory.recall.ranking import Weights, distinct, fused_scores
from memory.recall.updates import EXHAUSTIVE_MAX, build_index
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


VOCABULARY = 20_000
"""Distinct words of the synthetic texts (drawn Zipf-distributed, as words in text are)."""
DAY = 86400.0
NOW = 1.7e9


def rss_mb() -> float:
    """This process's resident set (VmRSS), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def synthetic(n: int, seed: int = 0) -> tuple[list[MemoryHit], np.ndarray]:
    """``n`` memories of one user: 30-word texts over a Zipfian vocabulary, 20 per session, a
    minute apart; 384-d vectors around one of ``n / 50`` topics (as sentence embeddings cluster),
    shape ``(n, 384)``."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, VOCABULARY + 1)
    p = 1.0 / ranks
    words = rng.choice(VOCABULARY, size=(n, 30), p=p / p.sum())
    vocab = [f"w{i}" for i in range(VOCABULARY)]
    hits = [
        MemoryHit(
            f"m{i}",
            " ".join(vocab[w] for w in words[i]),
            {"session": f"s{i // 20}", "event_at": NOW - (n - i) * 60.0, "created_at": float(i)},
        )
        for i in range(n)
    ]
    topics = rng.standard_normal((max(10, n // 50), 384)).astype(np.float32)
    vectors = topics[rng.integers(0, len(topics), n)]
    vectors += rng.standard_normal((n, 384)).astype(np.float32)
    return hits, vectors


def ranked_ids(index: UserIndex, vector: np.ndarray, text: str, weights: Weights) -> list[str]:
    """The 10 memories recall would inject first for a query (as
    :meth:`memory.recall.recaller.Recaller._from_index` ranks them)."""
    views = analyse_query(text, index.names)
    view = index.for_query(vector, views.lexical)
    scores, eligible, _ = fused_scores(view, vector, views, 0.2, NOW, weights)
    order = (int(i) for i in np.argsort(-scores, kind="stable") if eligible[i])
    return [view.hits[i].id for i in itertools.islice(distinct(order, view, weights.duplicate), 10)]


def recall_latency(n_memories: int, queries: int = 200, exhaustive_upto: int = 100_000) -> dict:
    """Recall latency at ``n_memories`` memories of one synthetic user (:func:`synthetic`).

    Each query is a planted target's vector plus noise and five words of its text. Returns
    ``p50_ms``/``p99_ms`` of the ranking on the index recall uses (:func:`build_index`),
    ``hit_at_10`` (share of queries whose target is among the first 10), ``merge_ms`` (median of
    20 merges of one new memory), ``build_s``, ``rss_mb`` (resident growth while building), and,
    when ``n_memories <= exhaustive_upto``, the same for an exhaustive
    :class:`~memory.recall.index.UserIndex` (``exhaustive_p50_ms``, ``exhaustive_hit_at_10``).
    """
    hits, vectors = synthetic(n_memories)
    rng = np.random.default_rng(1)
    targets = rng.integers(0, n_memories, queries)
    noise = rng.standard_normal((queries, vectors.shape[1])).astype(np.float32)
    units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    qs = units[targets] + 0.5 * noise / np.sqrt(vectors.shape[1])
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    texts = [" ".join(hits[t].text.split()[:5]) for t in targets]
    weights = Weights()
    before = rss_mb()
    started = time.perf_counter()
    index = build_index(hits, vectors)
    out: dict = {"memories": n_memories, "build_s": time.perf_counter() - started}
    out["rss_mb"] = rss_mb() - before
    out.update(_timed(index, qs, texts, targets, hits, weights, ""))
    new = [MemoryHit(f"new{i}", "my sister lives in lisbon", {"session": "s1"}) for i in range(20)]
    out["merge_ms"] = median_ms(lambda: index.merged([new.pop()], vectors[:1]), 20)
    if n_memories <= exhaustive_upto:
        exhaustive = UserIndex(hits, vectors)
        out.update(_timed(exhaustive, qs, texts, targets, hits, weights, "exhaustive_"))
    return out


def _timed(
    index: UserIndex,
    qs: np.ndarray,
    texts: list[str],
    targets: np.ndarray,
    hits: list[MemoryHit],
    weights: Weights,
    prefix: str,
) -> dict:
    times, found = [], 0
    for q, text, target in zip(qs, texts, targets, strict=True):
        started = time.perf_counter()
        ids = ranked_ids(index, q, text, weights)
        times.append((time.perf_counter() - started) * 1e3)
        found += hits[int(target)].id in ids
    return {
        f"{prefix}p50_ms": float(np.percentile(times, 50)),
        f"{prefix}p99_ms": float(np.percentile(times, 99)),
        f"{prefix}hit_at_10": found / len(targets),
    }


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
    parser.add_argument("--latency", help="sizes, e.g. 10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--exhaustive-upto", type=int, default=100_000)
    parser.add_argument(
        "--exhaustive-max", type=int, help=f"the threshold (default {EXHAUSTIVE_MAX})"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process's size
    args = parser.parse_args()
    if args.exhaustive_max is not None:
        index_module.EXHAUSTIVE_MAX = args.exhaustive_max
    if args.one:
        print(json.dumps(recall_latency(args.one, args.queries, args.exhaustive_upto)))
        return
    if args.latency:
        latency_table([int(x) for x in args.latency.split(",")], args)
        return
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


def latency_table(sizes: list[int], args: argparse.Namespace) -> None:
    """Print :func:`recall_latency` at each of ``sizes``, each in a fresh process."""
    limit = index_module.EXHAUSTIVE_MAX
    print(f"recall ranking latency, {args.queries} queries, exhaustive up to {limit} memories")
    first: float | None = None
    for n in sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--queries", str(args.queries)]
        cmd += ["--exhaustive-upto", str(args.exhaustive_upto)]
        if args.exhaustive_max is not None:
            cmd += ["--exhaustive-max", str(args.exhaustive_max)]
        row = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        first = first or row["p50_ms"]
        line = (
            f"  {n:>9,} memories: p50 {row['p50_ms']:6.2f} ms  p99 {row['p99_ms']:6.2f} ms  "
            f"({row['p50_ms'] / first:4.1f}x the smallest)  hit@10 {row['hit_at_10']:.3f}  "
            f"merge {row['merge_ms']:5.1f} ms  RSS +{row['rss_mb']:,.0f} MB  "
            f"build {row['build_s']:.0f} s"
        )
        if "exhaustive_p50_ms" in row:
            line += (
                f"  | exhaustive p50 {row['exhaustive_p50_ms']:6.2f} ms "
                f"({row['exhaustive_p50_ms'] / row['p50_ms']:4.1f}x)"
                f" hit@10 {row['exhaustive_hit_at_10']:.3f}"
            )
        print(line, flush=True)
        keys = ("p50_ms", "p99_ms", "merge_ms", "rss_mb", "hit_at_10")
        print(f"n={n} " + " ".join(f"{k}={row[k]:.3f}" for k in keys), flush=True)


if __name__ == "__main__":
    main()
