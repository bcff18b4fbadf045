"""The official ``ollama`` client through the proxy: chat and generate, streamed and not."""

from __future__ import annotations

import ollama
import pytest

from testing.fake_upstream import FakeOllama
from tests.conftest import RunningProxy


def client(proxy: RunningProxy, user: str = "alice", **headers: str) -> ollama.AsyncClient:
    return proxy.ollama(user, **headers)


async def test_chat_non_streaming_returns_upstream_answer(proxy: RunningProxy, fake: FakeOllama):
    reply = await client(proxy).chat(
        model="llama3.2", messages=[{"role": "user", "content": "hello there"}], stream=False
    )
    assert reply.message.content == "Noted: hello there"
    assert reply.eval_count == 3
    assert fake.calls("/api/chat")[-1].json()["messages"][-1]["content"] == "hello there"


async def test_chat_streaming_relays_every_chunk(proxy: RunningProxy):
    parts = []
    final = None
    stream = await client(proxy).chat(
        model="llama3.2", messages=[{"role": "user", "content": "one two three"}], stream=True
    )
    async for part in stream:
        parts.append(part.message.content)
        final = part
    assert "".join(parts) == "Noted: one two three"
    assert len(parts) == 5  # four words and the final chunk
    assert final is not None and final.done and final.done_reason == "stop"


async def test_generate_streamed_and_not(proxy: RunningProxy):
    c = client(proxy)
    whole = await c.generate(model="llama3.2", prompt="why is the sky blue", stream=False)
    assert whole.response == "Noted: why is the sky blue"
    pieces = [
        p.response async for p in await c.generate(model="llama3.2", prompt="hi", stream=True)
    ]
    assert "".join(pieces) == "Noted: hi"


async def test_generate_gets_memories_through_system(proxy: RunningProxy, fake: FakeOllama):
    c = client(proxy)
    await c.generate(model="llama3.2", prompt="my favourite colour is teal", stream=False)
    await proxy.flush()
    await c.generate(model="llama3.2", prompt="what is my favourite colour", stream=False)
    sent = fake.calls("/api/generate")[-1].json()
    assert "my favourite colour is teal" in sent["system"]
    assert sent["prompt"] == "what is my favourite colour"


async def test_upstream_error_status_and_message_reach_client(proxy: RunningProxy):
    with pytest.raises(ollama.ResponseError) as caught:
        await client(proxy).chat(model="missing", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 404
    assert "model 'missing' not found" in caught.value.error


async def test_midstream_error_is_relayed_and_not_remembered(proxy: RunningProxy):
    c = client(proxy)
    stream = await c.chat(
        model="midstream-error",
        messages=[{"role": "user", "content": "tell me about volcanoes please"}],
        stream=True,
    )
    with pytest.raises(ollama.ResponseError, match="error was encountered"):
        async for _ in stream:
            pass
    await proxy.flush()
    assert await proxy.memory.search("alice", "volcanoes", 5) == []
    assert proxy.memory.stats.skipped == 1


async def test_model_load_with_empty_messages_skips_memory(proxy: RunningProxy, fake: FakeOllama):
    embeds_before = len(fake.calls("/api/embed"))
    reply = await client(proxy).chat(model="llama3.2", messages=[])
    assert reply.done_reason == "load"
    await proxy.flush()
    assert len(fake.calls("/api/embed")) == embeds_before  # no recall, no write-back
    assert fake.calls("/api/chat")[-1].json()["messages"] == []
    assert proxy.memory.stats.written == 0


async def test_model_errors_are_passed_back_intact(proxy: RunningProxy):
    with pytest.raises(ollama.ResponseError) as caught:
        await client(proxy).chat(model="overflow", messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 400
    assert caught.value.error == "the input length exceeds the context length"


async def test_upstream_dropping_mid_stream_ends_with_an_error_line(proxy: RunningProxy):
    stream = await client(proxy).chat(
        model="disconnect",
        messages=[{"role": "user", "content": "a long story about volcanoes"}],
        stream=True,
    )
    received = []
    with pytest.raises(ollama.ResponseError, match="upstream connection lost"):
        async for part in stream:
            received.append(part.message.content)
    assert received == ["Noted: ", "a "]
    await proxy.flush()
    assert proxy.memory.stats.written == 0
