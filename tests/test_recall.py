"""The recall pipeline on hand-made vectors: subject focus, neighbours, recency, strength,
incremental index updates, access statistics, and ingest with speaker names."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from memory.recall.index import UserIndex
from memory.recall.query import QueryViews, analyse_query
from memory.recall.ranking import Weights, fused_scores
from memory.recall.updates import apply_changes
from memory.types import MemoryHit, Scope
from testing.fake_upstream import FakeOllama
from tests.conftest import RunningProxy

DIM = 4
DAY = 86400.0


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def hit(mid: str, text: str, **meta: object) -> MemoryHit:
    return MemoryHit(mid, text, {"session": "s1", "event_at": 0.0, **meta})


def ranking(index: UserIndex, q: np.ndarray, views: QueryViews, now: float = 0.0) -> list[str]:
    scores, eligible, _ = fused_scores(index, q, views, -1.0, now, Weights())
    return [index.hits[i].id for i in np.argsort(-scores, kind="stable") if eligible[i]]


def test_query_naming_a_speaker_prefers_what_that_speaker_said():
    hits = [
        hit("a", "Ann: I paint sunsets on weekends", speaker="Ann", created_at=1.0),
        hit("b", "Bo: I paint sunsets too, Ann!", speaker="Bo", created_at=2.0),
    ]
    same = unit(1, 0, 0, 0)
    index = UserIndex(hits, np.vstack([same, same]))
    views = analyse_query("What does Ann paint?", index.names)
    assert views.subject == "Ann" and "Ann" not in views.lexical
    assert ranking(index, same, views) == ["a", "b"]
    # without a named subject the two are tied on the vectors and BM25 decides
    assert ranking(index, same, analyse_query("sunsets", index.names))[0] in {"a", "b"}


def test_a_reply_comes_along_with_the_statement_it_answers():
    hits = [
        hit("q", "Did you go to the lighthouse concert?", created_at=1.0),
        hit("a", "Yes, twice last month!", created_at=2.0),
        hit("x", "Unrelated chatter about the weather", session="s2", created_at=3.0),
        hit("y", "More unrelated chatter", session="s2", created_at=4.0),
    ]
    vectors = np.vstack([unit(1, 0, 0, 0), unit(0, 1, 0, 0), unit(0, 0, 1, 0), unit(0, 0, 0, 1)])
    index = UserIndex(hits, vectors)
    q = unit(1, 0, 0.05, 0)
    scores, eligible, cosine = fused_scores(
        index, q, QueryViews("lighthouse concert", "lighthouse concert"), 0.5, 0.0, Weights()
    )
    assert cosine[1] < 0.5 and eligible[1]  # below the floor, but the answer to a strong match
    order = [index.hits[i].id for i in np.argsort(-scores) if eligible[i]]
    assert order[:2] == ["q", "a"] and "y" not in order


def test_recency_orders_but_never_forgets_and_strength_weighs():
    old = hit("old", "I was born in Lyon", event_at=0.0, created_at=1.0)
    new = hit("new", "I was born in Lyon", event_at=400 * DAY, created_at=2.0)
    v = unit(1, 0, 0, 0)
    index = UserIndex([old, new], np.vstack([v, v]))
    views = QueryViews("born", "born")
    scores, eligible, _ = fused_scores(index, v, views, 0.0, 400 * DAY, Weights())
    assert scores[1] > scores[0] and eligible.all()
    assert scores[0] >= scores[1] / (1 + Weights().recency) - 1e-9  # a bounded preference
    weak = hit("weak", "I was born in Lyon", event_at=0.0, created_at=3.0, strength=0.0)
    index = UserIndex([old, weak], np.vstack([v, v]))
    scores, _, _ = fused_scores(index, v, views, 0.0, 0.0, Weights())
    assert scores[0] > scores[1] > 0


def test_index_merge_replaces_by_id_and_keeps_vectors_aligned():
    a, b = hit("a", "alpha", created_at=1.0), hit("b", "beta", created_at=2.0)
    index = UserIndex([a], unit(1, 0, 0, 0)[None])
    merged = index.merged(
        [b, hit("a", "alpha two", created_at=3.0)], np.vstack([unit(0, 1, 0, 0), unit(0, 0, 1, 0)])
    )
    assert [h.id for h in merged.hits] == ["b", "a"] and merged.record("a").text == "alpha two"
    assert merged.vectors is not None and merged.vectors[1].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert [h.id for h in merged.neighbours("b")] == ["a"]
    assert merged.search("alpha", 5)[0].id == "a"
    # BM25 tokens follow the records: kept ones reused, the replaced text tokenized anew
    assert [h.id for h in merged.search("two", 5)] == ["a"] and merged.search("beta", 5)[
        0
    ].id == "b"


def test_metadata_updates_apply_in_place_and_in_order():
    a, b = hit("a", "alpha", created_at=1.0), hit("b", "beta", created_at=2.0)
    index = UserIndex([a, b], np.vstack([unit(1, 0, 0, 0), unit(0, 1, 0, 0)]))
    updated = index.updated({"b": {"polarity": "repulsor", "symbiosis": 0.1, "gone": None}})
    assert updated is not None and updated.repulsor.tolist() == [False, True]
    assert updated.symbiosis.tolist() == [0.5, 0.1] and "gone" not in updated.record("b").metadata
    assert updated.vectors is index.vectors and updated._bm25 is index._bm25  # shared, not rebuilt
    assert index.repulsor.tolist() == [False, False]  # the old index is left as it was
    assert index.updated({"nope": {"strength": 0.2}}) is not None  # unknown ids are ignored
    assert index.updated({"a": {"session": "s2"}}) is None  # session order changes: rebuild
    # additions and updates in the order they happened; an update may name a new memory
    c = hit("c", "gamma", created_at=3.0)
    changes = [([c], unit(0, 0, 1, 0)[None]), {"c": {"dormant": True}}, {"a": {"strength": 0.3}}]
    after = apply_changes(index, changes)
    assert after is not None and [h.id for h in after.hits] == ["a", "b", "c"]
    assert after.dormant.tolist() == [False, False, True] and after.strength[0] == 0.3
    assert after.search("gamma", 3)[0].id == "c"
    assert apply_changes(index, [{"a": {"speaker": "Bo"}}, ([c], unit(0, 0, 1, 0)[None])]) is None


async def test_feedback_updates_the_loaded_index_without_reading_the_store_again(
    proxy: RunningProxy,
):
    memory = proxy.memory
    client = proxy.ollama("alice")
    await client.chat(
        model="m", messages=[{"role": "user", "content": "My cat is called Miso"}], stream=False
    )
    await proxy.flush()
    await memory.index_ready("alice")
    (mid,) = (await memory.recall(Scope("alice"), "what is my cat called?")).ids
    snapshots = 0
    real_snapshot = memory.store.snapshot

    async def counting_snapshot(user: str):  # type: ignore[no-untyped-def]
        nonlocal snapshots
        snapshots += 1
        return await real_snapshot(user)

    memory.store.snapshot = counting_snapshot  # type: ignore[method-assign]
    revised = await memory.feedback("alice", mid, 0.0)  # harmful: now a repulsor
    assert revised is not None and revised["polarity"] == "repulsor"
    await memory.index_ready("alice")
    block = await memory.recall(Scope("alice"), "what is my cat called?")
    assert block.ids == () and snapshots == 0  # no longer injected, and no reload was needed


async def test_new_memory_is_recalled_once_indexed_and_access_is_counted(
    proxy: RunningProxy, fake: FakeOllama
):
    client = proxy.ollama("alice")
    await client.chat(
        model="m", messages=[{"role": "user", "content": "My cat is called Miso"}], stream=False
    )
    await proxy.flush()
    await proxy.memory.index_ready("alice")
    block = await proxy.memory.recall(Scope("alice"), "what is my cat called?")
    assert "Miso" in block.text and len(block.ids) == 1
    # a second fact joins the loaded index without a reload from the store
    await client.chat(
        model="m", messages=[{"role": "user", "content": "My dog is called Pepper"}], stream=False
    )
    await proxy.flush()
    await proxy.memory.index_ready("alice")
    block = await proxy.memory.recall(Scope("alice"), "what is my dog called?")
    assert "Pepper" in block.text
    # access statistics (two recalls above injected Miso) reach the store off the response path
    before = time.time()
    await proxy.memory.recall(Scope("alice"), "what is my cat called?")
    await proxy.flush()
    deadline = time.monotonic() + 5
    while True:
        records = {h.text: h.metadata for h in await proxy.memory.store.all("alice")}
        miso = next(m for t, m in records.items() if "Miso" in t)
        if miso.get("access_count", 0) >= 2 or time.monotonic() > deadline:
            break
        await proxy.memory.flush()
    assert miso["access_count"] >= 2 and miso["last_access_at"] >= before - 1
    assert miso["schema_version"] == 3 and miso["strength"] == 1.0
    assert json.loads(miso["provenance"]) and miso["valence"] == 0.0


async def test_ingested_names_become_speakers_recall_can_focus_on(
    proxy: RunningProxy, tmp_path: Path
):
    from memory.ingest import drain, queue, read_messages

    lines = [
        {"role": "user", "name": "Ann", "content": "I adopted a greyhound", "session": "1"},
        {"role": "user", "name": "Bo", "content": "Ann adopted a greyhound? Nice", "session": "1"},
    ]
    messages, problems = read_messages([json.dumps(x) + "\n" for x in lines], 0.0)
    assert problems == []
    assert await drain(proxy.memory, queue(proxy.memory, messages, "carol"), progress=False)
    await proxy.memory.index_ready("carol")
    stored = {h.text: h.metadata["speaker"] for h in await proxy.memory.store.all("carol")}
    assert stored == {
        "Ann: I adopted a greyhound": "Ann",
        "Bo: Ann adopted a greyhound? Nice": "Bo",
    }
    block = await proxy.memory.recall(Scope("carol"), "What did Ann adopt?")
    assert block.text.index("Ann: I adopted") < block.text.index("Bo: Ann adopted")


async def test_a_follow_up_question_is_searched_with_the_turn_before_it(
    proxy: RunningProxy, fake: FakeOllama
):
    from openai import AsyncOpenAI

    async with AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="x") as client:
        await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "My sister Ann flew to Lisbon", "name": "Dee"}],
            user="dee",
        )
        await proxy.flush()
        embedded_before = len(fake.calls("/api/embed"))
        history = [
            {"role": "user", "content": "Let's plan around my sister Ann's trip"},
            {"role": "assistant", "content": "Sure."},
        ]
        await client.chat.completions.create(
            model="m",
            messages=[*history, {"role": "user", "content": "Where did she go?"}],
            user="dee",
        )
        await client.chat.completions.create(
            model="m",
            messages=[*history, {"role": "user", "content": "Which city has the best food?"}],
            user="dee",
        )
    queries = [json.loads(c.body)["input"] for c in fake.calls("/api/embed")[embedded_before:]]
    queries = [q[0] if isinstance(q, list) else q for q in queries]
    assert "Let's plan around my sister Ann's trip\nWhere did she go?" in queries
    assert "Which city has the best food?" in queries  # self-contained: searched alone
    records = await proxy.memory.store.all("dee")
    told = next(h for h in records if "Lisbon" in h.text)
    assert told.metadata["speaker"] == "Dee"


async def test_recaller_leaves_near_duplicates_out_and_reports_its_stages():
    from memory.config import MemoryConfig
    from memory.recall.recaller import Recaller

    hits = [
        hit("a", "I moved to Oslo in 2021", created_at=1.0),
        hit("b", "I moved to Oslo in 2021!", created_at=2.0),
        hit("c", "I work at a bakery in Oslo", created_at=3.0),
    ]
    vectors = np.vstack([unit(1, 0, 0, 0), unit(1, 0.02, 0, 0), unit(1, 1, 0, 0)])
    index = UserIndex(hits, vectors)

    async def embed(texts: list[str]) -> np.ndarray:
        return np.vstack([unit(1, 0.1, 0, 0) for _ in texts])

    async def from_store(user: str, vector: np.ndarray, k: int) -> list[MemoryHit]:
        raise AssertionError("the loaded index serves recall")

    # the recaller takes an embedder, a store and an index cache: here, stand-ins for each
    embedder, store = SimpleNamespace(embed=embed), SimpleNamespace(query=from_store)
    cache = SimpleNamespace(get=lambda user: index, coherent=lambda: True)
    config = MemoryConfig(min_similarity=0.1)
    block = await Recaller(embedder, store, config, cache).recall(  # type: ignore[arg-type]
        Scope("u"), "where did I move?"
    )
    assert len(block.ids) == 2 and {"a", "b"} & set(block.ids) and "bakery" in block.text
    assert set(block.timings_ms) == {"embed", "candidates", "rank", "pack"}
    loose = MemoryConfig(min_similarity=0.1, duplicate_similarity=1.0)
    block = await Recaller(embedder, store, loose, cache).recall(  # type: ignore[arg-type]
        Scope("u"), "where did I move?"
    )
    assert set(block.ids) == {"a", "b", "c"}


def test_memories_of_stop_words_only_get_no_lexical_scores():
    index = UserIndex([hit("a", "the", created_at=1.0), hit("b", "a", created_at=2.0)], None)
    assert index.lexical_scores("the cat").tolist() == [0.0, 0.0]
    assert index.search("cat", 3) == [] and not index.dense


async def test_memories_of_turns_still_in_the_conversation_are_not_injected_again(
    proxy: RunningProxy, fake: FakeOllama
):
    client = proxy.ollama("erin")
    fact = "My cat is called Miso"
    told = await client.chat(model="m", messages=[{"role": "user", "content": fact}])
    await proxy.flush()
    question = {"role": "user", "content": "What is my cat called?"}
    same = [{"role": "user", "content": fact}, told.message.model_dump(), question]
    await client.chat(model="m", messages=same)
    sent = fake.calls("/api/chat")[-1].json()["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]  # nothing injected
    await client.chat(model="m", messages=[question])  # a new conversation: memory brings it
    sent = fake.calls("/api/chat")[-1].json()["messages"]
    assert sent[0]["role"] == "system" and "Miso" in sent[0]["content"]
