"""GuardedEmbedder / GuardedStore: a breaker and a budget around a dependency, same interface."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from memory.errors import BreakerOpenError, EmbedderError, StoreError
from memory.guarded import GuardedEmbedder, GuardedStore
from memory.resilience import CircuitBreaker
from memory.types import MemoryHit


class SlowEmbedder:
    name = "fake:slow"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.calls = 0
        self.closed = False

    async def embed(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        await asyncio.sleep(self.delay_s)
        return np.ones((len(texts), 2), np.float32) / np.sqrt(2)

    async def aclose(self) -> None:
        self.closed = True


def breaker(name: str) -> CircuitBreaker:
    return CircuitBreaker(name, failure_threshold=2, reset_timeout_s=60, min_budget_ms=1)


async def test_guarded_embedder_passes_vectors_and_turns_a_blown_budget_into_its_error():
    fast = GuardedEmbedder(SlowEmbedder(0.0), breaker("embedder"), 1000, adaptive=False)
    assert fast.name == "fake:slow" and (await fast.embed(["a", "b"])).shape == (2, 2)
    slow_inner = SlowEmbedder(0.2)
    slow = GuardedEmbedder(slow_inner, breaker("embedder"), 10, adaptive=False)
    for _ in range(2):
        with pytest.raises(EmbedderError, match="time budget"):
            await slow.embed(["a"])
    with pytest.raises(BreakerOpenError):  # two failures opened it: no call is made
        await slow.embed(["a"])
    assert slow_inner.calls == 2
    await slow.aclose()
    assert slow_inner.closed


async def test_guarded_store_shares_one_breaker_between_budgets():
    class Store:
        async def query(self, user: str, vector: Any, k: int) -> list[MemoryHit]:
            await asyncio.sleep(0.2)
            return [MemoryHit("m", "text", {})]

        async def get(self, user: str, memory_id: str) -> MemoryHit | None:
            return MemoryHit(memory_id, "text", {})

    shared = breaker("store")
    tight = GuardedStore(Store(), shared, 10, adaptive=True)  # type: ignore[arg-type]
    loose = GuardedStore(Store(), shared, 1000, adaptive=False)  # type: ignore[arg-type]
    assert [h.id for h in await loose.query("u", np.zeros(2), 1)] == ["m"]
    for _ in range(2):
        with pytest.raises(StoreError):
            await tight.query("u", np.zeros(2), 1)
    with pytest.raises(BreakerOpenError):
        await loose.get("u", "m")
