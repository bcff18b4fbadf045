"""Sticky blocks (``proxy.sticky``): each turn's block is put back where it was on later turns,
so the upstream prompt is an exact extension of the previous one and a prefix cache keeps it."""

from __future__ import annotations

import itertools
from typing import Any

import anthropic
import openai
import pytest

from memory.types import Scope
from proxy.adapters import OLLAMA_CHAT
from proxy.adapters.base import Conversation
from proxy.sticky import Shown, StickyBlocks
from testing.fake_upstream import FakeOllama
from tests.conftest import RunningProxy, StartProxy

FACTS = [
    "My cat is called Miso and she is a grey tabby",
    "I live in Porto and work as a hydrologist",
    "My sister Ana plays the cello in an orchestra",
    "I am allergic to peanuts and to cats' dander, sadly",
]
QUESTIONS = ["Tell me about my cat Miso", "Where do I live and work?", "Who plays the cello?"]


async def seed(proxy: RunningProxy, user: str = "alice") -> None:
    for fact in FACTS:
        await proxy.ollama(user).chat(
            model="llama3.2", messages=[{"role": "user", "content": fact}], stream=False
        )
    await proxy.flush()


async def play(
    proxy: RunningProxy, fake: FakeOllama, user: str = "alice", model: str = "llama3.2"
) -> list[list[dict[str, Any]]]:
    """A chat client: each turn resends the history plus the reply; returns what the upstream
    received per turn."""
    history: list[dict[str, Any]] = [{"role": "system", "content": "Be brief."}]
    sent: list[list[dict[str, Any]]] = []
    for question in QUESTIONS:
        history.append({"role": "user", "content": question})
        reply = await proxy.ollama(user).chat(model=model, messages=history, stream=False)
        sent.append(fake.calls("/api/chat")[-1].json()["messages"])
        history.append({"role": "assistant", "content": reply.message.content})
    return sent


def memory_lines(content: str) -> set[str]:
    return {line for line in content.splitlines() if line.startswith("- ")}


@pytest.mark.parametrize("placement", ["user", "before_user"])
async def test_each_upstream_prompt_extends_the_previous_one(
    start_proxy: StartProxy, fake: FakeOllama, placement: str
):
    proxy = await start_proxy(memory={"placement": placement})
    await seed(proxy)
    sent = await play(proxy, fake)
    blocks = [m["content"] for m in sent[0] if "<memories>" in str(m["content"])]
    assert blocks, "the first turn got a block"
    for before, after in itertools.pairwise(sent):
        assert after[: len(before)] == before  # byte for byte, earlier blocks included
        assert after[len(before)]["role"] == "assistant"
    # each memory is shown once per conversation
    shown = [memory_lines(str(m["content"])) for m in sent[-1] if m["role"] in ("user", "system")]
    lines = [line for group in shown for line in group]
    assert len(lines) == len(set(lines)) and lines


async def test_without_sticky_blocks_earlier_turns_are_sent_as_the_client_sent_them(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await start_proxy(memory={"placement": "user", "sticky_blocks": 0})
    await seed(proxy)
    sent = await play(proxy, fake)
    assert sent[1][:2] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": QUESTIONS[0]},
    ]
    assert "<memories>" in sent[1][3]["content"]


