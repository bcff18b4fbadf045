"""Query embeddings under load (issue 16, section 3): concurrent recalls share one model call
(``memory.batching.BatchingEmbedder``) and a repeated query is not embedded again
(``CachingEmbedder``)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import numpy as np
import pytest

from memory.batching import BatchingEmbedder, CachingEmbedder
from memory.embedders import Vectors
from memory.errors import EmbedderError
from memory.types import Exchange, Scope
from testing.fake_upstream import FakeOllama, embed_text
from tests.conftest import StartProxy


class SlowEmbedder:
    """The fake's hashed vectors, each call taking ``delay_s``; records every call's texts."""

    name = "slow"

    def __init__(self, delay_s: float = 0.05, fail: bool = False) -> None:
        self.delay_s = delay_s
        self.fail = fail
        self.calls: list[list[str]] = []

    async def embed(self, texts: list[str]) -> Vectors:
        self.calls.append(list(texts))
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise EmbedderError("model crashed")
        return np.array([embed_text(t) for t in texts], dtype=np.float32).reshape(len(texts), -1)

    async def aclose(self) -> None:
        pass


async def test_concurrent_callers_share_model_calls_and_get_their_own_rows():
    inner = SlowEmbedder()
    batcher = BatchingEmbedder(inner, max_batch=64)
    texts = [f"question number {i}" for i in range(20)]
    results = await asyncio.gather(*(batcher.embed([t]) for t in texts))
    assert len(inner.calls) <= 2  # 20 callers, at most the first alone and then the rest
    assert sum(len(c) for c in inner.calls) == 20
    for text, rows in zip(texts, results, strict=True):
        assert rows.shape[0] == 1
        assert np.allclose(rows[0], embed_text(text), atol=1e-6)


async def test_batches_respect_max_batch_and_a_failure_reaches_every_caller():
    inner = SlowEmbedder()
    batcher = BatchingEmbedder(inner, max_batch=4)
    await asyncio.gather(*(batcher.embed([f"t{i}"]) for i in range(10)))
    assert max(len(c) for c in inner.calls) <= 4
    failing = BatchingEmbedder(SlowEmbedder(fail=True))
    outcomes = await asyncio.gather(
        *(failing.embed([f"t{i}"]) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(o, EmbedderError) for o in outcomes)


async def test_a_caller_that_gives_up_does_not_break_the_others():
    inner = SlowEmbedder(delay_s=0.2)
    batcher = BatchingEmbedder(inner)
    first = asyncio.create_task(batcher.embed(["running"]))
    await asyncio.sleep(0.05)  # the first call is at the model
    quitter = asyncio.create_task(batcher.embed(["gives up"]))
    stayer = asyncio.create_task(batcher.embed(["stays"]))
    await asyncio.sleep(0)
    quitter.cancel()
    assert (await first).shape[0] == 1 and (await stayer).shape[0] == 1
    assert ["gives up"] not in inner.calls and ["stays"] in inner.calls
    with pytest.raises(asyncio.CancelledError):
        await quitter
    await batcher.aclose()


async def test_repeated_queries_are_served_from_the_lru():
    inner = SlowEmbedder(delay_s=0)
    cache = CachingEmbedder(inner, max_entries=2)
    a = await cache.embed(["a", "b"])
    again = await cache.embed(["b", "a", "b"])
    assert inner.calls == [["a", "b"]] and np.allclose(again[1], a[0])
    await cache.embed(["c"])  # evicts the least recently used: "a" ("b" was used after it)
    await cache.embed(["b"])
    assert inner.calls[-1] == ["c"] and (cache.hits, cache.misses) == (4, 3)
    await cache.embed(["a"])
    assert inner.calls[-1] == ["a"]


async def test_concurrent_chats_through_the_proxy_share_query_embeddings(
    start_proxy: StartProxy, fake: FakeOllama
):
    # a budget floor above the model's 0.1 s, so waiting behind a batch is not a failure
    proxy = await start_proxy(resilience={"min_budget_ms": 2000})
    await proxy.ollama("alice").chat(
        model="m", messages=[{"role": "user", "content": "My cat is called Miso"}]
    )
    await proxy.flush()
    fake.embed_delay_s = 0.1  # a model call long enough for the others to queue behind it
    fake.requests.clear()
    body = {"model": "m", "stream": False}
    async with aiohttp.ClientSession() as http:

        async def ask(i: int) -> str:
            question = {"role": "user", "content": f"What is my cat called? ({i})"}
            headers = {"X-Memory-User": "alice"}
            async with http.post(
                f"{proxy.url}/api/chat", json={**body, "messages": [question]}, headers=headers
            ) as r:
                assert r.status == 200
                return r.headers["X-Memory-Status"]

        statuses = await asyncio.gather(*(ask(i) for i in range(16)))
    assert statuses.count("injected") == 16  # recall served on every request
    query_calls = [c for c in fake.calls("/api/embed") if "What is my cat" in c.body.decode()]
    assert len(query_calls) < 16 / 2


def backlog_exchange(i: int) -> Exchange:
    now = time.time()
    return Exchange(
        Scope(f"user{i % 3}", "s"),
        "/api/chat",
        "m",
        f"Backlog note {i}: my locker number is {i * 37 % 1000}.",
        f"Noted: locker {i * 37 % 1000}.",
        started_at=now,
        finished_at=now,
    )


@pytest.mark.parametrize(
    ("batch_max", "chunk", "largest"), [(256, 1000, 60), (16, 1000, 16), (256, 8, 8)]
)
async def test_writer_takes_the_backlog_in_one_batch_up_to_its_bound(
    start_proxy: StartProxy, fake: FakeOllama, batch_max: int, chunk: int, largest: int
):
    proxy = await start_proxy(memory={"write_batch_max": batch_max, "write_chunk": chunk})
    before = len(fake.calls("/api/embed"))
    for i in range(60):  # all queued before the writer's next turn: a backlog of 60
        assert proxy.memory.observe(backlog_exchange(i))
    await proxy.flush()
    sizes = [len(c.json()["input"]) for c in fake.calls("/api/embed")[before:]]
    # one embedding call for the whole backlog (a large bound), never more than the bound;
    # a fixed batch of 32 would make it 32 + 28; the model calls are cut into ``write_chunk``
    # texts so that recall can go between them (memory.lane)
    assert max(sizes) == largest and sum(sizes) == 60
    assert proxy.memory.stats.written == 60


async def test_a_request_waits_for_the_writer_while_the_backlog_is_over_its_bound(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await start_proxy(memory={"max_backlog": 3, "backlog_wait_ms": 5000})
    fake.embed_delay_s = 0.5  # the writer's model call: the backlog stays until it returns
    for i in range(10):
        assert proxy.memory.observe(backlog_exchange(i))
    assert proxy.memory.pending == 10
    waited = await proxy.memory.backlog_room()
    assert 0.2 < waited < 4.5  # until the writer made room, not the whole 5 s
    assert proxy.memory.pending <= 3
    assert proxy.memory.stats.backlog_waits == 1
    assert await proxy.memory.backlog_room() == 0.0  # room: no wait


async def test_no_count_bound_and_no_lag_before_the_writer_has_measured_itself(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await start_proxy()
    fake.embed_delay_s = 1.0
    for i in range(300):
        assert proxy.memory.observe(backlog_exchange(i))
    assert proxy.memory.writer.seconds_per_exchange is None  # its first batch is not done
    assert await proxy.memory.backlog_room() == 0.0
    fake.embed_delay_s = 0.0


async def test_requests_are_admitted_in_order_as_the_writer_makes_room(
    start_proxy: StartProxy, fake: FakeOllama
):
    """``memory.max_lag_s``: the backlog is bounded in seconds of the writer's measured work;
    the requests it holds are let in first come first, and each one admitted counts toward the
    backlog until its exchange is queued, so they are not let in all at once."""
    proxy = await start_proxy(memory={"max_lag_s": 0.1, "write_chunk": 4, "backlog_wait_ms": 20000})
    memory = proxy.memory
    fake.embed_delay_s = 0.1  # per model call of up to 4 texts: about 25 ms per exchange
    for i in range(8):
        assert memory.observe(backlog_exchange(i))
    await proxy.flush()
    cost = memory.writer.seconds_per_exchange
    assert cost is not None and 0.02 < cost < 0.2
    for i in range(60):  # a few seconds of the writer's work
        assert memory.observe(backlog_exchange(i))
    assert memory.backlog_full()
    admitted: list[int] = []
    let_in = [asyncio.Event() for _ in range(5)]

    async def request(n: int) -> float:
        waited = await memory.backlog_room()
        admitted.append(n)
        let_in[n].set()
        return waited

    tasks = [asyncio.create_task(request(n)) for n in range(5)]
    async with asyncio.timeout(15):  # the writer writes the backlog first (a few seconds)
        await let_in[0].wait()
    await asyncio.sleep(0.3)
    # one is let in while the lag is at most 0.1 s, itself counted from then on
    room = int(0.1 / memory.writer.seconds_per_exchange) + 1
    assert 1 <= len(admitted) <= room < 5  # not all five at once
    assert admitted == list(range(len(admitted)))  # first come first
    for n in range(5):  # the admitted requests' exchanges are queued, written, room appears
        async with asyncio.timeout(15):
            await let_in[n].wait()
        assert memory.observe(backlog_exchange(1000 + n))
    waits = await asyncio.gather(*tasks)
    assert admitted == [0, 1, 2, 3, 4]
    assert waits[0] > 1.0 and waits[-1] > waits[0] + 0.1  # the last waited for room
    assert memory.stats.backlog_waits == 5
    fake.embed_delay_s = 0.0


async def test_an_idle_writer_holds_no_chat_however_many_answers_stream(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await start_proxy(memory={"max_lag_s": 0.1})
    memory = proxy.memory
    fake.embed_delay_s = 0.05
    for i in range(8):
        assert memory.observe(backlog_exchange(i))
    await proxy.flush()
    assert memory.writer.seconds_per_exchange is not None and memory.pending == 0
    # 100 requests let in, their answers still streaming: worth far more than 0.1 s of
    # writing, but nothing is due, so the next request is not held
    waits = [await memory.backlog_room() for _ in range(100)]
    assert waits == [0.0] * 100 and memory.stats.backlog_waits == 0
    fake.embed_delay_s = 0.0


async def test_chats_are_not_held_for_a_writer_whose_embedder_is_down(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await start_proxy(memory={"max_lag_s": 0.1, "retry_base_s": 0.05})
    memory = proxy.memory
    fake.embed_delay_s = 0.05
    for i in range(8):
        assert memory.observe(backlog_exchange(i))
    await proxy.flush()
    cost = memory.writer.seconds_per_exchange
    assert cost is not None
    fake.embed_fail = True  # an outage: every batch fails and waits for its back-off
    for i in range(100):
        assert memory.observe(backlog_exchange(100 + i))
    assert memory.writer.lag_s() > 0.1  # by the rows waiting, the writer is far behind
    for _ in range(500):  # a state of the writer, not an event: look every 20 ms, 10 s at most
        if memory.writer.stalled:
            break
        await asyncio.sleep(0.02)
    assert memory.writer.seconds_per_exchange == cost  # a failed batch taught it nothing
    assert not memory.backlog_full()
    assert await memory.backlog_room() == 0.0  # the outage is not made worse
    fake.embed_fail = False
    fake.embed_delay_s = 0.0
    assert await memory.flush(timeout_s=20)


async def test_the_backlog_wait_is_bounded_and_the_request_is_served(
    start_proxy: StartProxy, fake: FakeOllama
):
    proxy = await start_proxy(memory={"max_backlog": 3, "backlog_wait_ms": 200})
    fake.embed_delay_s = 3.0  # a writer far behind
    for i in range(10):
        assert proxy.memory.observe(backlog_exchange(i))
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{proxy.url}/api/chat", json=body) as r:
            assert r.status == 200
            assert (await r.json())["message"]["content"]
    assert time.monotonic() - started >= 0.2
    assert proxy.memory.stats.backlog_waits == 1
    fake.embed_delay_s = 0.0
    await proxy.flush()
    stats = proxy.memory.stats  # nothing lost: the backlog and the request ("hi" is gated)
    assert stats.queued == 11 and stats.written + stats.gated == 11
    assert proxy.memory.pending == 0
