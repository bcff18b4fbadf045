"""Bad input gets a 4xx with an Ollama-style error body, and the proxy keeps serving."""

from __future__ import annotations

import asyncio
import gzip
import json
import time

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


async def raw_exchange(url: str, data: bytes, wait_s: float = 5.0) -> bytes:
    """Send ``data`` on a fresh socket and read until the server closes it (or ``wait_s``)."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(data)
    await writer.drain()
    out = b""
    try:
        async with asyncio.timeout(wait_s):
            while chunk := await reader.read(65536):
                out += chunk
    finally:
        writer.close()
    return out


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    length = f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return head.encode() + extra + length.encode() + body


def split_response(raw: bytes) -> tuple[int, bytes]:
    """Status and body of one raw response; fails if a second status line is in it."""
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"HTTP/1." not in body, "a second response was written into the body"
    return int(head.split(b" ")[1]), body


CHAT = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
RAW_CASES = [
    # a Latin-1 byte in the identity header: aiohttp hands it on as a surrogate escape
    ("/api/chat", CHAT, b"X-Memory-User: al\xefce\r\n", "X-Memory-User' is not valid UTF-8"),
    ("/api/chat", CHAT, b"X-Other: \xff\r\n", "X-Other' is not valid UTF-8"),
    (
        "/api/chat",
        b'{"model": "m", "messages": [{"role": "user", "content": "a\\ud800b"}]}',
        b"",
        "'messages.0.content': lone surrogate",
    ),
    (
        "/v1/chat/completions",
        b'{"model": "m", "user": "\\udfff", "messages": [{"role": "user", "content": "hi"}]}',
        b"",
        "'user': lone surrogate",
    ),
    ("/api/chat", b"[" * 200_000, b"", "nested too deeply"),
    (
        "/api/chat",
        b'{"model": "m", "options": {"seed": ' + b"9" * 5000 + b"}, " + CHAT[15:],
        b"",
        "4300 digits",
    ),
    ("/api/chat", b'{"model": "m", "options": {"seed": NaN}, ' + CHAT[15:], b"", "NaN"),
    ("/api/chat", b'{"model": "m", "options": {"top_p": 1e999}, ' + CHAT[15:], b"", "range"),
    ("/api/chat", b"not gzip at all", b"Content-Encoding: gzip\r\n", "unreadable request body"),
]


@pytest.mark.parametrize(("path", "body", "extra", "mentions"), RAW_CASES)
async def test_hostile_input_gets_400_json_never_a_500(
    proxy: RunningProxy, fake: FakeOllama, path: str, body: bytes, extra: bytes, mentions: str
):
    status, payload = split_response(await raw_exchange(proxy.url, post(path, body, extra)))
    assert status == 400
    assert mentions in json.loads(payload)["error"]
    assert fake.calls(path) == []
    async with aiohttp.ClientSession() as http:  # and the proxy keeps serving
        body_ok = {"model": "m", "messages": [{"role": "user", "content": "ok?"}], "stream": False}
        async with http.post(f"{proxy.url}/api/chat", json=body_ok) as r:
            assert r.status == 200


async def test_an_error_after_the_stream_started_ends_it_in_band(
    proxy: RunningProxy, fake: FakeOllama
):
    def broken_observe(exchange: object) -> None:  # a bug in the write-back, after the 200
        raise RuntimeError("boom")

    proxy.memory.observe = broken_observe  # type: ignore[method-assign]
    status, payload = split_response(await raw_exchange(proxy.url, post("/api/chat", CHAT)))
    assert status == 200
    lines = [json.loads(line) for line in dechunk(payload).splitlines()]
    assert lines[-1] == {"error": "internal error in the memory proxy"}
    assert payload.endswith(b"0\r\n\r\n")  # a clean end of the chunked body


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        n = int(size, 16)
        out, body = out + rest[:n], rest[n + 2 :]
    return out


async def test_gzip_body_is_forwarded_decoded_without_its_encoding(
    proxy: RunningProxy, fake: FakeOllama
):
    body = {"model": "m", "messages": [{"role": "user", "content": "zipped"}], "stream": False}
    for path in ("/api/chat", "/api/show"):  # intercepted, and relayed verbatim
        data = gzip.compress(json.dumps(body).encode())
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{proxy.url}{path}", data=data, headers=headers) as r:
                assert r.status == 200
        sent = fake.calls(path)[-1]
        assert "Content-Encoding" not in sent.headers and sent.json() == body


async def test_other_methods_on_chat_paths_get_a_json_405(proxy: RunningProxy, fake: FakeOllama):
    async with aiohttp.ClientSession() as http:
        for path in ("/api/chat", "/api/generate", "/v1/chat/completions"):
            async with http.get(f"{proxy.url}{path}") as r:
                assert r.status == 405 and r.headers["Allow"] == "POST"
                assert (await r.json())[
                    "error"
                ] == f"method GET not allowed on {path} (allowed: POST)"
    assert fake.calls("/api/chat") == []


async def test_slow_body_gets_408(start_proxy: StartProxy, fake: FakeOllama):
    proxy = await start_proxy(limits={"body_timeout_s": 1.0})
    host, port = proxy.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(post("/api/chat", CHAT)[: -len(CHAT) + 5])  # headers and 5 bytes of the body
    await writer.drain()
    started = time.monotonic()
    async with asyncio.timeout(5):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < 3
    writer.close()
    assert fake.calls("/api/chat") == []


async def test_partial_headers_are_cut_off(start_proxy: StartProxy):
    proxy = await start_proxy(limits={"header_timeout_s": 1.0})
    host, port = proxy.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /api/chat HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    await writer.drain()
    started = time.monotonic()
    async with asyncio.timeout(5):
        assert await reader.read() == b""  # closed by the server
    assert time.monotonic() - started < 3
    writer.close()


@pytest.mark.parametrize(
    ("raw", "mentions"),
    [
        (b'{"id": "a\\ud800", "score": 0.5}', "lone surrogate"),
        (b"[" * 100_000, "nested too deeply"),
        (b'{"id": "x", "score": NaN}', "NaN"),
        (b"[1]", "must be a JSON object"),
    ],
)
async def test_feedback_bodies_get_the_chat_routes_checks(
    proxy: RunningProxy, raw: bytes, mentions: str
):
    async with aiohttp.ClientSession() as http:
        url = f"{proxy.url}/memory/feedback?user=alice"
        async with http.post(url, data=raw) as r:
            assert r.status == 400
            assert mentions in (await r.json())["error"]
