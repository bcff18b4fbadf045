"""Everything the proxy does not intercept passes through verbatim, streaming both ways."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import openai

from testing.fake_upstream import TAGS_BODY, FakeOllama
from tests.conftest import RunningProxy, StartProxy


async def test_tags_come_back_byte_equal(proxy: RunningProxy, fake: FakeOllama):
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        async with http.get(f"{fake.url}/api/tags") as direct:
            direct_body, direct_type = await direct.read(), direct.headers["Content-Type"]
        async with http.get(f"{proxy.url}/api/tags") as via:
            assert via.status == 200
            assert via.headers["Content-Type"] == direct_type
            assert via.headers["Content-Length"] == str(len(TAGS_BODY))
            assert await via.read() == direct_body == TAGS_BODY
    listed = await proxy.ollama(None).list()
    assert listed.models[0].model == "llama3.2:latest"


async def test_root_head_version_show_ps_and_v1_models(proxy: RunningProxy):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/") as r:
            assert r.status == 200 and await r.text() == "Ollama is running"
        async with http.head(f"{proxy.url}/") as r:
            assert r.status == 200 and await r.read() == b""
        async with http.get(f"{proxy.url}/api/version") as r:
            assert await r.json() == {"version": "0.12.6"}
        async with http.get(f"{proxy.url}/api/ps") as r:
            assert await r.json() == {"models": []}
        async with http.post(f"{proxy.url}/api/show", json={"model": "missing"}) as r:
            assert r.status == 404 and await r.json() == {"error": "model 'missing' not found"}
    shown = await proxy.ollama(None).show("llama3.2")
    assert shown.modelfile == "FROM x"
    async with openai.AsyncOpenAI(base_url=f"{proxy.url}/v1", api_key="x") as client:
        models = await client.models.list()
        assert [m.id for m in models.data] == ["llama3.2"]
        embedded = await client.embeddings.create(model="m", input=["a b", "c"])
        assert [e.index for e in embedded.data] == [1, 0]  # the fake's order, untouched


async def test_embed_passes_through_with_query_string_and_body(
    proxy: RunningProxy, fake: FakeOllama
):
    reply = await proxy.ollama(None).embed(model="nomic", input="hello world")
    assert len(reply.embeddings[0]) == 64
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{proxy.url}/api/embeddings?x=1&y=%20", json={"prompt": "a"}) as r:
            assert r.status == 200
    recorded = fake.calls("/api/embeddings")[-1]
    assert json.loads(recorded.body) == {"prompt": "a"}


async def test_long_stream_is_relayed_chunk_by_chunk(proxy: RunningProxy, fake: FakeOllama):
    """The fake holds the pull stream after its first line until the test has read that line
    through the proxy: a buffering proxy would deadlock here (and time out)."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{proxy.url}/api/pull", json={"model": "llama3.2"}) as r:
            first = await asyncio.wait_for(r.content.readline(), 5)
            assert json.loads(first) == {"status": "pulling manifest"}
            fake.pull_gate.set()
            rest = [json.loads(line) async for line in r.content if line.strip()]
    assert rest[-1] == {"status": "success"}
    assert [x.get("completed") for x in rest[:-1]] == [10, 20, 30]


async def test_hop_by_hop_headers_are_not_forwarded(proxy: RunningProxy, fake: FakeOllama):
    headers = {
        "Connection": "keep-alive, X-Secret-Hop",
        "X-Secret-Hop": "1",
        "X-End": "2",
        "Proxy-Authorization": "Basic abc",
        "TE": "trailers",
    }
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/api/version", headers=headers) as r:
            assert r.status == 200
    seen = {k.lower(): v for k, v in fake.calls("/api/version")[-1].headers.items()}
    assert seen["x-end"] == "2"
    assert not {"x-secret-hop", "proxy-authorization", "te"} & seen.keys()
    assert seen["host"] == fake.url.removeprefix("http://")


async def test_upstream_down_gives_502_with_ollama_error(start_proxy: StartProxy):
    proxy = await start_proxy(upstream={"url": "http://127.0.0.1:9"}, memory={"enabled": False})
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/api/tags") as r:
            assert r.status == 502
            assert "upstream" in (await r.json())["error"]
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(f"{proxy.url}/api/chat", json=body) as r:
            assert r.status == 502
            assert "error" in await r.json()
