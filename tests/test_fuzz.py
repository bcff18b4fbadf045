"""Fuzzing the running proxy (issue 15, section 4): hypothesis over request bodies and headers,
sent over a raw socket, asserting no 500 and a well-formed answer every time.

Hypothesis runs in a worker thread with a blocking socket client, so the proxy and the fake
upstream keep running on the test's event loop meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testing.fake_upstream import FakeOllama
from tests.conftest import StartProxy

PATHS = ["/api/chat", "/api/generate", "/v1/chat/completions", "/v1/messages", "/v1/responses"]
NASTY = ["\ud800", "\udfff", "</memories>", "<|im_start|>system", "\x00", "\u202e", "\uff1c"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
texts = st.one_of(st.text(max_size=40), st.sampled_from(NASTY), json_values)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool", "x"]), "content": texts}
)
chat = st.fixed_dictionaries(
    {"model": st.one_of(st.just("m"), json_values), "messages": st.lists(message, max_size=3)},
    optional={
        "stream": st.one_of(st.booleans(), json_values),
        "user": texts,
        "prompt": texts,
        "input": texts,
        "max_tokens": st.integers(1, 64),
        "options": st.fixed_dictionaries({}, optional={"seed": st.integers(), "top_p": texts}),
    },
)


def encode(doc: object) -> bytes:
    # ensure_ascii: surrogates go out as \\udXXX escapes, the way a hostile client sends them
    return json.dumps(doc).encode()


bodies = st.one_of(
    chat.map(encode),
    json_values.map(encode),
    st.binary(max_size=64),
    st.integers(1, 50_000).map(lambda n: b"[" * n),
    st.integers(4000, 6000).map(lambda n: b'{"model": "m", "options": {"seed": %s}}' % (b"9" * n)),
)
header_names = st.sampled_from(
    [
        "X-Memory-User",
        "X-Memory",
        "X-Memory-Session",
        "X-OpenWebUI-User-Id",
        "X-OpenWebUI-Chat-Id",
        "Content-Encoding",
        "Content-Type",
        "Accept-Encoding",
        "X-Anything",
    ]
)
# field-value bytes (RFC 9110: VCHAR, SP, HTAB, obs-text); CR, LF, NUL and DEL are refused by
# aiohttp's parser itself, before the application (its plain-text 400)
header_values = st.binary(max_size=16).map(
    lambda b: bytes(c for c in b if c == 9 or 0x20 <= c <= 0x7E or c >= 0x80)
)
headers = st.lists(st.tuples(header_names, header_values), max_size=4)


def exchange(
    port: int, method: str, path: str, body: bytes, extra: list[tuple[str, bytes]]
) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".encode()
    for name, value in extra:
        head += name.encode() + b": " + value + b"\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(head + body)
        out = b""
        while chunk := conn.recv(65536):
            out += chunk
    return out


def dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        n = int(size.split(b";")[0], 16)
        if n == 0:
            return out
        out, body = out + rest[:n], rest[n + 2 :]
    raise AssertionError("chunked body without its last chunk")


def check(raw: bytes) -> None:
    """A well-formed answer: a JSON error for 4xx/5xx; a complete body otherwise."""
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"HTTP/1." not in body, "a second response inside the body"
    status = int(head.split(b" ")[1])
    lines = head.decode("latin-1").lower().split("\r\n")
    if "transfer-encoding: chunked" in lines:
        body = dechunk(body)
    assert status < 500, (status, body[:300])
    if head.startswith(b"HTTP/1.0 400 "):
        return  # refused by aiohttp's parser (e.g. two Content-Type): before the app, plain text
    if status >= 400:
        assert "content-type: application/json; charset=utf-8" in lines, head
        assert isinstance(json.loads(body)["error"], str)
        return
    if body.startswith(b"data:") or b"\nevent:" in body or body.startswith(b"event:"):
        assert body.endswith(b"\n\n")  # complete SSE events
        return
    frames = [json.loads(line) for line in body.splitlines() if line.strip()]
    assert frames, "an empty 200"
    last = frames[-1]
    assert "error" in last or last.get("done") is True or len(frames) == 1


async def test_fuzzed_requests_never_get_a_500(start_proxy: StartProxy, fake: FakeOllama):
    proxy = await start_proxy()
    port = int(proxy.url.rsplit(":", 1)[1])

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        method=st.sampled_from(["POST"] * 6 + ["GET", "PUT"]),
        path=st.sampled_from(PATHS),
        body=bodies,
        extra=headers,
    )
    def fuzz(method: str, path: str, body: bytes, extra: list[tuple[str, bytes]]) -> None:
        check(exchange(port, method, path, body, extra))

    await asyncio.to_thread(fuzz)
    ok = {"model": "m", "messages": [{"role": "user", "content": "still there?"}], "stream": False}
    still = await asyncio.to_thread(exchange, port, "POST", "/api/chat", encode(ok), [])
    check(still)  # and the proxy keeps serving
    assert still.startswith(b"HTTP/1.1 200 ")
