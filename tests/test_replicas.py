"""Replicas on one Chroma server agree: a write or a delete through one is reflected in recall
through the other within a second (the change log and the change feed)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from memory.config import StoreConfig
from memory.recall.index import UserIndex
from memory.recall.updates import apply_changes
from memory.store.chroma import ChromaStore
from memory.types import MemoryHit
from testing.fake_upstream import FakeOllama
from tests.conftest import RunningProxy, StartProxy
from tests.test_store import chroma_server, unit

__all__ = ["chroma_server"]  # the module-scoped server fixture, shared with test_store

BOUND_S = 1.0
"""What the issue asks: reflected on every replica within a second."""


async def replica(start: StartProxy, url: str, tmp_path: Path, name: str) -> RunningProxy:
    return await start(
        store={"url": url, "collection_prefix": f"rep{tmp_path.name[-12:]}".replace("_", "-")},
        memory={"outbox_path": str(tmp_path / f"{name}-outbox.sqlite3")},
    )


async def injected_through(proxy: RunningProxy, fake: FakeOllama, question: str) -> str:
    """Ask through ``proxy`` as alice; the system message the upstream got ('' if none)."""
    await proxy.ollama("alice").chat(model="m", messages=[{"role": "user", "content": question}])
    first = fake.calls("/api/chat")[-1].json()["messages"][0]
    return str(first["content"]) if first["role"] == "system" else ""


async def within(bound_s: float, check: object) -> float:
    """Seconds until the async ``check()`` holds, asserting it does within ``bound_s``."""
    started = time.monotonic()
    while not await check():  # type: ignore[operator]
        assert time.monotonic() - started < bound_s, f"not reflected within {bound_s} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


@pytest.mark.chroma_server
async def test_write_and_delete_through_one_replica_reach_the_other(
    start_proxy: StartProxy, chroma_server: str, fake: FakeOllama, tmp_path: Path
):
    a = await replica(start_proxy, chroma_server, tmp_path, "a")
    b = await replica(start_proxy, chroma_server, tmp_path, "b")
    # b holds alice's index (built from one memory it wrote itself) before a writes
    await b.ollama("alice").chat(model="m", messages=[{"role": "user", "content": "I like tea"}])
    await b.flush()
    await b.memory.index_ready("alice")
    assert b.memory.cache.loaded("alice") is not None

    await a.ollama("alice").chat(
        model="m", messages=[{"role": "user", "content": "I live in Lisbon"}]
    )
    await a.flush()  # in the store now: the clock starts

    async def b_indexes_lisbon() -> bool:
        index = b.memory.cache.loaded("alice")
        return index is not None and any("Lisbon" in h.text for h in index.hits)

    await within(BOUND_S, b_indexes_lisbon)
    assert b.memory.cache.coherent()  # so b's recall reads that index, not the store
    assert "I live in Lisbon" in await injected_through(b, fake, "Where do I live?")

    (hit,) = [h for h in await a.memory.search("alice", "Lisbon", 10) if "Lisbon" in h.text]
    async with aiohttp.ClientSession() as http:
        async with http.delete(f"{a.url}/memory/{hit.id}", params={"user": "alice"}) as r:
            assert r.status == 200

    async def b_forgot_lisbon() -> bool:
        return "Lisbon" not in await injected_through(b, fake, "Where do I live?")

    await within(BOUND_S, b_forgot_lisbon)
    await b.memory.index_ready("alice")
    index = b.memory.cache.loaded("alice")
    assert index is not None and index.record(hit.id) is None  # dropped, not only masked
    assert b.memory.cache.coherent()
    assert "Lisbon" not in await injected_through(b, fake, "Where do I live?")
    assert "I like tea" in await injected_through(b, fake, "What do I like to drink?")


@pytest.mark.chroma_server
async def test_change_log_holds_other_replicas_changes(chroma_server: str, tmp_path: Path):
    config = StoreConfig(url=chroma_server, collection_prefix=f"log{tmp_path.name[-12:]}")
    config = config.model_copy(
        update={"collection_prefix": config.collection_prefix.replace("_", "-")}
    )
    a, b = ChromaStore(config), ChromaStore(config)
    await a.open()
    await b.open()
    try:
        since = time.time() - 1
        await a.upsert("alice", "m1", unit(1, 0), "one", {"user": "alice"})
        await a.update_metadata("alice", {"m1": {"strength": 0.5}})
        await a.delete("alice", "m1")
        await b.upsert("bob", "m2", unit(0, 1), "two", {"user": "bob"})
        seen = [(c.user, c.kind, c.ids) for c in await b.changes(since)]
        assert seen == [
            ("alice", "upsert", ("m1",)),
            ("alice", "update", ("m1",)),
            ("alice", "delete", ("m1",)),
        ]
        assert [(c.user, c.kind) for c in await a.changes(since)] == [("bob", "upsert")]
        hits, vectors = await b.fetch("bob", ["m2", "gone"])
        assert [h.id for h in hits] == ["m2"] and vectors.shape == (1, 2)
        await a.prune_changes(time.time() + 1)
        assert await b.changes(since) == []
    finally:
        await a.close()
        await b.close()


def test_deletions_mask_at_once_and_drop_in_the_background():
    hits = [
        MemoryHit(str(i), f"memory {i}", {"session": "s", "created_at": float(i)}) for i in range(3)
    ]
    index = UserIndex(hits, np.eye(3, dtype=np.float32))
    masked = index.masked(frozenset({"1", "unknown"}))
    assert masked.dormant.tolist() == [False, True, False] and not index.dormant.any()
    assert masked.vectors is index.vectors  # shared, O(n) flags only
    dropped = apply_changes(index, [frozenset({"1"}), frozenset({"2"})])
    assert dropped is not None and [h.id for h in dropped.hits] == ["0"]
    assert dropped.vectors is not None and dropped.vectors.shape == (1, 3)
    assert [h.id for h in dropped.search("memory", 5)] == ["0"]
