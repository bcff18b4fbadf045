"""The model lane (issue 16, section 3): one model call at a time, recall's query embeddings
before the writer's chunks but never starving them, and a recall that times out behind busy
work does not trip the embedder's breaker."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np
import pytest

from memory.batching import BatchingEmbedder
from memory.errors import EmbedderError
from memory.guarded import GuardedEmbedder
from memory.lane import LaneEmbedder, ModelLane
from memory.resilience import CircuitBreaker
from testing.fake_upstream import embed_text
from tests.test_batching import SlowEmbedder


class OneAtATime(SlowEmbedder):
    """A SlowEmbedder that records how many calls overlap (a shared CPU model must not)."""

    def __init__(self, delay_s: float = 0.02) -> None:
        super().__init__(delay_s)
        self.running = 0
        self.overlap = 0

    async def embed(self, texts: list[str]):  # type: ignore[no-untyped-def]
        self.running += 1
        self.overlap = max(self.overlap, self.running)
        try:
            return await super().embed(texts)
        finally:
            self.running -= 1


def taker(
    lane: ModelLane, order: list[str], after: Callable[[str], object] | None = None
) -> Callable[[str, str], Awaitable[None]]:
    """A call that holds ``lane`` as ``kind`` for 10 ms, recording its ``label`` in ``order``
    when granted (then calling ``after(label)``)."""

    async def call(kind: str, label: str) -> None:
        async with lane.turn(kind):  # type: ignore[arg-type]
            order.append(label)
            if after is not None:
                after(label)
            await asyncio.sleep(0.01)

    return call


async def test_write_work_is_chunked_and_recall_goes_between_its_chunks():
    inner = OneAtATime()
    lane = ModelLane(recall_burst=1)
    writes = LaneEmbedder(inner, lane, "write", chunk=4)
    recalls = LaneEmbedder(inner, lane, "recall")
    texts = [f"memory {i}" for i in range(16)]
    write = asyncio.create_task(writes.embed(texts))
    await asyncio.sleep(0.005)  # the first chunk is running
    rows = await recalls.embed(["what did I say?"])
    assert not write.done()  # the recall did not wait for all 16 texts
    vectors = await write
    assert inner.overlap == 1
    assert [len(c) for c in inner.calls] == [4, 1, 4, 4, 4]
    assert np.allclose(vectors, np.array([embed_text(t) for t in texts]), atol=1e-6)
    assert np.allclose(rows[0], embed_text("what did I say?"), atol=1e-6)


async def test_recall_first_but_a_write_gets_a_turn_after_the_burst():
    lane = ModelLane(recall_burst=2)
    order: list[str] = []
    call = taker(lane, order)

    holder = asyncio.create_task(call("write", "w0"))
    await asyncio.sleep(0)
    tasks = [asyncio.create_task(call("write", f"w{i}")) for i in (1, 2)]
    tasks += [asyncio.create_task(call("recall", f"r{i}")) for i in range(5)]
    await asyncio.gather(holder, *tasks)
    assert order == ["w0", "r0", "r1", "w1", "r2", "r3", "w2", "r4"]
    assert lane.granted == {"recall": 5, "write": 3}
    assert not lane.busy


async def test_writes_go_first_while_the_writer_is_behind():
    lane = ModelLane(recall_burst=2)
    behind = {"now": True}
    lane.write_first = lambda: behind["now"]
    order: list[str] = []

    # caught up after the first write: recall first again
    call = taker(lane, order, after=lambda label: label == "w1" and behind.update(now=False))

    holder = asyncio.create_task(call("recall", "r0"))
    await asyncio.sleep(0)
    tasks = [asyncio.create_task(call("recall", f"r{i}")) for i in (1, 2, 3)]
    tasks += [asyncio.create_task(call("write", f"w{i}")) for i in (1, 2, 3)]
    await asyncio.gather(holder, *tasks)
    # behind: the waiting write goes before the three waiting recalls; then recall first,
    # with a write after every second recall as usual
    assert order == ["r0", "w1", "r1", "r2", "w2", "r3", "w3"]


async def test_the_lane_is_handed_on_when_the_writers_hint_fails():
    lane = ModelLane()

    def broken() -> bool:
        raise OSError("disk I/O error")  # e.g. the outbox count behind Writer.behind

    lane.write_first = broken
    order: list[str] = []
    call = taker(lane, order)

    holder = asyncio.create_task(call("recall", "r0"))
    await asyncio.sleep(0)
    tasks = [asyncio.create_task(call("write", "w1")), asyncio.create_task(call("recall", "r1"))]
    async with asyncio.timeout(5):
        await asyncio.gather(holder, *tasks)
    assert order == ["r0", "r1", "w1"] and not lane.busy


async def test_a_cancelled_waiter_leaves_the_lane_usable():
    lane = ModelLane()
    started = asyncio.Event()

    async def hold() -> None:
        async with lane.turn("write"):
            started.set()
            await asyncio.sleep(0.05)

    holder = asyncio.create_task(hold())
    await started.wait()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            async with lane.turn("recall"):
                pass
    await holder
    async with asyncio.timeout(1):
        async with lane.turn("recall"):
            assert lane.busy
    assert not lane.busy


async def test_a_recall_queued_behind_write_chunks_is_not_a_breaker_failure():
    # The service's composition: the breaker guards each model call inside the lane, so
    # time spent queued is nobody's failure, and a batch of callers is one call.
    inner = SlowEmbedder(delay_s=0.1)
    lane = ModelLane()
    breaker = CircuitBreaker("embedder", 1, 10.0, 150)
    writes = LaneEmbedder(GuardedEmbedder(inner, breaker, 5000, False), lane, "write", chunk=1)
    recalls = BatchingEmbedder(
        LaneEmbedder(GuardedEmbedder(inner, breaker, 150, True), lane, "recall")
    )
    write = asyncio.create_task(writes.embed(["a", "b", "c", "d"]))
    await asyncio.sleep(0.05)
    asked = [asyncio.create_task(recalls.embed([f"question {i}"])) for i in range(8)]
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.03):  # a caller whose own deadline passes while queued
            await recalls.embed(["impatient"])
    await asyncio.gather(write, *asked)
    assert breaker.state == "closed" and breaker.failures == 0
    # the 8 recalls and the impatient one: one call, the second turn (the write waits)
    assert [len(c) for c in inner.calls][:3] == [1, 9, 1]
    # A model call that overruns its budget is a failure: threshold 1 opens the breaker.
    stuck = LaneEmbedder(GuardedEmbedder(SlowEmbedder(1.0), breaker, 150, False), lane, "recall")
    with pytest.raises(EmbedderError, match="budget"):
        await stuck.embed(["x"])
    assert breaker.state == "open"
