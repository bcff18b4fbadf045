"""The store's sharded layout: users sharing a shard never see each other's memories, the
number of Chroma collections does not grow with users, and the older layouts (one collection
per user, another shard count) are migrated on open with ids, documents, metadata and vectors
preserved."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memory.config import StoreConfig
from memory.store import layout
from memory.store import migrate as migration
from memory.store.chroma import EXACT_MAX, ChromaStore
from memory.types import MemoryHit
from tests.test_store import chroma_server, unit

__all__ = ["chroma_server"]  # the module-scoped server fixture, shared with test_store


def config_for(request: pytest.FixtureRequest, tmp_path: Path, **options: Any) -> StoreConfig:
    """Embedded in ``tmp_path``, or on the module's ``chroma run`` with a prefix of its own."""
    if request.param == "server":
        url = request.getfixturevalue("chroma_server")
        prefix = f"l{tmp_path.name[-20:]}".replace("_", "-")
        return StoreConfig(url=url, collection_prefix=prefix, **options)
    return StoreConfig(path=tmp_path / "chroma", **options)


@pytest.fixture(params=["embedded", "server"])
def where(request: pytest.FixtureRequest, tmp_path: Path) -> StoreConfig:
    return config_for(request, tmp_path)


@pytest.fixture
async def one_shard(where: StoreConfig) -> AsyncIterator[ChromaStore]:
    """Every user in one shard: isolation rests on the filter and the ids alone."""
    store = ChromaStore(where.model_copy(update={"shards": 1}))
    await store.open()
    yield store
    await store.close()


@contextlib.contextmanager
def raw_client(config: StoreConfig) -> Iterator[Any]:
    """A chromadb client of ``config``'s store, to write collections as older versions did."""
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if config.url:
        host, port = config.url.removeprefix("http://").split(":")
        client = chromadb.HttpClient(host=host, port=int(port), settings=settings)
    else:
        client = chromadb.PersistentClient(path=str(config.path), settings=settings)
    try:
        yield client
    finally:
        client.close()
        session = getattr(getattr(client, "_server", None), "_session", None)
        if session is not None:
            session.close()


def write_legacy(client: Any, name: str, ids: list[str], metas: list[dict[str, Any]]) -> Any:
    """A collection as the one-per-user layout made it, holding ``ids``; returns the vectors."""
    vectors = np.stack([unit(1.0, float(i), 0.5) for i in range(len(ids))])
    collection = client.get_or_create_collection(
        name,
        embedding_function=None,
        configuration={"hnsw": {"space": "cosine"}},
        metadata={"schema_version": 3, "dim": 3, "embedder": "e"},
    )
    collection.upsert(
        ids=ids,
        embeddings=vectors.tolist(),
        documents=[f"text of {i}" for i in ids],
        metadatas=metas,
    )
    return vectors


def names(client: Any, prefix: str) -> set[str]:
    return {c.name for c in client.list_collections() if layout.is_ours(prefix, c.name)}


