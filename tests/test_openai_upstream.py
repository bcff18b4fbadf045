"""``upstream.kind: openai``: Ollama clients through the proxy to an OpenAI-compatible server.

The fake serves ``/v1/*`` as Ollama's OpenAI compatibility layer does; every test checks that
the native ``/api/*`` endpoint was never called upstream, so the translation did the work.
"""

from __future__ import annotations

import json

import aiohttp
import ollama
import pytest

from proxy.config import Config
from testing.fake_upstream import FakeOllama, embed_text
from tests.conftest import RunningProxy, StartProxy

FACT = "My cat is called Miso and she likes tuna"


@pytest.fixture
async def proxy(start_proxy: StartProxy) -> RunningProxy:
    """The proxy in front of the fake, spoken to as an OpenAI-compatible server."""
    return await start_proxy(upstream={"kind": "openai"}, embedder={"kind": "openai"})


def v1_bodies(fake: FakeOllama) -> list[dict]:
    return [json.loads(c.body) for c in fake.calls("/v1/chat/completions")]


async def test_chat_streamed_and_not_with_memory_and_real_counts(
    proxy: RunningProxy, fake: FakeOllama
):
    client = proxy.ollama("alice")
    told = await client.chat(
        model="llama3.2", messages=[{"role": "user", "content": FACT}], stream=False
    )
    assert told.message.content == f"Noted: {FACT}" and told.done
    assert told.eval_count == len(told.message.content.split()) and told.prompt_eval_count
    await proxy.flush()
    parts = []
    async for part in await client.chat(
        model="llama3.2",
        messages=[{"role": "user", "content": "What is my cat called?"}],
        stream=True,
    ):
        parts.append(part)
    assert "".join(p.message.content for p in parts) == "Noted: What is my cat called?"
    final = parts[-1]
    assert final.done and final.done_reason == "stop" and final.eval_count == 6
    assert final.prompt_eval_count and final.total_duration and final.total_duration > 0
    sent = v1_bodies(fake)[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["messages"][0]["role"] == "system" and "Miso" in sent["messages"][0]["content"]
    assert fake.calls("/api/chat") == [] and fake.calls("/api/embed") == []
    stored = {h.text: h.metadata for h in await proxy.memory.store.all("alice")}
    assert stored[f"User: {FACT}\nAssistant: Noted: {FACT}"]["eval_count"] == told.eval_count


async def test_generate_options_format_and_unsupported_fields(
    proxy: RunningProxy, fake: FakeOllama
):
    async with aiohttp.ClientSession() as http:
        body = {
            "model": "llama3.2",
            "prompt": "Name a colour",
            "system": "Be brief.",
            "stream": False,
            "format": {"type": "object", "properties": {"c": {"type": "string"}}},
            "options": {"temperature": 0.2, "num_predict": 9, "num_ctx": 8192},
            "keep_alive": "5m",
            "think": True,
        }
        async with http.post(f"{proxy.url}/api/generate", json=body) as r:
            assert r.status == 200 and r.content_type == "application/json"
            assert r.headers["X-Memory-Unsupported"] == "options.num_ctx, think"
            reply = await r.json()
    assert reply["response"] == fake.structured and reply["done"] is True
    sent = v1_bodies(fake)[-1]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][-1] == {"role": "user", "content": "Name a colour"}
    assert (sent["temperature"], sent["max_tokens"]) == (0.2, 9)
    assert sent["response_format"]["json_schema"]["schema"] == body["format"]
    assert "num_ctx" not in sent and "keep_alive" not in sent and "think" not in sent
    assert fake.calls("/api/generate") == []


