"""The Chroma store on its own: embedded and against a real ``chroma run`` server."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from memory.config import StoreConfig
from memory.errors import DimensionMismatchError, StoreError
from memory.store.chroma import ChromaStore
from proxy.app import create_app
from testing.fake_upstream import FakeOllama
from testing.net import free_port
from tests.conftest import StartProxy, make_config


def unit(*values: float) -> np.ndarray:
    vector = np.asarray(values, dtype=np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture(scope="module")
def chroma_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Chroma server (the CLI shipped with chromadb), started and stopped here."""
    exe = shutil.which("chroma", path=str(Path(sys.executable).parent))
    assert exe is not None, "the chroma CLI ships with chromadb and must be installed"
    port = free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    proc = subprocess.Popen(
        [exe, "run", "--path", str(path), "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("chroma run exited early") from None
                import time

                time.sleep(0.1)
        else:
            raise RuntimeError("chroma run did not start listening within 30 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(params=["embedded", "server"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ChromaStore]:
    if request.param == "server":
        url = request.getfixturevalue("chroma_server")
        config = StoreConfig(url=url, collection_prefix=f"t{tmp_path.name[-20:]}".replace("_", "-"))
    else:
        config = StoreConfig(path=tmp_path / "chroma")
    chroma = ChromaStore(config)
    await chroma.open()
    yield chroma
    await chroma.close()


async def test_query_get_delete_are_user_scoped(store: ChromaStore):
    await store.upsert("alice", "m1", unit(1, 0, 0), "alice likes tea", {"user": "alice"})
    await store.upsert("alice", "m2", unit(0, 1, 0), "alice runs", {"user": "alice", "n": None})
    await store.upsert("bob", "m3", unit(1, 0, 0), "bob likes coffee", {"user": "bob"})
    hits = await store.query("alice", unit(1, 0.1, 0), 5)
    assert [h.id for h in hits] == ["m1", "m2"]
    assert hits[0].similarity == pytest.approx(0.995, abs=0.005)
    assert [h.text for h in await store.query("bob", unit(0, 1, 0), 5)] == ["bob likes coffee"]
    assert await store.query("carol", unit(1, 0, 0), 5) == []
    assert await store.get("bob", "m1") is None
    assert (await store.get("alice", "m1")).metadata == {"user": "alice", "schema_version": 3}
    assert await store.delete("bob", "m1") is False
    assert await store.delete("alice", "m1") is True
    assert await store.get("alice", "m1") is None
    await store.heartbeat()


async def test_upsert_replaces_rather_than_duplicates(store: ChromaStore):
    await store.upsert("u", "same", unit(1, 0), "v1", {"k": 1})
    await store.upsert("u", "same", unit(1, 0), "v2", {"k": 2})
    hits = await store.query("u", unit(1, 0), 10)
    assert [(h.id, h.text, h.metadata["k"]) for h in hits] == [("same", "v2", 2)]


async def test_dimension_mismatch_is_named(store: ChromaStore):
    await store.upsert("u", "a", unit(1, 0, 0), "three", {})
    with pytest.raises(DimensionMismatchError, match=r"4-dimensional.*3-dimensional"):
        await store.upsert("u", "b", unit(1, 0, 0, 0), "four", {"embedder": "e"})
    with pytest.raises(DimensionMismatchError, match="x produces 8-dimensional"):
        await store.check_dimension("x", 8)
    await store.check_dimension("x", 3)


async def test_unreachable_server_is_a_store_error():
    chroma = ChromaStore(StoreConfig(url=f"http://127.0.0.1:{free_port()}"))
    with pytest.raises(StoreError, match=r"chroma at http://127\.0\.0\.1"):
        await chroma.open()


@pytest.mark.chroma_server
async def test_proxy_against_chroma_server(
    start_proxy: StartProxy, chroma_server: str, fake: FakeOllama
):
    proxy = await start_proxy(store={"url": chroma_server, "collection_prefix": "proxytest"})
    client = proxy.ollama("alice")
    await client.chat(model="m", messages=[{"role": "user", "content": "I live in Lisbon"}])
    await proxy.flush()
    await client.chat(model="m", messages=[{"role": "user", "content": "Where do I live?"}])
    assert "I live in Lisbon" in fake.calls("/api/chat")[-1].json()["messages"][0]["content"]


async def test_startup_refuses_a_store_built_with_another_dimension(
    fake: FakeOllama, tmp_path: Path
):
    config = make_config(fake.url, tmp_path / "chroma")
    first = ChromaStore(config.store)
    await first.open()
    await first.upsert("alice", "a", unit(*([1.0] * 32)), "old", {"embedder": "old-model"})
    await first.close()
    app = create_app(config)
    from aiohttp import web

    runner = web.AppRunner(app)
    with pytest.raises(DimensionMismatchError) as caught:
        await runner.setup()
    await asyncio.sleep(0)
    await runner.cleanup()
    assert "produces 64-dimensional" in str(caught.value)
    assert "holds 32-dimensional" in str(caught.value)