async def test_users_in_one_shard_are_isolated(one_shard: ChromaStore):
    store = one_shard
    await store.upsert("alice", "m1", unit(1, 0, 0), "alice likes tea", {"user": "alice"})
    await store.upsert("alice", "m2", unit(0, 1, 0), "alice runs", {"user": "alice"})
    # the same memory id, and a metadata 'user' that lies: neither reaches alice's records
    await store.upsert("bob", "m1", unit(1, 0, 0), "bob likes coffee", {"user": "alice"})

    assert [h.text for h in await store.query("alice", unit(1, 0, 0), 10)] == [
        "alice likes tea",
        "alice runs",
    ]
    assert [h.text for h in await store.query("bob", unit(0, 1, 0), 10)] == ["bob likes coffee"]
    assert await store.query("carol", unit(1, 0, 0), 10) == []
    assert (await store.get("alice", "m1")).text == "alice likes tea"  # type: ignore[union-attr]
    bob_m1 = await store.get("bob", "m1")
    assert bob_m1 is not None and bob_m1.metadata["user"] == "bob"
    assert await store.get("bob", "m2") is None
    assert sorted(h.id for h in await store.all("alice")) == ["m1", "m2"]
    hits, vectors = await store.snapshot("bob")
    assert [h.text for h in hits] == ["bob likes coffee"] and vectors.shape == (1, 3)
    fetched, _ = await store.fetch("bob", ["m1", "m2"])
    assert [h.text for h in fetched] == ["bob likes coffee"]

    await store.update_metadata("bob", {"m1": {"k": 1, "user": "alice"}, "m2": {"k": 2}})
    assert "k" not in (await store.get("alice", "m1")).metadata  # type: ignore[union-attr]
    assert "k" not in (await store.get("alice", "m2")).metadata  # type: ignore[union-attr]
    assert (await store.get("bob", "m1")).metadata["user"] == "bob"  # type: ignore[union-attr]

    assert await store.delete("bob", "m2") is False
    assert await store.delete("bob", "m1") is True
    assert (await store.get("alice", "m1")).text == "alice likes tea"  # type: ignore[union-attr]
    assert await store.all("bob") == []
    assert await store.users() == ["alice"]


async def test_collections_do_not_grow_with_users(where: StoreConfig):
    store = ChromaStore(where.model_copy(update={"shards": 4}))
    await store.open()
    try:
        users = [f"user-{i}" for i in range(40)]
        for i, user in enumerate(users):
            await store.upsert(user, "m", unit(1.0, float(i), 0), f"{user} fact", {})
        with raw_client(where) as client:
            created = names(client, where.collection_prefix)
        assert len(created) == 4, created
        assert all(n.endswith("-of-004") for n in created)
        assert await store.users() == sorted(users)
        for i, user in enumerate(users):
            (hit,) = await store.query(user, unit(1.0, float(i), 0), 5)
            assert (hit.id, hit.text, hit.metadata["user"]) == ("m", f"{user} fact", user)
    finally:
        await store.close()


async def test_per_user_collections_migrate_on_open_once(where: StoreConfig):
    prefix = where.collection_prefix
    old_alice = layout.collection_name(prefix, "alice")
    alice_metas: list[dict[str, Any]] = [
        {"user": "alice", "schema_version": 3, "strength": 0.5, "tier": "user"},
        {"user": "alice", "schema_version": 2},
        {"session": "s1"},  # no user, no version (as version 1 wrote some): kept as stored
    ]
    orphan = f"{prefix}-u-{'0' * 40}"  # no record names a user that hashes to it
    with raw_client(where) as client:
        alice_vectors = write_legacy(client, old_alice, ["a1", "a2", "a3"], alice_metas)
        bob = layout.collection_name(prefix, "bob")
        bob_vectors = write_legacy(client, bob, ["a1"], [{"user": "bob"}])
        write_legacy(client, orphan, ["x"], [{"user": "mallory"}])

    store = ChromaStore(where)
    await store.open()  # migrates
    try:
        hits, vectors = await store.fetch("alice", ["a1", "a2", "a3"])
        assert [h.id for h in hits] == ["a1", "a2", "a3"]
        assert [h.text for h in hits] == ["text of a1", "text of a2", "text of a3"]
        assert [h.metadata for h in hits] == [{**m, "user": "alice"} for m in alice_metas]
        assert hits[2].record.schema_version == 1  # not restamped as the current version
        np.testing.assert_allclose(vectors, alice_vectors, atol=1e-6)
        (bob,), bob_vector = await store.fetch("bob", ["a1"])
        assert bob.text == "text of a1" and bob.metadata == {"user": "bob"}
        np.testing.assert_allclose(bob_vector, bob_vectors, atol=1e-6)
        assert next(h.id for h in await store.query("alice", unit(1, 1, 0.5), 10)) == "a2"
        with raw_client(where) as client:
            left = names(client, prefix)
        assert old_alice not in left and orphan in left  # unverifiable owner: left in place
        assert not any(n.startswith(f"{prefix}-u-") and n != orphan for n in left)

        again = await store.migrate()  # idempotent: nothing more to move, nothing lost
        assert (again.collections, again.memories) == (0, 0)
        assert orphan in again.left
        assert sorted(h.id for h in await store.all("alice")) == ["a1", "a2", "a3"]
        assert await store.users() == ["alice", "bob"]
    finally:
        await store.close()


