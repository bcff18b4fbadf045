#!/usr/bin/env python3
"""Resident memory per user: what the proxy's memory layer keeps for each user it has served.

Starts a :class:`memory.service.MemoryService` on an embedded Chroma store in a temporary
directory (or ``--url``, a Chroma server), with a deterministic 384-d hashed embedder (no model:
the figure is the memory layer's, not a model's), then, for ``--users`` distinct users, writes
one short exchange each and recalls once for each (which builds the user's in-memory index).
Prints the process's resident set (VmRSS, after a garbage collection) before and after, per
user, and what the in-memory indexes hold by their own count (:meth:`IndexCache.nbytes`).

Each run is one fresh process (RSS never shrinks much once grown, so runs must not share one):

    python scripts/bench_users.py [--users 1000] [--url http://127.0.0.1:8000]
        [--cache-collections 64] [--index-cache-mb 1024]

``--cache-collections`` bounds the proxy's collection handles only. Users share
``store.shards`` collections, so Chroma's fixed cost per HNSW index is paid per shard, not per
user (see README, "Memory per user").
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import re
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memory.config import MemoryConfig, StoreConfig
from memory.errors import MemoryLayerError
from memory.service import MemoryService
from memory.store.chroma import ChromaStore
from memory.store.outbox import Outbox
from memory.types import Exchange, Scope

DIM = 384
WARM_UP_USERS = 10
"""Users served before the first RSS reading (imports, first allocations)."""


class HashedEmbedder:
    """Hashed bag of words, ``DIM`` wide, unit rows: deterministic and model-free."""

    name = "hashed-384"

    async def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()) or ["empty"]:
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    async def aclose(self) -> None:
        return None


def rss_mb() -> float:
    """This process's resident set in MB (``VmRSS`` from ``/proc/self/status``)."""
    gc.collect()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def exchange(user: str, i: int) -> Exchange:
    now = time.time()
    return Exchange(
        Scope(user, f"s{i}"),
        "/api/chat",
        "llama3.2",
        f"My sister lives in Lisbon and I am {i} years into learning the piano.",
        "That sounds lovely; Lisbon is a beautiful city for music.",
        started_at=now,
        finished_at=now,
    )


async def serve_users(service: MemoryService, first: int, count: int, batch: int = 100) -> int:
    """Write one exchange per user and recall once for each, ``batch`` users at a time;
    returns how many recalls failed (the proxy would fail open: nothing injected)."""
    skipped = 0
    for start in range(first, first + count, batch):
        users = [f"user-{i}" for i in range(start, min(first + count, start + batch))]
        for i, user in enumerate(users):
            service.observe(exchange(user, start + i))
        if not await service.flush(timeout_s=120):
            raise RuntimeError("the writer did not drain the outbox in 120 s")
        for user in users:
            try:
                await service.recall(Scope(user), "where does my sister live?")
            except MemoryLayerError:
                skipped += 1
            await service.index_ready(user)
    return skipped


@dataclass
class UsersResult:
    """What one :func:`measure_users` run measured."""

    users: int
    store: str
    """``server`` (a Chroma server at ``--url``) or ``embedded``."""
    before_mb: float
    """Resident set after the warm-up, before the measured users, in MB."""
    after_mb: float
    held: int
    """Users whose in-memory index is held after the run."""
    index_bytes: int
    """What the held indexes hold by their own count (:meth:`IndexCache.nbytes`)."""
    skipped: int
    """Recalls that failed open."""
    seconds: float
    """Wall time of the measured users (writes, flushes and recalls)."""
    index_cache_mb: float

    @property
    def per_user_kb(self) -> float:
        return (self.after_mb - self.before_mb) * 1024 / max(self.users, 1)


async def measure_users(
    users: int,
    url: str | None = None,
    cache_collections: int = StoreConfig().cache_collections,
    memory: dict[str, Any] | None = None,
    prefix: str = "benchu",
) -> UsersResult:
    """RSS of this process before and after serving ``users`` users (after 10 warm-up users),
    on an embedded store in a temporary directory or the Chroma server at ``url``
    (collections named ``<prefix>...``: give each run on one server its own prefix)."""
    with tempfile.TemporaryDirectory(prefix="bench-users-") as tmp:
        store = StoreConfig(
            path=Path(tmp) / "chroma",
            url=url,
            collection_prefix=prefix,
            cache_collections=cache_collections,
        )
        service = MemoryService(
            MemoryConfig(timeout_ms=5000, **(memory or {})),
            ChromaStore(store),
            HashedEmbedder(),
            Outbox(Path(tmp) / "outbox.sqlite3"),
        )
        await service.start()
        try:
            await serve_users(service, 0, WARM_UP_USERS)
            before = rss_mb()
            started = time.perf_counter()
            skipped = await serve_users(service, WARM_UP_USERS, users)
            seconds = time.perf_counter() - started
            after = rss_mb()
            return UsersResult(
                users,
                "server" if url else "embedded",
                before,
                after,
                service.cache.held(),
                service.cache.nbytes(),
                skipped,
                seconds,
                service.config.index_cache_mb,
            )
        finally:
            await service.close(timeout_s=0)


async def main(args: argparse.Namespace) -> None:
    r = await measure_users(args.users, args.url, args.cache_collections, args.memory)
    print(
        f"users={r.users} store={r.store} cache_collections={args.cache_collections} "
        f"index_cache_mb={r.index_cache_mb:g} recalls failed open: {r.skipped}"
    )
    print(f"  RSS before {r.before_mb:8.1f} MB, after {r.after_mb:8.1f} MB")
    print(f"  RSS per user {r.per_user_kb:8.1f} KB")
    print(
        f"  in-memory indexes: {r.held} held, {r.index_bytes / 1024:.1f} KB "
        f"({r.index_bytes / max(r.held, 1) / 1024:.1f} KB per index)"
    )
    print(f"  {r.seconds:.1f} s ({r.seconds * 1000 / max(r.users, 1):.1f} ms per user)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--url", default=None, help="a Chroma server (default: embedded)")
    parser.add_argument(
        "--cache-collections",
        type=int,
        default=StoreConfig().cache_collections,
        help="store.cache_collections",
    )
    parser.add_argument("--index-cache-mb", type=float, default=None, help="memory.index_cache_mb")
    parsed = parser.parse_args()
    parsed.memory = {}
    if parsed.index_cache_mb is not None:
        parsed.memory["index_cache_mb"] = parsed.index_cache_mb
    asyncio.run(main(parsed))
