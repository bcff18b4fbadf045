"""The shared tier: resonance across users, contradiction, bandwidth, privacy."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import ollama
import pytest

from memory.config import MetabolismConfig
from memory.metabolism.resonance import resonate, user_tag
from memory.store.chroma import SHARED
from memory.types import Exchange, MemoryHit, Scope
from proxy.auth import token_hash
from testing.fake_upstream import FakeOllama
from tests.conftest import RunningProxy, StartProxy

EIGHT = "The Harbour Library on Quay Street closes at 8pm on Sundays and opens at noon"
SIX = "The Harbour Library on Quay Street closes at 6pm on Sundays and opens at noon"
PERSONAL = "I live at number 12 on Rua Augusta with my two cats and a parrot"
QUESTION = "When does the Harbour Library on Quay Street close on Sundays?"


USERS = ("alice", "bob", "carol", "dave", "erin", "frank", "gina", "hank")


def token(user: str) -> str:
    return f"{user}-token-for-the-shared-tier-tests"


async def start_shared(start_proxy: StartProxy, tmp_path: Path) -> RunningProxy:
    """A proxy keeping the shared tier; the shared tier needs authenticated users."""
    path = tmp_path / "tokens"
    path.write_text("".join(f"{u} {token_hash(token(u))}\n" for u in USERS))
    return await start_proxy(metabolism={"shared": True}, auth={"tokens_file": str(path)})


async def say(proxy: RunningProxy, user: str, text: str) -> None:
    await proxy.ollama(None, Authorization=f"Bearer {token(user)}").chat(
        model="llama3.2", messages=[{"role": "user", "content": text}], stream=False
    )


def injected(fake: FakeOllama) -> str:
    body = fake.calls("/api/chat")[-1].json()
    return "\n".join(m["content"] for m in body["messages"] if m["role"] == "system")


async def test_what_several_users_confirm_is_shared_and_what_they_contradict_is_dropped(
    start_proxy: StartProxy, fake: FakeOllama, tmp_path: Path
):
    proxy = await start_shared(start_proxy, tmp_path)
    for user in ("alice", "bob", "carol"):
        await say(proxy, user, EIGHT)
        await say(proxy, user, PERSONAL)
    await say(proxy, "dave", "Tell me a fun fact about octopus hearts please")
    await proxy.flush()
    await say(proxy, "dave", QUESTION)
    assert "8pm" not in injected(fake)  # nothing shared before the sleep cycle

    await proxy.memory.metabolize()
    resonance = proxy.memory.resonance
    assert resonance is not None and resonance.promoted == 1
    (shared,) = await proxy.memory.store.all(SHARED)
    assert "8pm" in shared.text and shared.metadata["confirmations"] == 3
    stored = json.dumps(shared.metadata)
    assert not any(name in stored for name in ("alice", "bob", "carol"))  # tags only
    assert user_tag("alice") in json.loads(shared.metadata["supporters"])
    await say(proxy, "dave", QUESTION)
    assert f'(shared knowledge) User said: "{EIGHT}"' in injected(fake)
    await say(proxy, "dave", "Where do the people here live, which street?")
    assert "Rua Augusta" not in injected(fake)  # first-person facts are never shared
    await say(proxy, "alice", QUESTION)
    text = injected(fake)  # her own memory, not a shared copy of it
    assert EIGHT in text and "(shared knowledge)" not in text

    for user in ("erin", "frank", "gina", "hank"):  # more users say otherwise
        await say(proxy, user, SIX)
    await proxy.flush()
    await proxy.memory.metabolize()
    resonance = proxy.memory.resonance
    assert resonance.dropped_contradicted == 1 and resonance.promoted == 1
    await say(proxy, "dave", QUESTION)
    text = injected(fake)
    assert f'(shared knowledge) User said: "{SIX}"' in text and "8pm" not in text
    kept = {h.text: h.metadata for h in await proxy.memory.store.all(SHARED)}
    assert kept[f"User: {EIGHT}\nAssistant: Noted: {EIGHT}"]["dropped"] == "contradicted"

    (six,) = [h for h in await proxy.memory.store.all(SHARED) if "6pm" in h.text]
    assert six.record.confirmations == 4
    for user in ("erin", "frank"):  # users forget theirs: their support goes with it, now
        (mine,) = [h for h in await proxy.memory.store.all(user) if "6pm" in h.text]
        erased = await proxy.memory.forget(user, mine.id)
        assert erased is not None and erased.memories == [mine.id]
        if user == "erin" and mine.text != six.text:  # erin's words were not the medoid
            assert erased.shared_updated == [six.id]
            (left,) = [h for h in await proxy.memory.store.all(SHARED) if "6pm" in h.text]
            assert user_tag("erin") not in left.record.supporters
            assert left.record.confirmations == 3
    # two supporters are left (gina, hank), fewer than shared_min_users: the copy is gone
    assert [h for h in await proxy.memory.store.all(SHARED) if "6pm" in h.text] == []
    await say(proxy, "dave", QUESTION)
    assert "6pm" not in injected(fake)  # at once, not after the next sleep cycle
    await proxy.memory.metabolize()
    assert proxy.memory.resonance.promoted == 0  # two users are not enough to share again


def test_promotion_to_the_shared_tier_is_bandwidth_limited():
    config = MetabolismConfig(shared=True, shared_bandwidth=0.01)
    rng = np.random.default_rng(0)
    memories = []
    for c in range(5):
        vector = rng.normal(size=16).astype(np.float32)
        vector /= np.linalg.norm(vector)
        text = f"The museum number {c} opens at {c + 8} in the morning on weekdays"
        for u in range(3):
            meta = {"tier": "user", "polarity": "attractor", "symbiosis": 0.8, "auth": "token"}
            memories.append((f"user{u}", MemoryHit(f"{c}-{u}", text, meta), vector))
    shared: list[MemoryHit] = []
    vectors = np.zeros((0, 16), np.float32)
    promoted = []
    for _ in range(5):
        new, updates, report = resonate(memories, shared, vectors, config, now=1.0)
        assert report.candidates == 15 and len(new) == 1  # ceil(1 % of 15) = 1 per cycle
        assert all(u["dropped"] == "" for u in updates.values())
        for sid, text, vector, meta in new:
            shared.append(MemoryHit(sid, text, meta))
            vectors = np.vstack([vectors, vector[None, :]])
            promoted.append(text)
    assert len(set(promoted)) == 5
    new, _, report = resonate(memories, shared, vectors, config, now=1.0)
    assert not new and report.confirmed == 5


def test_repulsors_contradict_and_personal_or_session_memories_never_confirm():
    config = MetabolismConfig(shared=True)
    v = np.ones(4, np.float32) / 2.0
    text = "The ferry to the island leaves from pier 4 every hour on the hour"
    ok = {"tier": "user", "polarity": "attractor", "auth": "jwt"}
    memories = [
        ("a", MemoryHit("1", text, ok), v),
        ("b", MemoryHit("2", text, ok), v),
        ("c", MemoryHit("3", text, {**ok, "tier": "session"}), v),
        ("d", MemoryHit("4", "I think " + text, ok), v),
    ]
    new, _, _ = resonate(memories, [], np.zeros((0, 4), np.float32), config, now=1.0)
    assert not new  # a session memory and a first-person one do not count: 2 < 3
    memories[2] = ("c", MemoryHit("3", text, ok), v)
    new, _, _ = resonate(memories, [], np.zeros((0, 4), np.float32), config, now=1.0)
    assert len(new) == 1
    harmful = [(u, MemoryHit(f"r{u}", text, {**ok, "polarity": "repulsor"}), v) for u in "xyz"]
    new, _, report = resonate(memories + harmful, [], np.zeros((0, 4), np.float32), config, 1.0)
    assert not new and report.candidates == 3  # three users judged the like of it harmful


async def test_invented_users_cannot_fill_the_shared_tier(
    start_proxy: StartProxy, fake: FakeOllama, tmp_path: Path
):
    proxy = await start_shared(start_proxy, tmp_path)
    with pytest.raises(ollama.ResponseError) as refused:  # a claim alone is refused now
        await proxy.ollama("sybil1").chat(
            model="llama3.2", messages=[{"role": "user", "content": EIGHT}]
        )
    assert refused.value.status_code == 401
    now = time.time()
    for i in range(1, 5):  # what a proxy before auth (or an import) stored: claimed names
        scope = Scope(f"sybil{i}")
        assert scope.auth == "claimed"
        proxy.memory.observe(
            Exchange(scope, "/api/chat", "llama3.2", EIGHT, f"Noted: {EIGHT}", started_at=now)
        )
    await proxy.flush()
    assert all(h.metadata["auth"] == "claimed" for h in await proxy.memory.store.all("sybil1"))
    await proxy.memory.metabolize()
    assert proxy.memory.resonance is not None and proxy.memory.resonance.promoted == 0
    assert not await proxy.memory.store.all(SHARED)

    for user in ("alice", "bob", "carol"):  # three proven users are enough
        await say(proxy, user, EIGHT)
    await proxy.flush()
    await proxy.memory.metabolize()
    assert proxy.memory.resonance.promoted == 1
    (shared,) = await proxy.memory.store.all(SHARED)
    assert shared.metadata["confirmations"] == 3  # the sybils are not among them
    assert user_tag("sybil1") not in json.loads(shared.metadata["supporters"])
