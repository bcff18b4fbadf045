"""The candidate path for large users (:mod:`memory.recall.large`): it ranks as the exhaustive
index does, changes in place as a fresh build would be, honours deletions and updates, and
serves recall through the proxy."""

from __future__ import annotations

import numpy as np
import pytest

import memory.recall.large as large_module
import memory.recall.updates as index_module
from memory.recall.index import UserIndex
from memory.recall.large import LargeIndex
from memory.recall.query import analyse_query
from memory.recall.ranking import Weights, fused_scores
from memory.recall.updates import apply_changes
from memory.types import MemoryHit, Scope
from testing.fake_upstream import FakeOllama
from tests import test_recall
from tests.conftest import RunningProxy

DIM = 32
NOW = 1.7e9


def memories(n: int, seed: int = 0) -> tuple[list[MemoryHit], np.ndarray]:
    """``n`` memories, 10 per session, with clustered vectors and texts of rare words (each
    memory has one word only it says: ``only<i>``)."""
    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((max(4, n // 25), DIM)).astype(np.float32)
    vectors = topics[rng.integers(0, len(topics), n)] + rng.standard_normal((n, DIM))
    hits = [
        MemoryHit(
            f"m{i}",
            f"note {i % 7} about topic{i % 13} and only{i}",
            {"session": f"s{i // 10}", "event_at": NOW - (n - i) * 60.0, "created_at": float(i)},
        )
        for i in range(n)
    ]
    return hits, vectors.astype(np.float32)


def top(index: UserIndex, vector: np.ndarray, text: str, k: int = 10) -> list[str]:
    """The ``k`` best eligible memories for a query, as the recaller ranks them."""
    views = analyse_query(text, index.names)
    view = index.for_query(vector, views.lexical)
    scores, eligible, _ = fused_scores(view, vector, views, 0.1, NOW, Weights())
    order = [i for i in np.argsort(-scores, kind="stable") if eligible[i]]
    return [view.hits[i].id for i in order[:k]]


def noisy(vectors: np.ndarray, rows: np.ndarray, scale: float, seed: int = 1) -> np.ndarray:
    """Unit queries near ``vectors[rows]``."""
    units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    noise = np.random.default_rng(seed).standard_normal((len(rows), vectors.shape[1]))
    qs = units[rows] + scale * noise / np.sqrt(vectors.shape[1])
    return (qs / np.linalg.norm(qs, axis=1, keepdims=True)).astype(np.float32)


def test_candidates_rank_planted_targets_as_the_exhaustive_index_does():
    hits, vectors = memories(3000)
    large, exhaustive = LargeIndex(hits, vectors), UserIndex(hits, vectors)
    targets = np.random.default_rng(2).integers(0, len(hits), 100)
    found = np.zeros(4)  # target first (large, exhaustive), target in the first 10 (same)
    for q, t in zip(noisy(vectors, targets, 0.4), targets, strict=True):
        a, b = top(large, q, "topic"), top(exhaustive, q, "topic")
        found += [a[0] == f"m{t}", b[0] == f"m{t}", f"m{t}" in a, f"m{t}" in b]
    first_large, first_exhaustive, ten_large, ten_exhaustive = found
    assert ten_exhaustive >= 90  # the query is near enough for exact search to find it
    assert ten_large >= ten_exhaustive - 2 and first_large >= first_exhaustive - 5
    # a word only one memory says is found by the lexical search whatever the vector
    far = -vectors[5] / np.linalg.norm(vectors[5])
    assert "m1234" in top(large, far, "only1234", k=50)


def test_when_every_memory_is_a_candidate_both_indexes_rank_alike(monkeypatch):
    """Below DENSE_K memories every one is a candidate; only the BM25 variants differ
    (tantivy's k1 is 1.2, bm25s's 1.5, and the large index leaves out terms most memories
    share), so the rankings agree at the top."""
    hits, vectors = memories(90)
    large, exhaustive = LargeIndex(hits, vectors), UserIndex(hits, vectors)
    for t, text in ((3, "topic3"), (40, "topic1 and only40"), (77, "only77 topic12"), (12, "")):
        q = noisy(vectors, np.array([t]), 1.0)[0]
        a, b = top(large, q, text), top(exhaustive, q, text)
        assert a[0] == b[0] and len(set(a) & set(b)) >= 8
    # a word every memory says is no lexical evidence on a large index (below COMMON_MIN
    # memories it still is)
    assert large.lexical_scores("note").any() and exhaustive.lexical_scores("note").all()
    monkeypatch.setattr(large_module, "COMMON_MIN", 10)
    assert not large.lexical_scores("note").any() and large.lexical_scores("only3").any()


def by_id(index: LargeIndex) -> dict[str, tuple]:
    """What a fresh build must agree on, per held memory: its session neighbours, context
    vector, session centroid and metadata columns."""
    out = {}
    for mid, row in index.position.items():
        rows = np.array([row])
        prev, nxt = index._prev.view[row], index._next.view[row]
        out[mid] = (
            index.hits[prev].id if prev >= 0 else None,
            index.hits[nxt].id if nxt >= 0 else None,
            index._ctx.view[row].round(4).tolist(),
            index.centroids_of(rows, index._vec.view[rows])[0].round(4).tolist(),
            tuple(float(index._cols[c].view[row]) for c in ("strength", "event_at", "dormant")),
        )
    return out


def test_writes_in_batches_change_the_index_as_a_fresh_build_would():
    hits, vectors = memories(1500)
    grown = LargeIndex(hits[:1000], vectors[:1000])
    rng = np.random.default_rng(3)
    final = {h.id: (h, v) for h, v in zip(hits[:1000], vectors[:1000], strict=True)}
    for start in range(1000, 1500, 50):
        batch = list(zip(hits[start : start + 50], vectors[start : start + 50], strict=True))
        # rewrites of held memories (new text, an earlier event time in another session)
        for j in [7] * (start == 1000) + rng.choice(start, 3, replace=False).tolist():
            meta = {"session": f"s{j % 5}", "event_at": NOW - 1e6 + j, "created_at": 9e9 + j}
            batch.append((MemoryHit(f"m{j}", f"rewritten only{j}", meta), rng.standard_normal(DIM)))
        for h, v in batch:
            final[h.id] = (h, v)
        result = grown.merged([h for h, _ in batch], np.vstack([v for _, v in batch]))
        assert result is grown  # in place, not rebuilt
    fresh = LargeIndex([h for h, _ in final.values()], np.vstack([v for _, v in final.values()]))
    assert len(grown) == len(fresh) == 1500
    assert by_id(grown) == by_id(fresh)
    assert (grown.days == fresh.days).all() and grown.names == fresh.names
    for index in (grown, fresh):  # the rewritten text is searched, not the old one
        found = index.search("rewritten only7", 5)
        assert found[0].text == "rewritten only7" and all(
            h.text.startswith("rewritten") for h in found
        )


def test_deletions_updates_and_masks_are_honoured_in_place():
    hits, vectors = memories(400)
    index = LargeIndex(hits, vectors)
    q = noisy(vectors, np.array([55]), 0.3)[0]
    assert top(index, q, "only55")[0] == "m55"
    before, after = index.neighbours("m55")
    assert {before.id, after.id} == {"m54", "m56"}
    index = apply_changes(index, [frozenset({"m55"})])
    assert isinstance(index, LargeIndex) and len(index) == 399
    assert "m55" not in top(index, q, "only55", 50) and index.record("m55") is None
    assert [h.id for h in index.neighbours("m54")][-1] == "m56"  # relinked across the gap
    assert "m55" not in [h.id for h in index.search("only55", 5)]
    assert "m55" not in {h.id for h in index.live()}
    # a repulsor and a masked memory are never injected; another update keeps a memory
    q = noisy(vectors, np.array([120]), 0.3)[0]
    index = apply_changes(index, [{"m120": {"polarity": "repulsor", "symbiosis": 0.1}}])
    assert index is not None and "m120" not in top(index, q, "only120", 50)
    index = apply_changes(index, [{"m120": {"polarity": "symbiont", "symbiosis": 0.9}}])
    assert index is not None and top(index, q, "only120")[0] == "m120"
    index = index.masked(frozenset({"m120"}))
    assert "m120" not in top(index, q, "only120", 50)
    # an update that moves a memory to another session needs a rebuild from the store
    assert index.updated({"m7": {"session": "elsewhere"}}) is None
    # the nearest held memory is found even when the ANN's nearest were all deleted
    few = LargeIndex(hits[:30], vectors[:30]).without(frozenset(f"m{i}" for i in range(29)))
    assert few.nearest(noisy(vectors, np.array([3]), 0.1)[0])[0].id == "m29"


def test_an_index_becomes_large_past_the_threshold_and_is_retrained_as_it_grows(monkeypatch):
    monkeypatch.setattr(index_module, "EXHAUSTIVE_MAX", 100)
    hits, vectors = memories(1200)
    index = index_module.build_index(hits[:80], vectors[:80])
    assert type(index) is UserIndex
    index = apply_changes(index, [(hits[80:150], vectors[80:150])])
    assert isinstance(index, LargeIndex) and len(index) == 150
    trained = index.ann.trained_on
    index = apply_changes(index, [(hits[150:1200], vectors[150:1200])])
    assert isinstance(index, LargeIndex) and index.ann.trained_on > trained
    q = noisy(vectors, np.array([1100]), 0.3)[0]
    assert top(index, q, "only1100")[0] == "m1100"
    hit, cosine, _ = index.nearest(q)
    assert hit.id == "m1100" and cosine > 0.8


@pytest.fixture
def large_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every user's index is a LargeIndex (the threshold is 0)."""
    monkeypatch.setattr(index_module, "EXHAUSTIVE_MAX", 0)


@pytest.mark.usefixtures("large_only")
async def test_recall_through_the_proxy_on_large_indexes(proxy: RunningProxy, fake: FakeOllama):
    # the recall, incremental-merge and access-statistics scenario of the exhaustive index
    await test_recall.test_new_memory_is_recalled_once_indexed_and_access_is_counted(proxy, fake)
    index = proxy.memory.cache.loaded("alice")
    assert isinstance(index, LargeIndex) and len(index) == 2
    # a deletion through the admin API is honoured by the large index
    block = await proxy.memory.recall(Scope("alice"), "what is my dog called?")
    pepper = next(i for i in block.ids if "Pepper" in index.hits[index.position[i]].text)
    assert await proxy.memory.forget("alice", pepper)
    block = await proxy.memory.recall(Scope("alice"), "what is my dog called?")
    assert pepper not in block.ids and "Pepper" not in block.text


def test_the_latency_benchmark_runs_both_paths_and_finds_its_targets():
    from scripts.bench_index import recall_latency

    figures = recall_latency(6000, queries=20, exhaustive_upto=6000)
    assert figures["hit_at_10"] >= 0.9 and figures["exhaustive_hit_at_10"] >= 0.9
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] and figures["merge_ms"] > 0


def test_rewrites_deletions_masks_and_access_statistics_stay_right_in_place():
    hits, vectors = memories(400)
    index = LargeIndex(hits, vectors)
    q = noisy(vectors, np.array([55]), 0.3)[0]
    # a memory written again and again (each reinforcement replaces it) stays findable:
    # the replaced rows leave the ANN instead of taking its places
    for i in range(140):
        again = MemoryHit("m55", hits[55].text, {**hits[55].metadata, "reinforcements": i})
        index = apply_changes(index, [([again], vectors[55:56])])
    assert isinstance(index, LargeIndex) and len(index) == 400
    assert top(index, q, "only55")[0] == "m55" and index.ann._index.ntotal == 400
    # the same memory twice in one run of writes is held once, and deleted once for all
    twice = [MemoryHit("m56", "first", {"session": "s5"}), MemoryHit("m56", "second", {})]
    index = apply_changes(index, [([twice[0]], vectors[56:57]), ([twice[1]], vectors[56:57])])
    assert index is not None and [h.text for h in index.live() if h.id == "m56"] == ["second"]
    index = apply_changes(index, [frozenset({"m56"})])
    assert index is not None and all(h.id != "m56" for h in index.live())
    # a mask (a deletion not yet applied) outlives a metadata update of that memory
    index = index.masked(frozenset({"m55"}))
    index = apply_changes(index, [{"m55": {"importance": 0.5}}])
    assert index is not None and "m55" not in top(index, q, "only55", 50)
    # access statistics update records in place; the index reads them again for decay
    record = index.record("m60")
    assert record is not None and isinstance(index, LargeIndex)
    record.metadata["last_access_at"] = 2.0e9
    record.__dict__.pop("record", None)
    index.reread(["m60"])
    assert index._cols["last_used"].view[index.position["m60"]] == 2.0e9
    # a speaker whose memories are all gone is no longer a name the query analysis knows
    said = [MemoryHit(f"z{i}", "Zoe: hi", {"session": "z", "speaker": "Zoe"}) for i in range(2)]
    index = apply_changes(index, [(said, vectors[:2])])
    assert index is not None and "zoe" in index.names
    index = apply_changes(index, [frozenset({"z0", "z1"})])
    assert index is not None and "zoe" not in index.names
