"""Recall, injection, write-back and user isolation, driven through the proxy by real clients."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import ollama
import openai

from memory.types import Exchange, Scope
from proxy.chat import RECALLED_HEADER, STATUS_HEADER
from proxy.state import COUNTERS
from testing.fake_upstream import FakeOllama
from tests.conftest import RunningProxy, StartProxy

FACT = "My cat is called Miso and she is a grey tabby"
QUESTION = "What is my cat called?"


def ollama_client(proxy: RunningProxy, user: str, **headers: str) -> ollama.AsyncClient:
    return proxy.ollama(user, **headers)


def system_text(recorded_body: dict) -> str:
    return "\n".join(m["content"] for m in recorded_body["messages"] if m.get("role") == "system")


def chat_body(text: str) -> dict:
    return {"model": "llama3.2", "messages": [{"role": "user", "content": text}], "stream": False}


async def tell_fact(proxy: RunningProxy, user: str = "alice") -> None:
    await ollama_client(proxy, user).chat(
        model="llama3.2", messages=[{"role": "user", "content": FACT}], stream=False
    )
    await proxy.flush()


async def test_fact_told_by_alice_reaches_alices_later_request_only(
    proxy: RunningProxy, fake: FakeOllama
):
    await tell_fact(proxy, "alice")
    await ollama_client(proxy, "alice").chat(
        model="llama3.2", messages=[{"role": "user", "content": QUESTION}], stream=False
    )
    alice_sent = fake.calls("/api/chat")[-1].json()
    assert FACT in system_text(alice_sent)
    assert alice_sent["messages"][-1] == {"role": "user", "content": QUESTION}

    await ollama_client(proxy, "bob").chat(
        model="llama3.2", messages=[{"role": "user", "content": QUESTION}], stream=False
    )
    bob_sent = fake.calls("/api/chat")[-1].json()
    assert "Miso" not in the_whole(bob_sent)
    await proxy.flush()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/memory/search", params={"q": FACT, "user": "bob"}) as r:
            assert r.status == 200
            bob_hits = await r.json()
    assert bob_hits  # bob's own question was remembered for bob ...
    assert all("Miso" not in h["text"] and h["metadata"]["user"] == "bob" for h in bob_hits)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/memory/search", params={"q": FACT, "user": "alice"}) as r:
            hits = await r.json()
    assert hits[0]["text"] == f"User: {FACT}\nAssistant: Noted: {FACT}"
    assert 0.9 < hits[0]["score"] <= 1.0 + 1e-6  # cosine similarity


def the_whole(body: dict) -> str:
    return json.dumps(body)


async def test_stored_memory_keeps_scope_model_timestamps_and_metrics(proxy: RunningProxy):
    c = ollama_client(proxy, "alice", **{"X-Memory-Session": "s-42"})
    stream = await c.chat(
        model="llama3.2", messages=[{"role": "user", "content": FACT}], stream=True
    )
    assert "".join([part.message.content async for part in stream]) == f"Noted: {FACT}"
    await proxy.flush()
    (hit,) = await proxy.memory.search("alice", FACT, 1)
    meta = hit.metadata
    assert meta["user"] == "alice" and meta["session"] == "s-42"
    assert meta["model"] == "llama3.2" and meta["endpoint"] == "/api/chat"
    assert meta["eval_count"] == len(f"Noted: {FACT}".split())
    assert meta["prompt_eval_count"] > 0 and meta["total_duration"] == 123_000_000
    assert meta["done_reason"] == "stop" and meta["schema_version"] == 3
    assert meta["finished_at"] >= meta["event_at"] > 1.7e9


async def test_injection_merges_into_the_clients_system_message(
    proxy: RunningProxy, fake: FakeOllama
):
    await tell_fact(proxy)
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": QUESTION},
    ]
    await ollama_client(proxy, "alice").chat(model="llama3.2", messages=messages, stream=False)
    sent = fake.calls("/api/chat")[-1].json()["messages"]
    assert len(sent) == 4
    assert sent[0]["role"] == "system" and sent[0]["content"].startswith("You are terse.\n\n")
    assert FACT in sent[0]["content"]
    assert sent[1:] == messages[1:]


async def test_openai_client_chat_streamed_and_not_with_memory(
    proxy: RunningProxy, fake: FakeOllama
):
    await tell_fact(proxy)
    async with openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="unused") as client:
        await openai_turns(client, proxy, fake)


async def openai_turns(client: openai.AsyncOpenAI, proxy: RunningProxy, fake: FakeOllama) -> None:
    whole = await client.chat.completions.create(
        model="llama3.2", messages=[{"role": "user", "content": QUESTION}], user="alice"
    )
    assert whole.choices[0].message.content == f"Noted: {QUESTION}"
    assert FACT in system_text(fake.calls("/v1/chat/completions")[-1].json())

    stream = await client.chat.completions.create(
        model="llama3.2",
        messages=[{"role": "user", "content": "I also have a dog named Rex"}],
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Memory-User": "alice"},
    )
    text = ""
    usage = None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    assert text == "Noted: I also have a dog named Rex"
    assert usage is not None and usage.completion_tokens == 8
    await proxy.flush()
    (hit,) = await proxy.memory.search("alice", "dog named Rex", 1)
    assert "dog named Rex" in hit.text and hit.metadata["eval_count"] == 8


async def test_memory_off_header_skips_recall_and_write(proxy: RunningProxy, fake: FakeOllama):
    await tell_fact(proxy)
    written = proxy.memory.stats.written
    async with aiohttp.ClientSession() as http:
        body = chat_body(QUESTION)
        headers = {"X-Memory-User": "alice", "X-Memory": "off"}
        async with http.post(f"{proxy.url}/api/chat", json=body, headers=headers) as r:
            assert r.status == 200
            assert r.headers[STATUS_HEADER] == "off"
    await proxy.flush()
    assert "Miso" not in the_whole(fake.calls("/api/chat")[-1].json())
    assert "x-memory" not in {k.lower() for k in fake.calls("/api/chat")[-1].headers}
    assert proxy.memory.stats.written == written


async def test_response_headers_say_what_was_injected(proxy: RunningProxy):
    await tell_fact(proxy)
    async with aiohttp.ClientSession() as http:
        body = {"model": "llama3.2", "messages": [{"role": "user", "content": QUESTION}]}
        async with http.post(
            f"{proxy.url}/api/chat", json=body, headers={"X-Memory-User": "alice"}
        ) as r:
            assert r.headers[STATUS_HEADER] == "injected"
            assert r.headers[RECALLED_HEADER] == "1"
            assert r.headers["Content-Type"] == "application/x-ndjson"
            await r.read()


async def test_tool_loop_writes_user_turn_with_final_answer(proxy: RunningProxy, fake: FakeOllama):
    c = ollama_client(proxy, "alice")
    question = {"role": "user", "content": "What is the weather in Tokyo today?"}
    first = await c.chat(model="tool-model", messages=[question], stream=False)
    assert first.message.tool_calls
    await proxy.flush()
    assert proxy.memory.stats.written == 0  # a tool step is not a memory
    history = [
        question,
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [tc.model_dump() for tc in first.message.tool_calls],
        },
        {"role": "tool", "content": "sunny, 21 C", "tool_name": "get_weather"},
    ]
    final = await c.chat(model="tool-model", messages=history, stream=False)
    assert final.message.content == "The tool says sunny, 21 C."
    await proxy.flush()
    (hit,) = await proxy.memory.search("alice", "weather in Tokyo", 1)
    assert hit.text == f"User: {question['content']}\nAssistant: The tool says sunny, 21 C."


async def test_unknown_fields_reach_upstream_unchanged(proxy: RunningProxy, fake: FakeOllama):
    await tell_fact(proxy)
    body = {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": QUESTION, "images": ["aGk="]}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
        "format": {"type": "object", "properties": {"a": {"type": "number"}}},
        "options": {"temperature": 0.125, "num_ctx": 8192, "seed": 2**53 + 1},
        "think": "high",
        "keep_alive": "10m",
        "stream": False,
        "some_future_field": {"nested": [1, 2.5, None, True, "ü"]},
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{proxy.url}/api/chat", json=body, headers={"X-Memory-User": "alice"}) as r,
    ):
        assert r.status == 200 and r.headers[STATUS_HEADER] == "injected"
    sent = fake.calls("/api/chat")[-1].json()
    assert sent["messages"][0]["role"] == "system"
    assert sent["messages"][1:] == body["messages"]
    assert {k: v for k, v in sent.items() if k != "messages"} == {
        k: v for k, v in body.items() if k != "messages"
    }


async def test_fail_open_when_embedder_fails(start_proxy: StartProxy, fake: FakeOllama):
    proxy = await start_proxy()
    await tell_fact(proxy)
    fake.embed_fail = True
    async with aiohttp.ClientSession() as http:
        body = chat_body(QUESTION)
        async with http.post(
            f"{proxy.url}/api/chat", json=body, headers={"X-Memory-User": "alice"}
        ) as r:
            assert r.status == 200
            assert r.headers[STATUS_HEADER] == "skipped"
            assert (await r.json())["message"]["content"] == f"Noted: {QUESTION}"
    reply = await ollama_client(proxy, "alice").chat(
        model="llama3.2", messages=[{"role": "user", "content": "still there?"}], stream=True
    )
    assert "".join([p.message.content async for p in reply]) == "Noted: still there?"


async def test_fail_open_when_embedder_is_slow(start_proxy: StartProxy, fake: FakeOllama):
    proxy = await start_proxy(memory={"timeout_ms": 100})
    fake.embed_delay_s = 0.5
    async with aiohttp.ClientSession() as http:
        body = chat_body(QUESTION)
        async with http.post(f"{proxy.url}/api/chat", json=body) as r:
            assert r.status == 200 and r.headers[STATUS_HEADER] == "skipped"
    assert proxy.app[COUNTERS].fail_open == 1


async def test_openai_kind_embedder(start_proxy: StartProxy, fake: FakeOllama):
    proxy = await start_proxy(embedder={"kind": "openai", "url": f"{fake.url}/v1", "model": "e5"})
    assert proxy.memory.embedder.name == "openai:e5"
    await tell_fact(proxy)
    await ollama_client(proxy, "alice").chat(
        model="llama3.2", messages=[{"role": "user", "content": QUESTION}], stream=False
    )
    assert FACT in system_text(fake.calls("/api/chat")[-1].json())
    assert fake.calls("/api/embed") == []
    assert json.loads(fake.calls("/v1/embeddings")[-1].body)["model"] == "e5"


async def test_generate_raw_mode_is_left_alone(proxy: RunningProxy, fake: FakeOllama):
    await tell_fact(proxy)
    await ollama_client(proxy, "alice").generate(
        model="llama3.2", prompt="[INST] What is my cat called? [/INST]", raw=True, stream=False
    )
    sent = fake.calls("/api/generate")[-1].json()
    assert "system" not in sent and sent["raw"] is True


async def test_fail_open_when_store_is_unavailable(proxy: RunningProxy, fake: FakeOllama):
    await tell_fact(proxy)
    # bob's memory is written straight to the store: he has made no request since start-up, so
    # his index is not loaded and his recall needs the store
    await proxy.memory.write(Exchange(Scope("bob"), "/api/chat", "m", FACT, "Noted."))
    await proxy.memory.index_ready("alice")  # alice's memories are cached in process memory
    await proxy.memory.store.close()  # the store goes away under a running proxy
    async with aiohttp.ClientSession() as http:
        body = chat_body(QUESTION)
        async with http.post(
            f"{proxy.url}/api/chat", json=body, headers={"X-Memory-User": "alice"}
        ) as r:
            assert r.status == 200 and r.headers[STATUS_HEADER] == "injected"
            assert FACT in system_text(fake.calls("/api/chat")[-1].json())
        async with http.post(
            f"{proxy.url}/api/chat", json=body, headers={"X-Memory-User": "bob"}
        ) as r:
            assert r.status == 200 and r.headers[STATUS_HEADER] == "skipped"
            assert (await r.json())["message"]["content"] == f"Noted: {QUESTION}"
        async with http.get(f"{proxy.url}/healthz") as r:
            report = await r.json()
    assert report["status"] == "degraded" and not report["store"]["ok"]
    await proxy.memory.store.open()  # back, so teardown can drain the writer


async def test_write_back_retries_until_the_embedder_returns(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await start_proxy(memory={"retry_base_s": 0.05})
    fake.embed_fail = True
    await ollama_client(proxy, "alice").chat(
        model="llama3.2", messages=[{"role": "user", "content": FACT}], stream=False
    )
    for _ in range(250):  # the writer's first attempt, within 5 s on a loaded machine
        if proxy.memory.stats.failed_attempts:
            break
        await asyncio.sleep(0.02)
    assert await proxy.memory.flush(timeout_s=0.3) is False  # still failing: kept, not dropped
    assert proxy.memory.pending == 1 and proxy.memory.stats.failed_attempts >= 1
    (queued,) = [r for r in await proxy.memory.export("alice") if r["state"] == "pending"]
    assert FACT in queued["text"] and "500" in queued["metadata"]["last_error"]
    fake.embed_fail = False
    assert await proxy.memory.flush(timeout_s=10)
    assert (proxy.memory.stats.written, proxy.memory.pending) == (1, 0)
    (hit,) = await proxy.memory.search("alice", FACT, 1)
    assert FACT in hit.text


async def test_hybrid_recall_finds_a_rare_word_and_forgets_deleted(
    proxy: RunningProxy, fake: FakeOllama
):
    client = ollama_client(proxy, "alice")
    for text in ["My wifi password is Xq7-zebra-Lantern", "I like long walks", "Tea over coffee"]:
        await client.chat(model="m", messages=[{"role": "user", "content": text}], stream=False)
    await proxy.flush()
    await proxy.memory.index_ready("alice")
    block = await proxy.memory.recall(Scope("alice"), "zebra lantern?")
    assert "Xq7-zebra-Lantern" in block.text and set(block.timings_ms) == {
        "embed",
        "candidates",
        "rank",
        "pack",
    }
    (hit,) = [h for h in await proxy.memory.search("alice", "wifi password", 3) if "wifi" in h.text]
    assert await proxy.memory.forget("alice", hit.id)
    block = await proxy.memory.recall(Scope("alice"), "zebra lantern?")
    assert "zebra" not in block.text
    await proxy.memory.index_ready("alice")
    assert "zebra" not in (await proxy.memory.recall(Scope("alice"), "zebra lantern?")).text
