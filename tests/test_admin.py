"""The admin API: user-scoped get, delete and search; health; the manifest; the bearer token."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp

from proxy.manifest import Manifest
from testing.fake_upstream import FakeOllama
from tests.conftest import RunningProxy, StartProxy

ROOT = Path(__file__).resolve().parent.parent


async def remember(proxy: RunningProxy, user: str, text: str) -> str:
    await proxy.ollama(user).chat(
        model="llama3.2", messages=[{"role": "user", "content": text}], stream=False
    )
    await proxy.flush()
    (hit,) = [h for h in await proxy.memory.search(user, text, 10) if text in h.text]
    return hit.id


async def test_get_and_delete_are_scoped_to_the_user(proxy: RunningProxy):
    mid = await remember(proxy, "alice", "my passport number is X123")
    async with aiohttp.ClientSession() as http:
        url = f"{proxy.url}/memory/{mid}"
        async with http.get(url, params={"user": "bob"}) as r:
            assert r.status == 404
        async with http.delete(url, params={"user": "bob"}) as r:
            assert r.status == 404
        async with http.get(url, headers={"X-Memory-User": "bob"}) as r:
            assert r.status == 404
        async with http.get(url, params={"user": "alice"}) as r:
            assert r.status == 200
            got = await r.json()
            assert "X123" in got["text"] and got["metadata"]["user"] == "alice"
        async with http.delete(url, params={"user": "alice"}) as r:
            assert r.status == 200
            erased = await r.json()
            assert erased["deleted"] == mid and erased["memories"] == [mid]
        async with http.get(url, params={"user": "alice"}) as r:
            assert r.status == 404
    assert await proxy.memory.search("alice", "passport", 5) == []


async def test_user_ids_that_look_alike_stay_apart(proxy: RunningProxy):
    await remember(proxy, "Alice", "Alice likes green tea")
    await remember(proxy, "alice", "lower-case alice likes coffee")
    assert all("coffee" not in h.text for h in await proxy.memory.search("Alice", "likes", 10))
    assert all("tea" not in h.text for h in await proxy.memory.search("alice", "likes", 10))
    assert await proxy.memory.search("ALICE", "likes", 10) == []


async def test_healthz_reports_each_part(proxy: RunningProxy, fake: FakeOllama):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/healthz") as r:
            assert r.status == 200
            report = await r.json()
        assert report["status"] == "ok"
        assert report["upstream"]["ok"] and report["store"]["ok"]
        assert report["embedder"] == {"ok": True, "name": "ollama:nomic-embed-text", "dim": 64}
        fake.embed_fail = True
        async with http.get(f"{proxy.url}/healthz") as r:
            report = await r.json()
        assert r.status == 200 and report["status"] == "degraded"
        assert not report["embedder"]["ok"] and "500" in report["embedder"]["error"]


async def test_healthz_is_503_when_upstream_is_down(start_proxy: StartProxy):
    proxy = await start_proxy(upstream={"url": "http://127.0.0.1:9"}, memory={"enabled": False})
    async with aiohttp.ClientSession() as http, http.get(f"{proxy.url}/healthz") as r:
        assert r.status == 503 and (await r.json())["status"] == "down"


async def test_manifest_is_valid_and_served(proxy: RunningProxy):
    raw = (ROOT / "symbiotic_manifest.json").read_bytes()
    manifest = Manifest.model_validate_json(raw)
    import proxy as proxy_package

    assert manifest.version == proxy_package.__version__
    assert manifest.telemetry is False
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/symbiotic_manifest.json") as r:
            assert r.status == 200
            assert r.headers["Content-Type"].startswith("application/json")
            assert await r.read() == raw
    assert json.loads(raw)["lineage"][0]["name"] == "latent-memory"


def test_manifest_schema_rejects_a_missing_declaration():
    data = json.loads((ROOT / "symbiotic_manifest.json").read_text())
    data["adherence"]["principles_and_guidelines"] = False
    try:
        Manifest.model_validate(data)
    except ValueError as exc:
        assert "principles_and_guidelines" in str(exc)
    else:
        raise AssertionError("a manifest without adherence must not validate")


async def test_admin_token_is_required_when_configured(start_proxy: StartProxy):
    proxy = await start_proxy(admin={"token": "s3cret"})
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/memory/search", params={"q": "x"}) as r:
            assert r.status == 401 and "Bearer" in (await r.json())["error"]
        auth = {"Authorization": "Bearer s3cret"}
        async with http.get(f"{proxy.url}/memory/search", params={"q": "x"}, headers=auth) as r:
            assert r.status == 200


async def test_healthz_and_logs_name_no_user(proxy: RunningProxy, caplog):
    await remember(proxy, "carol-the-secret-user", "carol likes jazz")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/healthz") as r:
            text = await r.text()
    assert "carol" not in text and "jazz" not in text
    assert "carol" not in caplog.text


async def test_the_proxys_own_paths_are_never_relayed_with_their_credentials(
    start_proxy: StartProxy, fake: FakeOllama, tmp_path: Path
):
    tokens = tmp_path / "tokens"
    tokens.write_text("")
    proxy = await start_proxy(admin={"token": "admin-secret"}, auth={"tokens_file": str(tokens)})
    admin = {"Authorization": "Bearer admin-secret"}
    async with aiohttp.ClientSession() as http:
        for method, path in (
            ("POST", "/memory/xyz"),
            ("PUT", "/memory/search"),
            ("POST", "/metrics"),
            ("POST", "/ui"),
            ("GET", "/ui/secret.txt"),
            ("PATCH", "/ui/app.js"),
        ):
            async with http.request(method, proxy.url + path, headers=admin) as r:
                assert r.status in (404, 405), (method, path)
                assert "error" in await r.json()
    relayed = [r.path for r in fake.requests if r.path != "/api/embed"]  # embed: start-up probe
    assert relayed == []  # nothing, and so no admin token, went upstream
