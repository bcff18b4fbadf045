"""The console script as a user runs it: ``symbiotic-memory serve --config FILE``."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import numpy as np
import ollama

from memory.config import StoreConfig
from memory.store.chroma import ChromaStore
from testing.fake_upstream import TAGS_BODY, FakeOllama, embed_text
from testing.net import free_port, wait_listening


async def test_serve_runs_proxies_and_shuts_down_cleanly(fake: FakeOllama, tmp_path: Path):
    port = free_port()
    config = tmp_path / "proxy.yaml"
    config.write_text(
        f"listen:\n  port: {port}\nupstream:\n  url: {fake.url}\n"
        f"store:\n  path: {tmp_path / 'store'}\nlog_level: WARNING\n"
    )
    exe = Path(sys.executable).parent / "symbiotic-memory"
    proc = await asyncio.create_subprocess_exec(
        str(exe),
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "SYMBIOTIC_MEMORY__MEMORY__K": "3"},
    )
    try:
        await wait_listening(port, proc)
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/api/tags") as r:
                assert await r.read() == TAGS_BODY
        async with ollama.AsyncClient(host=url, headers={"X-Memory-User": "eve"}) as client:
            await client.chat(model="m", messages=[{"role": "user", "content": "I am Eve"}])
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), 30)
        except TimeoutError:
            proc.kill()
            raise
    assert proc.returncode == 0, err.decode()
    assert f"listening on http://127.0.0.1:{port}" in out.decode()
    assert b"Traceback" not in err
    store = ChromaStore(StoreConfig(path=tmp_path / "store"))  # the write-back was finished
    await store.open()
    vector = np.asarray(embed_text("I am Eve"), dtype=np.float32)
    hits = await store.query("eve", vector / np.linalg.norm(vector), 5)
    await store.close()
    assert [h.text for h in hits] == ["User: I am Eve\nAssistant: Noted: I am Eve"]


async def test_serve_port_in_use_is_one_line(fake: FakeOllama, tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "SYMBIOTIC_MEMORY__LISTEN__PORT": str(port),
            "SYMBIOTIC_MEMORY__STORE__PATH": str(tmp_path / "s"),
            "SYMBIOTIC_MEMORY__UPSTREAM__URL": fake.url,
        }
        exe = Path(sys.executable).parent / "symbiotic-memory"
        proc = await asyncio.create_subprocess_exec(
            str(exe),
            "serve",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 60)
        except TimeoutError:
            proc.kill()
            raise
    assert proc.returncode == 1
    lines = [line for line in err.decode().splitlines() if line.startswith("symbiotic-memory:")]
    assert len(lines) == 1 and "address" in lines[0].lower()
    assert "Traceback" not in err.decode()
