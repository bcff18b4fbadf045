"""Authenticated identity (issue 15, section 1): tokens, Open WebUI JWTs, unambiguous claims."""

from __future__ import annotations

import asyncio
import os
import stat
import time
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import jwt
import ollama
import openai
import pytest

from proxy.app import create_app
from proxy.auth import token_hash
from proxy.cli import main
from proxy.config import Config, load_config
from proxy.errors import ConfigError
from testing.fake_upstream import FakeOllama
from tests.conftest import RunningProxy, StartProxy, make_config

TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-9876543210"}
SECRET = "open-webui-forward-secret-of-32-bytes-or-more"
FACT = "My locker code at the climbing gym is 4471"
CHAT = {"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}], "stream": False}


def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    lines = [f"{user} {token_hash(token)}" for user, token in TOKENS.items()]
    path.write_text("# users of the proxy\n\n" + "\n".join(lines) + "\n")
    return path


def bearer(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[user]}"}


def openwebui_jwt(secret: str = SECRET, **claims: Any) -> str:
    """What Open WebUI 0.12 mints (backend/open_webui/utils/headers.py): HS256 with these."""
    now = int(time.time())
    payload = {"sub": "u-7", "email": "u7@example.com", "name": "Ursula", "role": "user"}
    payload |= {"iss": "open-webui", "iat": now, "exp": now + 300, **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, "HS256")


@pytest.fixture
async def guarded(start_proxy: StartProxy, tmp_path: Path) -> RunningProxy:
    """A proxy with tokens for alice and bob, an admin token and an upstream key."""
    return await start_proxy(
        auth={"tokens_file": str(tokens_file(tmp_path))},
        admin={"token": "admin-secret"},
        upstream={"api_key": "upstream-key"},
    )


def no_proxy_credential(fake: FakeOllama) -> None:
    """The upstream saw only its own key, never a proxy token or JWT."""
    relayed = [c for c in fake.requests if c.path not in ("/api/embed", "/")]
    assert relayed
    for call in relayed:
        sent = " ".join(f"{k}: {v}" for k, v in call.headers.items())
        assert not any(token in sent for token in TOKENS.values())
        assert "x-api-key" not in {k.lower() for k in call.headers}
        assert "x-openwebui-user-jwt" not in {k.lower() for k in call.headers}
        assert call.headers.get("Authorization") == "Bearer upstream-key"


async def test_openai_client_token_decides_the_user(guarded: RunningProxy, fake: FakeOllama):
    async with openai.AsyncOpenAI(base_url=f"{guarded.url}/v1", api_key=TOKENS["alice"]) as oai:
        reply = await oai.chat.completions.create(
            model="llama3.2", messages=[{"role": "user", "content": FACT}]
        )
        assert reply.choices[0].message.content == f"Noted: {FACT}"
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await oai.chat.completions.create(
                model="llama3.2", messages=[{"role": "user", "content": "hi"}], user="bob"
            )
        assert "another user" in denied.value.response.json()["error"]
        await oai.chat.completions.create(  # naming oneself is fine
            model="llama3.2", messages=[{"role": "user", "content": "hello"}], user="alice"
        )
    await guarded.flush()
    (memory,) = [h for h in await guarded.memory.store.all("alice") if FACT in h.text]
    assert memory.metadata["auth"] == "token" and memory.record.authenticated
    async with openai.AsyncOpenAI(base_url=f"{guarded.url}/v1", api_key="guessed") as oai:
        with pytest.raises(openai.AuthenticationError):
            await oai.chat.completions.create(model="llama3.2", messages=[])
    async with openai.AsyncOpenAI(base_url=f"{guarded.url}/v1", api_key=TOKENS["bob"]) as oai:
        await oai.chat.completions.create(
            model="llama3.2", messages=[{"role": "user", "content": "What is my locker code?"}]
        )
    system = fake.calls("/v1/chat/completions")[-1].json()["messages"][0]["content"]
    assert "4471" not in system  # bob's token opens bob's memories only
    no_proxy_credential(fake)


async def test_anthropic_client_x_api_key(guarded: RunningProxy, fake: FakeOllama):
    async with anthropic.AsyncAnthropic(base_url=guarded.url, api_key=TOKENS["bob"]) as claude:
        reply = await claude.messages.create(
            model="llama3.2", max_tokens=32, messages=[{"role": "user", "content": FACT}]
        )
        assert reply.content[0].text == f"Noted: {FACT}"  # type: ignore[union-attr]
    async with anthropic.AsyncAnthropic(base_url=guarded.url, api_key="wrong") as claude:
        with pytest.raises(anthropic.AuthenticationError):
            await claude.messages.create(model="llama3.2", max_tokens=8, messages=[])
    await guarded.flush()
    assert [h.record.user for h in await guarded.memory.store.all("bob")] == ["bob"]
    no_proxy_credential(fake)


async def test_ollama_client_routes_need_the_token(guarded: RunningProxy, fake: FakeOllama):
    client = guarded.ollama(user=None, **bearer("alice"))
    await client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}])
    await client.generate(model="llama3.2", prompt="hello")
    streamed = await client.chat(
        model="llama3.2", messages=[{"role": "user", "content": "stream me"}], stream=True
    )
    chunks = [chunk async for chunk in streamed]  # a streamed reply through the request copy
    assert (
        chunks[-1].done and "".join(c.message.content or "" for c in chunks) == "Noted: stream me"
    )
    assert (await client.list()).models  # passthrough routes need it too
    anonymous = guarded.ollama(user="alice")  # a claim is no longer enough
    for call in (
        anonymous.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}]),
        anonymous.generate(model="llama3.2", prompt="hello"),
        anonymous.list(),
    ):
        with pytest.raises(ollama.ResponseError) as caught:
            await call
        assert caught.value.status_code == 401
    no_proxy_credential(fake)


