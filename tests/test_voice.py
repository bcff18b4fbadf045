"""Issue 14, section 5: what the user said and what an assistant answered are told apart in the
block, and the user's own statements rank above an assistant's answer when both match."""

from __future__ import annotations

import dataclasses

import numpy as np

from memory.recall.index import UserIndex
from memory.recall.query import QueryViews
from memory.recall.ranking import Weights, fused_scores
from memory.recall.render import render_block
from memory.types import MemoryHit, Scope
from memory.voice import states_something, user_voiced
from testing.fake_upstream import FakeOllama
from tests.conftest import StartProxy

INVENTED = "User: What is the capital of Australia?\nAssistant: The capital of Australia is Sydney."
STATED = "User: I moved to Canberra, the capital of Australia, in May.\nAssistant: Welcome!"


def order(index: UserIndex, q: np.ndarray, weights: Weights) -> list[str]:
    views = QueryViews("capital of Australia", "capital of Australia")
    scores, eligible, _ = fused_scores(index, q, views, -1.0, 0.0, weights)
    return [index.hits[i].id for i in np.argsort(-scores, kind="stable") if eligible[i]]


def test_the_users_statement_ranks_above_an_assistants_answer():
    hits = [
        MemoryHit("invented", INVENTED, {"session": "s1", "created_at": 1.0}),
        MemoryHit("stated", STATED, {"session": "s2", "created_at": 2.0}),
    ]
    bread = "User: I bake bread on day {} of the week\nAssistant: Lovely"
    hits += [MemoryHit(f"o{i}", bread.format(i), {"session": f"o{i}"}) for i in range(6)]
    q = np.array([1.0, 0.0, 0.0, 0.0], dtype=np.float32)
    # the invented answer is the closer match on both the vector and the words
    close = [[0.95, 0.31, 0.0, 0.0], [0.92, 0.0, 0.39, 0.0]]
    vectors = np.array(close + [[0.1, 0.2, 0.3, 0.93]] * 6, dtype=np.float32)
    index = UserIndex(hits, vectors)
    assert index.user_voiced.tolist()[:2] == [False, True]
    neutral = dataclasses.replace(Weights(), assistant_voiced=1.0)
    assert order(index, q, neutral)[:2] == ["invented", "stated"]
    assert order(index, q, Weights())[:2] == ["stated", "invented"]


def test_questions_and_requests_are_not_statements():
    assert not user_voiced(INVENTED)
    assert user_voiced(STATED)
    assert not user_voiced("User: Recommend a name for my cat\nAssistant: Try Miso.")
    assert not user_voiced("User: hi\nAssistant: Hello! How can I help?")
    assert user_voiced("Caroline: I went to a support group yesterday.")  # ingested message
    assert states_something("I'm vegetarian. What should I cook tonight?")
    assert not states_something("Can you tell me what I should cook tonight")


def test_the_block_marks_the_reply_as_an_earlier_answer():
    hits = [MemoryHit("a", INVENTED, {}), MemoryHit("b", "Ann: I paint sunsets", {})]
    text = render_block(hits, "<memories>\n{memories}\n</memories>", 200).text
    lines = text.splitlines()
    assert (
        '- User said: "What is the capital of Australia?" || Earlier reply (may be wrong): '
        '"The capital of Australia is Sydney."'
    ) in lines
    assert '- "Ann: I paint sunsets"' in lines  # a single message is shown as it was said


async def test_through_the_proxy_the_injected_block_tells_the_two_apart(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await start_proxy()
    client = proxy.ollama("alice")
    fake.scripted["Where is my cat Miso sleeping?"] = "Miso sleeps on the red sofa, I think."
    others = [f"I water the tomatoes in my garden every {day}" for day in ("Monday", "Friday")]
    others += ["My brother Rui repairs old bicycles", "I drink green tea in the mornings"]
    said = ["Where is my cat Miso sleeping?", "My cat Miso sleeps in a basket by the door"]
    for text in [*others, *said]:
        await client.chat(model="m", messages=[{"role": "user", "content": text}], stream=False)
    await proxy.flush()
    await client.chat(model="m", messages=[{"role": "user", "content": "Where does Miso sleep?"}])
    system = fake.calls("/api/chat")[-1].json()["messages"][0]["content"]
    lines = [line for line in system.splitlines() if line.startswith("- ")]
    assert any(
        'User said: "Where is my cat Miso sleeping?" || Earlier reply (may be wrong): ' in line
        for line in lines
    )
    assert any('User said: "My cat Miso sleeps in a basket by the door' in line for line in lines)
    # block lines go by date; the rank order is the block's ids
    block = await proxy.memory.recall(Scope("alice"), "Where does Miso sleep?")
    texts = {r["id"]: r["text"] for r in await proxy.memory.export("alice")}
    ranked = [texts[i] for i in block.ids]
    statement = next(i for i, t in enumerate(ranked) if "basket by the door" in t)
    question = next(i for i, t in enumerate(ranked) if "red sofa" in t)
    assert statement < question
