#!/usr/bin/env python3
"""Latency the proxy adds to a chat request, measured against the upstream alone in one run.

Starts the fake Ollama of the tests (instant replies and embeddings, so what is measured is the
proxy's own work: parsing, recall from Chroma, tokenising, injection, relay, queueing the
write-back, not an embedding model) and sends the same non-streamed and streamed ``/api/chat``
requests, interleaved, (a) straight to the upstream, (b) through the proxy with memory off,
(c) through the proxy with memory on over a store holding ``--memories`` memories of the user.
Between requests the write-back queue is drained (untimed for the request; timed on its own),
as it would be between the turns of a real conversation.

    python scripts/bench_proxy.py [--requests 300] [--memories 1000]

Baselines in the same run: memory's cost is (c) - (b), the relay's cost is (b) - (a), both on
streamed (NDJSON) requests. Without the drain between requests the writer's embedding and
upsert compete for the CPU with the next request, which is what a burst of requests would see.
It also times the one piece of memory work on the response path, the outbox append, alone
(``--requests`` x 5 appends of a typical exchange).

Last line: ``memory_added_p50_ms=A memory_added_p99_ms=B relay_added_p50_ms=C writeback_ms=D
outbox_append_p99_ms=E``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memory.store.outbox import Outbox  # noqa: E402
from memory.types import Exchange, Scope  # noqa: E402
from proxy.app import create_app  # noqa: E402
from proxy.config import Config  # noqa: E402
from proxy.state import MEMORY  # noqa: E402
from testing.fake_upstream import FakeOllama  # noqa: E402
from testing.net import serve_app  # noqa: E402

TOPICS = ["cat", "garden", "bicycle", "piano", "python", "lisbon", "coffee", "marathon", "tax"]


async def seed(runner: web.AppRunner, count: int) -> None:
    service = runner.app[MEMORY]
    for i in range(count):
        topic = TOPICS[i % len(TOPICS)]
        exchange = Exchange(
            scope=Scope("bench"),
            endpoint="/api/chat",
            model="m",
            user_text=f"Note {i}: I talked about my {topic} and detail number {i * 7919 % 1000}",
            reply=f"Noted, your {topic} detail {i}.",
            started_at=time.time(),
        )
        await service.write(exchange)


async def one(http: aiohttp.ClientSession, url: str, stream: bool, i: int) -> float:
    topic = TOPICS[i % len(TOPICS)]
    body = {
        "model": "m",
        "stream": stream,
        "messages": [{"role": "user", "content": f"What did I say about my {topic}?"}],
    }
    t0 = time.perf_counter()
    async with http.post(f"{url}/api/chat", json=body, headers={"X-Memory-User": "bench"}) as r:
        await r.read()
        assert r.status == 200, r.status
    return (time.perf_counter() - t0) * 1e3


def summary(name: str, ms: list[float]) -> tuple[float, float]:
    p50, p99 = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
    print(f"{name:<28} p50={p50:7.2f} ms  p99={p99:7.2f} ms  n={len(ms)}")
    return p50, p99


async def main(requests: int, memories: int) -> None:
    fake = FakeOllama()
    await fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        base = {"upstream": {"url": fake.url}, "store": {"path": f"{tmp}/chroma"}}
        off_config = Config.model_validate({**base, "memory": {"enabled": False}})
        off, off_url = await serve_app(create_app(off_config))
        on, on_url = await serve_app(create_app(Config.model_validate(base)))
        await seed(on, memories)
        targets = {"direct": fake.url, "proxy, memory off": off_url, "proxy, memory on": on_url}
        times: dict[str, list[float]] = {
            f"{n} ({m})": [] for n in targets for m in ("json", "ndjson")
        }
        writeback: list[float] = []
        async with aiohttp.ClientSession() as http:
            for i in range(requests):
                for name, url in targets.items():
                    for stream in (False, True):
                        key = f"{name} ({'ndjson' if stream else 'json'})"
                        times[key].append(await one(http, url, stream, i))
                        fake.requests.clear()
                        t0 = time.perf_counter()
                        await on.app[MEMORY].flush()
                        if url == on_url:
                            writeback.append((time.perf_counter() - t0) * 1e3)
        print(f"{requests} requests per row, {memories} memories stored for the user")
        rows = {key: summary(key, ms) for key, ms in times.items()}
        summary("write-back (off the path)", writeback)
        await off.cleanup()
        await on.cleanup()
    await fake.close()
    append = outbox_append_ms(requests * 5)
    print(f"{'outbox append (on the path)':<28} p50={append[0]:7.3f} ms  p99={append[1]:7.3f} ms")
    memory_on, memory_off = rows["proxy, memory on (ndjson)"], rows["proxy, memory off (ndjson)"]
    relay, direct = memory_off, rows["direct (ndjson)"]
    print(
        f"memory_added_p50_ms={memory_on[0] - memory_off[0]:.2f} "
        f"memory_added_p99_ms={memory_on[1] - memory_off[1]:.2f} "
        f"relay_added_p50_ms={relay[0] - direct[0]:.2f} "
        f"writeback_ms={float(np.median(writeback)):.2f} "
        f"outbox_append_p99_ms={append[1]:.3f}"
    )


def outbox_append_ms(count: int) -> tuple[float, float]:
    """p50 and p99 of appending a typical exchange to a fresh outbox."""
    with tempfile.TemporaryDirectory() as tmp:
        outbox = Outbox(Path(tmp) / "outbox.sqlite3")
        outbox.open()
        times = []
        for i in range(count):
            exchange = Exchange(
                scope=Scope("bench", "s1"),
                endpoint="/api/chat",
                model="llama3.2",
                user_text=f"What did I say about my {TOPICS[i % len(TOPICS)]}? " * 4,
                reply="You told me about it last week, and here is what you said. " * 8,
                started_at=time.time(),
                metrics={"eval_count": 120, "prompt_eval_count": 300, "done_reason": "stop"},
            )
            t0 = time.perf_counter()
            outbox.append(exchange)
            times.append((time.perf_counter() - t0) * 1e3)
        outbox.close()
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--memories", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.memories))