async def test_missing_bad_and_conflicting_credentials(guarded: RunningProxy, fake: FakeOllama):
    url = guarded.url
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eA=="}):
            async with http.post(f"{url}/api/chat", json=CHAT, headers=headers) as r:
                assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"
                assert "error" in await r.json()
        for claim in ({"X-Memory-User": "bob"}, {"X-OpenWebUI-User-Id": "bob"}):
            claiming = bearer("alice") | claim
            async with http.post(f"{url}/api/chat", json=CHAT, headers=claiming) as r:
                assert r.status == 403 and "another user" in (await r.json())["error"]
        same = bearer("alice") | {"X-Memory-User": "alice"}
        async with http.post(f"{url}/api/chat", json=CHAT, headers=same) as r:
            assert r.status == 200
        two = {"Authorization": f"Bearer {TOKENS['alice']}", "x-api-key": TOKENS["bob"]}
        async with http.post(f"{url}/api/chat", json=CHAT, headers=two) as r:
            assert r.status == 400
        async with http.get(f"{url}/healthz") as r:
            assert r.status == 200  # status stays open
    assert len(fake.calls("/api/chat")) == 1  # refused requests never reached the upstream


async def test_memory_routes_serve_the_proven_user(guarded: RunningProxy):
    await guarded.ollama(user=None, **bearer("alice")).chat(
        model="llama3.2", messages=[{"role": "user", "content": FACT}]
    )
    await guarded.flush()
    search = f"{guarded.url}/memory/search"
    async with aiohttp.ClientSession() as http:
        async with http.get(search, params={"q": "locker"}, headers=bearer("alice")) as r:
            assert r.status == 200 and "4471" in (await r.text())
        async with http.get(search, params={"q": "locker"}, headers=bearer("bob")) as r:
            assert r.status == 200 and await r.json() == []
        params = {"q": "locker", "user": "alice"}
        async with http.get(search, params=params, headers=bearer("bob")) as r:
            assert r.status == 403
        async with http.get(search, params={"q": "locker"}) as r:
            assert r.status == 401
        admin = {"Authorization": "Bearer admin-secret"}
        async with http.get(search, params=params, headers=admin) as r:
            assert r.status == 200 and "4471" in (await r.text())  # admin.token still works


async def test_openwebui_jwt_decides_the_user(
    start_proxy: StartProxy, fake: FakeOllama, tmp_path: Path
):
    proxy = await start_proxy(
        auth={"openwebui_jwt_secret": SECRET, "tokens_file": str(tokens_file(tmp_path))}
    )
    url = f"{proxy.url}/api/chat"
    signed = {"X-OpenWebUI-User-Jwt": openwebui_jwt(), "X-OpenWebUI-Chat-Id": "c-1"}
    async with aiohttp.ClientSession() as http:
        # Open WebUI also sends its one connection key: the JWT names the user
        with_key = signed | {"Authorization": "Bearer sk-connection-key"}
        told = CHAT | {"messages": [{"role": "user", "content": FACT}]}
        async with http.post(url, json=told, headers=with_key) as r:
            assert r.status == 200
        bad = {
            "expired": openwebui_jwt(exp=int(time.time()) - 60),
            "wrong secret": openwebui_jwt(secret="another-secret-that-is-32-bytes-long!"),
            "no sub": openwebui_jwt(sub=None),
            "no exp": openwebui_jwt(exp=None),
            "other issuer": openwebui_jwt(iss="someone-else"),
            "garbage": "not.a.jwt",
        }
        for case, token in bad.items():
            async with http.post(url, json=CHAT, headers={"X-OpenWebUI-User-Jwt": token}) as r:
                assert r.status == 401, case
                assert "X-OpenWebUI-User-Jwt" in (await r.json())["error"], case
        other = signed | {"X-OpenWebUI-User-Id": "u-8"}
        async with http.post(url, json=CHAT, headers=other) as r:
            assert r.status == 403
        async with http.post(url, json=CHAT, headers=bearer("bob")) as r:
            assert r.status == 200  # either credential is accepted
    await proxy.flush()
    (memory,) = await proxy.memory.store.all("u-7")
    assert (memory.record.auth, memory.record.session) == ("jwt", "c-1")
    assert "Authorization" not in fake.calls("/api/chat")[0].headers  # upstream.api_key unset
    assert all("X-OpenWebUI-User-Jwt" not in c.headers for c in fake.requests)