async def test_a_format_schema_goes_as_json_object_to_a_server_that_refuses_json_schema(
    proxy: RunningProxy, fake: FakeOllama
):
    fake.refuse_json_schema = True  # as llama-cpp-python's server does
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    client = proxy.ollama("ines")
    first = await client.chat(
        model="llama3.2", messages=[{"role": "user", "content": "A city?"}], format=schema
    )
    assert first.message.content == fake.structured
    sent = [b["response_format"] for b in v1_bodies(fake)]
    assert sent == [
        {
            "type": "json_schema",
            "json_schema": {"name": "format", "schema": schema, "strict": True},
        },
        {"type": "json_object", "schema": schema},
    ]
    parts = [
        p
        async for p in await client.chat(
            model="llama3.2",
            messages=[{"role": "user", "content": "Another city?"}],
            format=schema,
            stream=True,
        )
    ]
    assert "".join(p.message.content for p in parts) == fake.structured and parts[-1].done
    assert len(v1_bodies(fake)) == 3  # learnt: no second refusal
    assert v1_bodies(fake)[-1]["response_format"] == {"type": "json_object", "schema": schema}
    await proxy.flush()
    stored = sorted(h.text for h in await proxy.memory.store.all("ines"))
    assert stored == [  # one memory per answered request, none for the refused attempt
        f"User: A city?\nAssistant: {fake.structured}",
        f"User: Another city?\nAssistant: {fake.structured}",
    ]
    # an error that is not about the format still comes back as it is
    with pytest.raises(ollama.ResponseError) as missing:
        await client.chat(model="missing", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.status_code == 404 and "not found" in missing.value.error


async def test_generate_streams_ndjson(proxy: RunningProxy):
    chunks = [
        c
        async for c in await proxy.ollama(None).generate(
            model="llama3.2", prompt="tell me a story", stream=True
        )
    ]
    assert "".join(c.response for c in chunks) == "Noted: tell me a story"
    assert chunks[-1].done and not any(c.done for c in chunks[:-1])


async def test_tool_calls_come_back_in_ollama_shape(proxy: RunningProxy, fake: FakeOllama):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    for stream in (False, True):
        messages = [{"role": "user", "content": "Weather in Tokyo?"}]
        if stream:
            parts = [
                p
                async for p in await proxy.ollama(None).chat(
                    model="tool-model", messages=messages, tools=tools, stream=True
                )
            ]
            message = parts[-1].message
        else:
            reply = await proxy.ollama(None).chat(
                model="tool-model", messages=messages, tools=tools, stream=False
            )
            message = reply.message
        assert message.tool_calls is not None
        (call,) = message.tool_calls
        assert call.function.name == "get_weather" and call.function.arguments == {"city": "Tokyo"}
        assert v1_bodies(fake)[-1]["tools"][0]["function"]["name"] == "get_weather"
    # the tool result goes back as an OpenAI tool message answering the call
    history = [
        {"role": "user", "content": "Weather in Tokyo?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}],
        },
        {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
    ]
    reply = await proxy.ollama(None).chat(model="tool-model", messages=history, stream=False)
    assert reply.message.content == "The tool says sunny."
    sent = v1_bodies(fake)[-1]["messages"]
    assert sent[1]["tool_calls"][0]["function"]["arguments"] == '{"city": "Tokyo"}'
    assert sent[2]["tool_call_id"] == sent[1]["tool_calls"][0]["id"]


async def test_models_embeddings_version_and_unsupported_endpoints(
    proxy: RunningProxy, fake: FakeOllama
):
    client = proxy.ollama(None)
    listed = await client.list()
    assert [m.model for m in listed.models] == ["llama3.2"]
    embedded = await client.embed(model="e5", input=["hello world", "good night"])
    assert [list(v) for v in embedded.embeddings] == [
        pytest.approx(embed_text(t, 64)) for t in ("hello world", "good night")
    ]
    assert fake.calls("/api/tags") == [] and fake.calls("/api/embed") == []
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/api/version") as r:
            assert r.status == 200 and (await r.json())["version"]
        async with http.post(f"{proxy.url}/api/pull", json={"model": "x"}) as r:
            assert r.status == 501
            assert "OpenAI-compatible" in (await r.json())["error"]
        async with http.post(f"{proxy.url}/api/embed", json={"input": "x"}) as r:
            assert r.status == 400 and (await r.json())["error"] == "model is required"
    assert fake.calls("/api/pull") == []


async def test_upstream_errors_pass_back_as_ollama_errors(proxy: RunningProxy):
    client = proxy.ollama("alice")
    for model, status, text in (
        ("missing", 404, "model 'missing' not found"),
        ("overflow", 400, "the input length exceeds the context length"),
    ):
        for stream in (False, True):
            with pytest.raises(ollama.ResponseError) as caught:
                reply = await client.chat(
                    model=model, messages=[{"role": "user", "content": "hi"}], stream=stream
                )
                if stream:
                    async for _ in reply:  # type: ignore[union-attr]
                        pass
            assert caught.value.status_code == status and caught.value.error == text
    stream = await client.chat(
        model="midstream-error", messages=[{"role": "user", "content": "volcanoes"}], stream=True
    )
    with pytest.raises(ollama.ResponseError, match="model crashed"):
        async for _ in stream:
            pass
    await proxy.flush()
    assert await proxy.memory.store.all("alice") == []


def test_an_openai_upstream_embeds_through_v1_unless_told_otherwise():
    assert Config.model_validate({"upstream": {"kind": "openai"}}).embedder.kind == "openai"
    local = {"upstream": {"kind": "openai"}, "embedder": {"kind": "sentence-transformers"}}
    assert Config.model_validate(local).embedder.kind == "sentence-transformers"
    assert Config.model_validate({}).embedder.kind == "ollama"