async def test_another_user_with_the_same_conversation_gets_none_of_the_blocks(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await start_proxy(memory={"placement": "user"})
    await seed(proxy)
    await play(proxy, fake)
    sent = await play(proxy, fake, user="bob")  # bob has no memories
    assert all("<memories>" not in str(m["content"]) for turn in sent for m in turn)


async def test_a_tool_step_reuses_its_turns_block(start_proxy: StartProxy, fake: FakeOllama):
    proxy = await start_proxy(memory={"placement": "user"})
    await seed(proxy)
    turn = [{"role": "user", "content": "What is the weather where my cat Miso lives?"}]
    first = await proxy.ollama("alice").chat(model="tool-model", messages=turn, stream=False)
    assert first.message.tool_calls
    calls = [{"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}]
    follow = [
        *turn,
        {"role": "assistant", "content": "", "tool_calls": calls},
        {"role": "tool", "content": "sunny"},
    ]
    await proxy.ollama("alice").chat(model="tool-model", messages=follow, stream=False)
    a, b = (call.json()["messages"] for call in fake.calls("/api/chat")[-2:])
    assert "<memories>" in a[0]["content"] and b[0] == a[0]  # same block, same prefix


def test_lru_keeps_the_most_recently_used_blocks():
    blocks = StickyBlocks(2)
    scope = Scope("alice", "chat-1")
    for digest in ("a", "b"):
        blocks.put(scope, digest, Shown(f"block {digest}", (digest,), 3))
    assert blocks.get(scope, "a") is not None  # "a" is now the most recent
    blocks.put(scope, "c", Shown("block c", ("c",), 3))
    assert len(blocks) == 2 and blocks.get(scope, "b") is None
    assert blocks.get(Scope("alice", "chat-2"), "a") is None  # sessions are apart
    shown = blocks.get(scope, "a")
    assert shown is not None and shown.text == "block a"


def test_the_next_prompt_is_rebuilt_from_the_previous_one_within_the_budget():
    blocks, scope = StickyBlocks(100), Scope("alice")

    def earlier(*digests: str, continued: bool = False) -> dict[int, str]:
        found = blocks.earlier(scope, Conversation(digests, continued), max_tokens=15)
        return {turn: shown.text for turn, shown in found.blocks.items()}

    assert earlier("d0") == {}
    blocks.put(scope, "d0", Shown("A", ("a",), 10))
    assert earlier("d0", "d1") == {0: "A"}
    blocks.put(scope, "d1", Shown("B", ("b",), 10, (0,)))
    assert earlier("d0", "d1", "d2") == {}  # A and B are 20 tokens: start over
    blocks.put(scope, "d2", Shown("C", ("c",), 10, ()))
    assert earlier("d0", "d1", "d2", "d3") == {2: "C"}  # what turn 3's prompt had, plus C
    assert earlier("d0", "d1", "d2", continued=True) == {}  # turn 3's own prompt again
    assert earlier("x0", "x1", "d2") == {}  # another conversation shares nothing
    # a replica that never saw the previous turn re-inserts every block it has
    fresh = StickyBlocks(100)
    fresh.put(scope, "d0", Shown("A", ("a",), 5))
    found = fresh.earlier(scope, Conversation(("d0", "d1", "d2"), False), max_tokens=15)
    assert {t: s.text for t, s in found.blocks.items()} == {0: "A"}


def test_digests_change_with_any_earlier_message():
    body = {
        "messages": [
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"},
        ]
    }
    edited = {"messages": [*body["messages"][:1], {"role": "assistant", "content": "B"}]}
    edited["messages"].append(body["messages"][2])
    one, two = OLLAMA_CHAT.conversation(body), OLLAMA_CHAT.conversation(edited)
    assert one.digests[0] == two.digests[0] and one.digests[1] != two.digests[1]
    assert not one.continued


async def test_claude_code_style_chat_keeps_its_prefix_through_the_anthropic_route(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await start_proxy(memory={"placement": "user"})
    await seed(proxy)
    client = anthropic.AsyncAnthropic(
        base_url=proxy.url, api_key="x", default_headers={"X-Memory-User": "alice"}
    )
    history: list[dict[str, Any]] = []
    sent = []
    async with client:
        for question in QUESTIONS:
            history.append({"role": "user", "content": [{"type": "text", "text": question}]})
            reply = await client.messages.create(
                model="llama3.2", max_tokens=64, system="Be brief.", messages=history
            )
            sent.append(fake.calls("/v1/messages")[-1].json()["messages"])
            blocks = [b.model_dump() for b in reply.content]
            history.append({"role": "assistant", "content": blocks})
    assert "<memories>" in sent[0][0]["content"][0]["text"]
    for before, after in itertools.pairwise(sent):
        assert after[: len(before)] == before


async def test_codex_style_chat_keeps_its_prefix_through_the_responses_route(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await start_proxy(memory={"placement": "before_user"})
    await seed(proxy)
    client = openai.AsyncOpenAI(
        base_url=f"{proxy.url}/v1", api_key="x", default_headers={"X-Memory-User": "alice"}
    )
    items: list[dict[str, Any]] = []
    sent = []
    async with client:
        for question in QUESTIONS:
            items.append({"role": "user", "content": [{"type": "input_text", "text": question}]})
            reply = await client.responses.create(
                model="llama3.2",
                instructions="Be brief.",
                input=items,  # type: ignore[arg-type]
            )
            sent.append(fake.calls("/v1/responses")[-1].json()["input"])
            items.append({"role": "assistant", "content": reply.output_text})
    assert [i["role"] for i in sent[0]] == ["system", "user"]
    for before, after in itertools.pairwise(sent):
        assert after[: len(before)] == before
