"""Shared fixtures: a fake Ollama over a socket and the real proxy app in front of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# hypothesis is imported here, before any test runs: imported lazily at the end of the session
# (by its pytest plugin) it trips CPython 3.11.7's "AST constructor recursion depth mismatch".
import hypothesis  # noqa: F401
import ollama
import pytest
from aiohttp import web

from memory.service import MemoryService
from proxy.app import create_app
from proxy.config import Config
from proxy.state import MEMORY
from testing.fake_upstream import FakeOllama


@dataclass
class RunningProxy:
    """A proxy started for a test."""

    url: str
    app: web.Application
    runner: web.AppRunner
    clients: list[ollama.AsyncClient] = field(default_factory=list)

    def ollama(self, user: str | None = "alice", **headers: str) -> ollama.AsyncClient:
        """An official ``ollama`` client for this proxy as ``user``; closed at teardown."""
        if user is not None:
            headers["X-Memory-User"] = user
        client = ollama.AsyncClient(host=self.url, headers=headers)
        self.clients.append(client)
        return client

    @property
    def memory(self) -> MemoryService:
        return self.app[MEMORY]

    async def flush(self) -> None:
        """Wait for queued write-backs to finish."""
        await self.memory.flush()


@pytest.fixture
async def fake() -> AsyncIterator[FakeOllama]:
    server = FakeOllama()
    await server.start()
    yield server
    await server.close()


def make_config(fake_url: str, store_path: Path, **sections: dict[str, Any]) -> Config:
    """Test config: the fake as upstream and embedder, a temporary store, fast timeouts."""
    data: dict[str, Any] = {
        "listen": {"port": 0},
        "upstream": {"url": fake_url},
        "store": {"path": str(store_path)},
        # most tests read the block from the system message; placement tests set their own
        "memory": {"timeout_ms": 2000, "placement": "system"},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return Config.model_validate(data)


StartProxy = Callable[..., Awaitable[RunningProxy]]


@pytest.fixture
async def start_proxy(fake: FakeOllama, tmp_path: Path) -> AsyncIterator[StartProxy]:
    """``await start_proxy(memory={...}, ...)`` starts a proxy; all are stopped at teardown."""
    runners: list[web.AppRunner] = []
    started: list[RunningProxy] = []

    async def start(**sections: dict[str, Any]) -> RunningProxy:
        config = make_config(fake.url, tmp_path / "chroma", **sections)
        app = create_app(config)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        started.append(RunningProxy(f"http://127.0.0.1:{port}", app, runner))
        return started[-1]

    yield start
    fake.embed_fail, fake.embed_delay_s = False, 0.0  # let shutdown drain the outbox quickly
    for running in started:
        for client in running.clients:
            await client.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def proxy(start_proxy: StartProxy) -> RunningProxy:
    """A proxy with the default test config."""
    return await start_proxy()
