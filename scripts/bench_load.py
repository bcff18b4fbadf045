#!/usr/bin/env python3
"""Memory under load: how many concurrent chats still get their recall, and how fast the writer
catches up when the load stops.

For each ``--clients`` count, one fresh run: the tests' fake Ollama (instant streamed replies)
as the upstream, ``symbiotic-memory serve`` as its own process with the offline MiniLM embedder
(``sentence-transformers``, on this CPU) and an embedded Chroma store in a temporary directory.
Each client is its own user (``X-Memory-User``) and sends streamed ``/api/chat`` requests without
pause for ``--seconds``, each with a new sentence. A request is *served* when its
``X-Memory-Status`` is ``injected`` or ``none`` (recall ran) and *skipped* when it is
``skipped`` (recall failed open: the embedder or store was too slow, or its breaker open).
When the load stops, the writer's backlog (``/healthz`` ``writer.pending``) is polled until it
is empty (at most 120 s): the drain time.

    python scripts/bench_load.py [--clients 1,8,64] [--seconds 20]

Latency is the whole streamed request as the client sees it; the baseline is the run with the
fewest clients, in the same invocation. Last line: ``served_min=S drain_max_s=D``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testing.fake_upstream import FakeOllama  # noqa: E402
from testing.net import free_port, wait_listening  # noqa: E402

BIN = Path(sys.executable).parent
TOPICS = ["sister", "piano", "garden", "bicycle", "novel", "recipe", "train", "dentist"]


@dataclass
class Run:
    """What one concurrency level measured."""

    clients: int
    statuses: Counter[str] = field(default_factory=Counter)
    ms: list[float] = field(default_factory=list)
    errors: int = 0
    drain_s: float = float("nan")
    pending_at_stop: int = 0
    log: str = ""
    """The proxy's stderr (WARNING and above)."""
    writer: dict[str, int] = field(default_factory=dict)
    """``/healthz`` ``writer`` after the drain (written, failed attempts, ...)."""
    trips: int = 0
    """Times a breaker opened during the run."""

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + self.errors

    @property
    def served(self) -> float:
        """Share of answered requests whose recall ran."""
        answered = sum(self.statuses.values())
        ran = self.statuses["injected"] + self.statuses["none"]
        return ran / answered if answered else 0.0


def sentence(user: int, n: int) -> str:
    topic = TOPICS[(user + n) % len(TOPICS)]
    return f"Note {n} from client {user}: my {topic} appointment moved to day {n * 7 % 31}."


async def chat(http: aiohttp.ClientSession, url: str, user: int, n: int, run: Run) -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": sentence(user, n)}],
        "stream": True,
    }
    started = time.perf_counter()
    try:
        async with http.post(
            f"{url}/api/chat", json=body, headers={"X-Memory-User": f"client-{user}"}
        ) as response:
            raw = await response.read()
            frames = [json.loads(line) for line in raw.splitlines() if line.strip()]
            if response.status != 200 or not frames or not frames[-1].get("done"):
                run.errors += 1
                return
            run.statuses[response.headers.get("X-Memory-Status", "missing")] += 1
    except (aiohttp.ClientError, TimeoutError, ValueError):
        run.errors += 1
        return
    run.ms.append((time.perf_counter() - started) * 1000)


async def client(url: str, user: int, run: Run, stop: asyncio.Event) -> None:
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        n = 0
        while not stop.is_set():
            await chat(http, url, user, n, run)
            n += 1


async def pending(http: aiohttp.ClientSession, url: str) -> int:
    async with http.get(f"{url}/healthz") as response:
        return int((await response.json())["writer"]["pending"])


