"""Bounded memory: the users' in-memory indexes are an LRU by bytes (``memory.index_cache_mb``),
an evicted user is rebuilt from the store at the next recall (which asks the store meanwhile),
and the store keeps at most ``store.cache_collections`` Chroma collection handles."""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import numpy as np

from memory.config import StoreConfig
from memory.recall.cache import IndexCache
from memory.recall.index import UserIndex
from memory.store.chroma import ChromaStore
from memory.types import MemoryHit
from testing.fake_upstream import FakeOllama
from tests.conftest import RunningProxy, StartProxy
from tests.test_store import unit

WORDS = ["tea", "lisbon", "piano", "sister", "garden", "coffee", "train", "exam", "recipe"]


def memories(n: int, seed: int = 0) -> tuple[list[MemoryHit], np.ndarray]:
    rng = np.random.default_rng(seed)
    hits = [
        MemoryHit(
            f"m{seed}-{i}",
            " ".join(rng.choice(WORDS, 12)),
            {"session": f"s{i // 10}", "event_at": float(i), "created_at": float(i)},
        )
        for i in range(n)
    ]
    return hits, rng.standard_normal((n, 32)).astype(np.float32)


def test_index_nbytes_is_close_to_what_the_interpreter_allocated():
    tracemalloc.start()
    try:
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        index = UserIndex(*memories(2000))
        gc.collect()
        allocated = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0.75 < index.nbytes() / allocated < 1.25, (index.nbytes(), allocated)


async def seeded_store(tmp_path: Path, users: list[str], per_user: int = 3) -> ChromaStore:
    store = ChromaStore(StoreConfig(path=tmp_path / "chroma", cache_collections=2))
    await store.open()
    for u, user in enumerate(users):
        ids = [f"{user}-{i}" for i in range(per_user)]
        vectors = np.stack([unit(float(u), float(i), 1.0) for i in range(per_user)])
        texts = [f"{user} said thing {i}" for i in range(per_user)]
        await store.upsert_many(user, ids, vectors, texts, [{"user": user}] * per_user)
    return store


async def test_least_recently_recalled_index_is_evicted_and_rebuilt_on_demand(tmp_path: Path):
    store = await seeded_store(tmp_path, ["ann", "bob", "cid"])
    try:
        probe = IndexCache(store)
        await probe.ready("ann")
        one = probe.nbytes()
        cache = IndexCache(store, limit_bytes=2.5 * one)  # room for two of these users
        for user in ["ann", "bob"]:
            assert cache.get(user) is None  # not built: recall asks the store this time
            await cache.ready(user)
        assert cache.get("ann") is not None  # ann is now the most recently used
        assert cache.get("cid") is None
        await cache.ready("cid")
        assert cache.held() == 2 and cache.evicted == 1
        assert cache.loaded("bob") is None  # the least recently recalled went
        assert cache.nbytes() <= cache.limit_bytes
        assert cache.get("bob") is None  # evicted: asks the store, rebuilt in the background
        await cache.ready("bob")
        bob = cache.loaded("bob")
        assert bob is not None and sorted(h.id for h in bob.hits) == ["bob-0", "bob-1", "bob-2"]
        assert cache.loaded("ann") is None and cache.evicted == 2
    finally:
        await store.close()


async def test_an_index_larger_than_the_bound_is_still_held_alone(tmp_path: Path):
    store = await seeded_store(tmp_path, ["ann", "bob"])
    try:
        cache = IndexCache(store, limit_bytes=1)
        for user in ["ann", "bob"]:
            await cache.ready(user)
        assert cache.held() == 1 and cache.loaded("bob") is not None
    finally:
        await store.close()


async def test_store_bounds_its_collection_handles_and_reopens_dropped_ones(tmp_path: Path):
    users = [f"user{i}" for i in range(5)]
    store = await seeded_store(tmp_path, users)
    try:
        assert len(store._collections) == 2
        for u, user in enumerate(users):  # all but two handles were dropped
            (best,) = await store.query(user, unit(float(u), 2.0, 1.0), 1)
            assert best.id == f"{user}-2"
    finally:
        await store.close()


async def test_recall_through_the_proxy_with_a_tiny_index_cache(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await start_proxy(memory={"index_cache_mb": 0.001})
    for user, fact in [("alice", "I live in Lisbon"), ("bob", "I play the piano")]:
        await proxy.ollama(user).chat(model="m", messages=[{"role": "user", "content": fact}])
    await proxy.flush()
    asks = [("alice", "Where do I live?", "Lisbon"), ("bob", "What do I play?", "piano")]
    for user, question, fact in asks:
        await proxy.memory.index_ready(user)  # recalled from the index
        assert fact in await injected(proxy, fake, user, question)
    assert proxy.memory.cache.loaded("alice") is None  # evicted by bob's index
    assert "Lisbon" in await injected(proxy, fake, "alice", "Where do I live?")  # the store
    await proxy.memory.index_ready("alice")  # rebuilt in the background meanwhile
    assert proxy.memory.cache.loaded("alice") is not None
    assert proxy.memory.cache.held() == 1 and proxy.memory.cache.evicted >= 2


async def injected(proxy: RunningProxy, fake: FakeOllama, user: str, question: str) -> str:
    """Ask through ``proxy`` as ``user``; the system message the upstream got ('' if none)."""
    await proxy.ollama(user).chat(model="m", messages=[{"role": "user", "content": question}])
    first = fake.calls("/api/chat")[-1].json()["messages"][0]
    return str(first["content"]) if first["role"] == "system" else ""
