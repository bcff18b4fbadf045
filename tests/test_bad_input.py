"""Bad input gets a 4xx with an Ollama-style error body, and the proxy keeps serving."""

from __future__ import annotations

import aiohttp
import pytest

from testing.fake_upstream import FakeOllama
from tests.conftest import RunningProxy, StartProxy

CASES = [
    ("/api/chat", b'{"model": "m", "messages": [', "invalid JSON"),
    ("/api/chat", b"[1, 2]", "must be a JSON object"),
    ("/api/chat", b'{"model": "m", "messages": "hi"}', "messages"),
    ("/api/chat", b'{"model": "m", "messages": [{"role": "user", "content": 5}]}', "content"),
    ("/api/chat", b'{"messages": []}', "model"),
    ("/api/generate", b'{"model": "m", "prompt": ["x"]}', "prompt"),
    ("/v1/chat/completions", b'{"model": "m"}', "messages"),
    ("/api/chat", b'{"model": "\xff\xfe"}', "UTF-8"),
]


@pytest.mark.parametrize(("path", "raw", "mentions"), CASES)
async def test_bad_bodies_get_400_json(
    proxy: RunningProxy, fake: FakeOllama, path: str, raw: bytes, mentions: str
):
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{proxy.url}{path}", data=raw) as r:
            assert r.status == 400
            assert r.headers["Content-Type"].startswith("application/json")
            error = (await r.json())["error"]
            assert mentions in error
        assert fake.calls(path) == []  # nothing bad was forwarded
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": "still ok?"}],
            "stream": False,
        }
        async with http.post(f"{proxy.url}/api/chat", json=body) as r:
            assert r.status == 200


async def test_oversized_body_gets_413_and_proxy_keeps_serving(start_proxy: StartProxy):
    proxy = await start_proxy(limits={"max_body_bytes": 4096})
    big = {"model": "m", "messages": [{"role": "user", "content": "x" * 10_000}]}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{proxy.url}/api/chat", json=big) as r:
            assert r.status == 413
            assert "exceeds 4096" in (await r.json())["error"]

        async def chunks():
            yield b'{"model": "m", "messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"y" * 1000
            yield b'"}]}'

        async with http.post(f"{proxy.url}/api/chat", data=chunks()) as r:  # no Content-Length
            assert r.status == 413
            assert "error" in await r.json()
        small = {"model": "m", "messages": [{"role": "user", "content": "ok"}], "stream": False}
        async with http.post(f"{proxy.url}/api/chat", json=small) as r:
            assert r.status == 200


async def test_bad_admin_parameters(proxy: RunningProxy):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/memory/search") as r:
            assert r.status == 400 and "'q'" in (await r.json())["error"]
        async with http.get(f"{proxy.url}/memory/search", params={"q": "x", "k": "many"}) as r:
            assert r.status == 400 and "'k'" in (await r.json())["error"]
        async with http.get(f"{proxy.url}/memory/search", params={"q": "x", "k": "0"}) as r:
            assert r.status == 400
        async with http.get(f"{proxy.url}/memory/does-not-exist") as r:
            assert r.status == 404 and "not found" in (await r.json())["error"]


async def test_enormous_message_is_forwarded_whole_and_embedded_cut(
    proxy: RunningProxy, fake: FakeOllama
):
    huge = "the quick brown fox " * 50_000  # 1 MB
    body = {"model": "m", "messages": [{"role": "user", "content": huge}], "stream": False}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{proxy.url}/api/chat", json=body) as r:
            assert r.status == 200
    assert fake.calls("/api/chat")[-1].json()["messages"][-1]["content"] == huge
    await proxy.flush()
    embedded = [len(t) for r in fake.calls("/api/embed") for t in r.json()["input"]]
    assert max(embedded) == 8000  # embedder.max_chars


async def test_empty_body_and_empty_user_message(proxy: RunningProxy, fake: FakeOllama):
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{proxy.url}/api/chat", data=b"") as r:
            assert r.status == 400 and "invalid JSON" in (await r.json())["error"]
        body = {"model": "m", "messages": [{"role": "user", "content": ""}], "stream": False}
        async with http.post(f"{proxy.url}/api/chat", json=body) as r:
            assert r.status == 200  # forwarded as the upstream would take it; nothing recalled
    await proxy.flush()
    assert proxy.memory.stats.queued == 0