@pytest.mark.parametrize("where", ["embedded"], indirect=True)
async def test_another_shard_count_migrates(where: StoreConfig):
    first = ChromaStore(where.model_copy(update={"shards": 3}))
    await first.open()
    users = [f"u{i}" for i in range(12)]
    for i, user in enumerate(users):
        await first.upsert_many(
            user,
            ["same", f"own-{i}"],
            np.stack([unit(1, i, 0), unit(0, 1, i)]),
            ["a", "b"],
            [{}] * 2,
        )
    await first.close()

    second = ChromaStore(where.model_copy(update={"shards": 2}))
    await second.open()
    try:
        with raw_client(where) as client:
            assert all(n.endswith("-of-002") for n in names(client, where.collection_prefix))
        assert await second.users() == sorted(users)
        for i, user in enumerate(users):
            hits, vectors = await second.snapshot(user)
            assert sorted(h.id for h in hits) == ["own-" + str(i), "same"]
            assert {h.metadata["user"] for h in hits} == {user}
            assert vectors.shape == (2, 3)
    finally:
        await second.close()


def test_a_copy_that_reads_back_different_is_not_verified():
    rows = migration.Rows(["a"], ["text"], [{"k": 1}], np.asarray([unit(1, 0)]))
    owned = migration.Owned(["a"], [0])
    good = MemoryHit("a", "text", {"k": 1, "user": "u"})
    assert migration.mismatch(rows, owned, "u", [good], rows.vectors) is None
    assert "not copied" in str(migration.mismatch(rows, owned, "u", [], rows.vectors))
    changed = MemoryHit("a", "text", {"k": 2, "user": "u"})
    assert "different" in str(migration.mismatch(rows, owned, "u", [changed], rows.vectors))
    other = np.asarray([unit(0, 1)])
    assert "vector" in str(migration.mismatch(rows, owned, "u", [good], other))


def test_shard_records_without_their_owners_tag_are_unmigratable():
    rows = migration.Rows(["m1"], ["t"], [{"user": "alice"}], np.asarray([unit(1, 0)]))
    with pytest.raises(migration.UnmigratableError, match="owner's tag"):
        migration.owners("slm", "slm-shard-000-of-004", rows)
    tagged = migration.Rows(
        [f"{layout.owner_tag('alice')}:m1"], ["t"], rows.metadatas, rows.vectors
    )
    (owned,) = migration.owners("slm", "slm-shard-000-of-004", tagged).values()
    assert owned.memory_ids == ["m1"]


@pytest.mark.parametrize("where", ["embedded"], indirect=True)
async def test_query_of_a_large_user_in_a_shared_shard(where: StoreConfig):
    """Past EXACT_MAX memories the query is Chroma's filtered one: still only the user's own."""
    store = ChromaStore(where.model_copy(update={"shards": 1}))
    await store.open()
    try:
        n = EXACT_MAX + 20
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((n, 8)).astype(np.float32)
        ids = [f"m{i}" for i in range(n)]
        await store.upsert_many("big", ids, vectors, ["big"] * n, [{}] * n)
        await store.upsert("small", "m0", vectors[7], "small", {})  # the exact vector of big's m7
        small_hits = await store.query("small", vectors[7], 5)
        assert [(h.id, h.text) for h in small_hits] == [("m0", "small")]
        assert small_hits[0].similarity == pytest.approx(1.0, abs=1e-5)
        hits = await store.query("big", vectors[7], 10)
        assert hits[0].id == "m7" and hits[0].similarity == pytest.approx(1.0, abs=1e-4)
        assert len(hits) == 10 and {h.text for h in hits} == {"big"}
    finally:
        await store.close()