async def one_level(clients: int, seconds: float, fake: FakeOllama, max_backlog: int = 0) -> Run:
    """One fresh proxy, ``clients`` concurrent users for ``seconds``, then the drain
    (``max_backlog``: the proxy's ``memory.max_backlog``, 0 for none)."""
    run = Run(clients)
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        port = free_port()
        config = Path(tmp) / "proxy.yaml"
        config.write_text(
            f"listen:\n  port: {port}\n"
            f"upstream:\n  url: {fake.url}\n"
            f"store:\n  path: {Path(tmp) / 'chroma'}\n"
            "embedder:\n  kind: sentence-transformers\n"
            f"memory:\n  outbox_path: {Path(tmp) / 'outbox.sqlite3'}\n"
            f"  max_backlog: {max_backlog}\n"
            "log_level: WARNING\n"
        )
        proxy = await asyncio.create_subprocess_exec(
            str(BIN / "symbiotic-memory"),
            "serve",
            "--config",
            str(config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=open(Path(tmp) / "proxy.log", "ab"),  # noqa: SIM115, ASYNC230
        )
        url = f"http://127.0.0.1:{port}"
        try:
            await wait_listening(port, timeout_s=120)
            async with aiohttp.ClientSession() as http:
                await chat(http, url, -1, 0, Run(0))  # warm up: the model loads at first use
                stop = asyncio.Event()
                tasks = [asyncio.create_task(client(url, u, run, stop)) for u in range(clients)]
                await asyncio.sleep(seconds)
                stop.set()
                await asyncio.gather(*tasks)
                stopped = time.perf_counter()
                run.pending_at_stop = await pending(http, url)
                for _ in range(600):  # a poll of the proxy, not an event of ours: 120 s at most
                    if not await pending(http, url):
                        break
                    await asyncio.sleep(0.2)
                run.drain_s = time.perf_counter() - stopped
                async with http.get(f"{url}/healthz") as response:
                    report = await response.json()
                run.writer = report["writer"]
                run.trips = sum(b["trips"] for b in report["breakers"].values())
        finally:
            proxy.terminate()
            await proxy.wait()
            run.log = (Path(tmp) / "proxy.log").read_text(errors="replace")
    return run


def ms_at(run: Run, q: float) -> float:
    return float(np.percentile(run.ms, q)) if run.ms else float("nan")


async def levels(clients: list[int], seconds: float, max_backlog: int = 0) -> AsyncIterator[Run]:
    """Each level of ``clients`` in turn (:func:`one_level`) against one fake upstream,
    yielded as it ends (a long run shows its progress)."""
    fake = FakeOllama()
    await fake.start()
    try:
        for count in clients:
            yield await one_level(count, seconds, fake, max_backlog)
    finally:
        await fake.close()


async def main(args: argparse.Namespace) -> None:
    runs: list[Run] = []
    async for run in levels(args.clients, args.seconds, args.max_backlog):
        runs.append(run)
        base = runs[0]
        print(
            f"clients={run.clients:3d} requests={run.requests:6d} errors={run.errors} "
            f"served={run.served:.3f} statuses={dict(run.statuses)} "
            f"p50_ms={ms_at(run, 50):7.1f} p99_ms={ms_at(run, 99):7.1f} "
            f"p50_vs_{base.clients}={ms_at(run, 50) / ms_at(base, 50):5.2f}x "
            f"backlog_at_stop={run.pending_at_stop} drain_s={run.drain_s:.2f} "
            f"breaker_trips={run.trips} written={run.writer.get('written')}",
            flush=True,
        )
    if args.log:
        for run in runs:
            # the head shows how a breaker first tripped, the tail how the run ended
            head, tail = run.log[: args.log // 2], run.log[-(args.log // 2) :]
            gap = "\n[...]\n" if len(run.log) > args.log else ""
            shown = head + gap + tail if gap else run.log
            print(f"--- proxy log, clients={run.clients} ---\n{shown}")
    print(
        f"served_min={min(r.served for r in runs):.3f} "
        f"drain_max_s={max(r.drain_s for r in runs):.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clients",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 8, 64],
        help="comma-separated concurrency levels, fewest first (the baseline)",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="load per level")
    parser.add_argument(
        "--max-backlog", type=int, default=0, help="the proxy's memory.max_backlog (0: none)"
    )
    parser.add_argument(
        "--log",
        type=int,
        default=0,
        help="print N characters of each proxy's log (first and last N/2)",
    )
    asyncio.run(main(parser.parse_args()))