async def raw_request(proxy: RunningProxy, head: bytes) -> tuple[int, bytes]:
    """Send raw header bytes (clients refuse to send bad ones); the status and body."""
    host, port = proxy.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = b'{"model": "llama3.2", "messages": [{"role": "user", "content": "hi"}]}'
    writer.write(
        b"POST /api/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + head
        + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        + body
    )
    answer = await reader.read()
    writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


async def test_ambiguous_identity_is_a_400(proxy: RunningProxy, fake: FakeOllama):
    cases = {
        b"X-Memory-User: alice\r\nX-Memory-User: bob\r\n": b"sent 2 times",
        b"X-OpenWebUI-User-Id: u-1\r\nX-OpenWebUI-User-Id: u-2\r\n": b"sent 2 times",
        b"X-Memory-Session: s-1\r\nx-memory-session: s-2\r\n": b"sent 2 times",
        b"X-Memory-User: alice, bob\r\n": b"more than one user",
        b"X-Memory-User: al\xffice\r\n": b"not valid UTF-8",
        b"X-Memory-User: al\tice\r\n": b"control characters",
        b"X-Memory-Session: s\t1\r\n": b"control characters",
    }
    for head, reason in cases.items():
        status, body = await raw_request(proxy, head)
        assert status == 400 and b'"error"' in body and reason in body, head
    async with aiohttp.ClientSession() as http:
        for user in ("al\x00ice", "bob\u0007", "\ud800"):  # JSON escapes: "\u0000", "\ud800"
            async with http.post(f"{proxy.url}/api/chat", json=CHAT | {"user": user}) as r:
                error = (await r.json())["error"]  # a surrogate is refused with the body itself
                assert r.status == 400 and ("the body's 'user'" in error or "at 'user'" in error)
    assert not fake.calls("/api/chat")
    status, _ = await raw_request(proxy, "X-Memory-User: zoë\r\n".encode())
    assert status == 200  # UTF-8 is fine


async def test_token_file_errors_and_beyond_loopback(tmp_path: Path, fake: FakeOllama):
    bad = tmp_path / "bad-tokens"
    bad.write_text(f"alice {token_hash('x')}\nbob not-a-hash\n")
    config = make_config(fake.url, tmp_path / "chroma", auth={"tokens_file": str(bad)})
    with pytest.raises(ConfigError, match=r"bad-tokens line 2: expected 'USER SHA256HEX'"):
        create_app(config)
    with pytest.raises(ConfigError, match=r"cannot read auth\.tokens_file"):
        create_app(make_config(fake.url, tmp_path, auth={"tokens_file": str(tmp_path / "no")}))
    beyond = {"SYMBIOTIC_MEMORY__LISTEN__HOST": "0.0.0.0"}
    with pytest.raises(ConfigError, match=r"0\.0\.0\.0 is reachable.*auth\.tokens_file"):
        load_config(None, env=beyond | {"SYMBIOTIC_MEMORY__ADMIN__TOKEN": "x"})
    for key, value in (("TOKENS_FILE", str(bad)), ("OPENWEBUI_JWT_SECRET", SECRET)):
        load_config(None, env=beyond | {f"SYMBIOTIC_MEMORY__AUTH__{key}": value})
    with pytest.raises(ConfigError, match="at least 32"):
        load_config(None, env={"SYMBIOTIC_MEMORY__AUTH__OPENWEBUI_JWT_SECRET": "short"})
    with pytest.raises(ConfigError, match=r"^configuration: metabolism\.shared needs auth"):
        load_config(None, env={"SYMBIOTIC_MEMORY__METABOLISM__SHARED": "true"})
    assert Config().auth.enabled is False  # off by default on loopback


async def test_users_command_adds_a_working_token(
    guarded: RunningProxy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = tmp_path / "tokens"
    assert main(["users", "add", "carol", "--file", str(path)]) == 0
    token = capsys.readouterr().out.strip()
    assert len(token) >= 43 and token not in path.read_text()  # only its hash is kept
    assert main(["users", "add", "carol", "--file", str(path)]) == 2
    assert "already has a token" in capsys.readouterr().err
    client = guarded.ollama(user=None, Authorization=f"Bearer {token}")
    await client.chat(model="llama3.2", messages=[{"role": "user", "content": "hi"}])
    assert main(["users", "list", "--file", str(path)]) == 0  # the running proxy re-read it
    assert capsys.readouterr().out.split() == ["alice", "bob", "carol"]
    assert main(["users", "remove", "bob", "--file", str(path)]) == 0
    with pytest.raises(ollama.ResponseError):
        await guarded.ollama(user=None, **bearer("bob")).list()

    fresh = tmp_path / "fresh-tokens"
    assert main(["users", "add", "dave", "--file", str(fresh)]) == 0
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o600
