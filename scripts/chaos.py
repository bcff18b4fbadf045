#!/usr/bin/env python3
"""Chaos: the proxy under concurrent load while its upstream, embedder, store and itself fail.

Runs, all on loopback and all started here: the tests' fake Ollama (upstream and embedder), a
real Chroma server (``chroma run``) as the store, and ``symbiotic-memory serve`` as a separate
process. Clients (``--clients`` users, each its own X-Memory-User) send chats without pause,
mixing ``/api/chat`` streamed and not, ``/api/generate`` and ``/v1/chat/completions`` streamed,
each with a unique sentence, while phases inject one fault at a time:

  healthy, upstream-500, upstream-slow, upstream-disconnect (mid-stream), embedder-down,
  embedder-slow, store-down (Chroma server killed), store-locked (its SQLite file held under an
  exclusive lock), proxy-sigkill (``kill -9`` mid-load, then restarted), healthy.

A chat is *acknowledged* when the client received the complete answer. Afterwards, with every
fault healed, the proxy drains its outbox and stops, and ``symbiotic-memory memories export`` is
run per user: every acknowledged sentence must be found there (stored, or pending in the outbox),
and no user's export may hold another user's sentence.

Reported: chat success rate over the phases where the upstream is healthy and the proxy alive
(upstream-500 and upstream-disconnect are excluded: their errors are relayed as the upstream's own;
the proxy-sigkill window is excluded: nothing answers while the process is dead), acknowledged vs
lost, cross-user leaks, and per phase p50/p99 latency with the p99 added over the healthy phase.

    python scripts/chaos.py [--clients 6] [--phase-s 3]

Last line: ``chat_success=S lost=L acknowledged=A``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from testing.fake_upstream import FakeOllama  # noqa: E402
from testing.net import free_port, wait_listening  # noqa: E402

BIN = Path(sys.executable).parent
PHASES = [
    "healthy",
    "upstream-500",
    "upstream-slow",
    "upstream-disconnect",
    "embedder-down",
    "embedder-slow",
    "store-down",
    "store-locked",
    "proxy-sigkill",
    "healthy-again",
]
EXCLUDED = {"upstream-500", "upstream-disconnect", "proxy-sigkill"}


@dataclass
class Result:
    phase: str
    user: str
    text: str
    ok: bool
    ms: float
    error: str = ""
    end_phase: str = ""
    """The phase when the answer ended: a chat overlapping an excluded phase is not counted."""


@dataclass
class World:
    """Everything the chaos run starts and controls."""

    tmp: Path
    fake: FakeOllama
    proxy_port: int = field(default_factory=free_port)
    chroma_port: int = field(default_factory=free_port)
    proxy: asyncio.subprocess.Process | None = None
    chroma: asyncio.subprocess.Process | None = None
    lock: sqlite3.Connection | None = None
    phase: str = "starting"

    @property
    def config(self) -> Path:
        return self.tmp / "proxy.yaml"

    def write_config(self) -> None:
        self.config.write_text(
            f"listen:\n  port: {self.proxy_port}\n"
            f"upstream:\n  url: {self.fake.url}\n  read_timeout_s: 30\n"
            f"store:\n  url: http://127.0.0.1:{self.chroma_port}\n  path: {self.tmp / 'chroma'}\n"
            # placement system: a chat is checked against the fake's echo of the user's turn
            f"memory:\n  timeout_ms: 800\n  retry_base_s: 0.2\n  retry_max_s: 2\n"
            f"  placement: system\n"
            f"  outbox_path: {self.tmp / 'outbox.sqlite3'}\n"
            f"resilience:\n  failure_threshold: 3\n  reset_timeout_s: 1\n"
            f"  embed_timeout_ms: 2000\n  store_timeout_ms: 2000\n"
            f"log_level: WARNING\n"
        )

    async def start_chroma(self) -> None:
        self.chroma = await asyncio.create_subprocess_exec(
            str(BIN / "chroma"),
            "run",
            "--path",
            str(self.tmp / "chroma-server"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.chroma_port),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await wait_listening(self.chroma_port)

    async def kill_chroma(self) -> None:
        if self.chroma is not None:
            self.chroma.kill()
            await self.chroma.wait()
            self.chroma = None

    async def start_proxy(self) -> None:
        self.proxy = await asyncio.create_subprocess_exec(
            str(BIN / "symbiotic-memory"),
            "serve",
            "--config",
            str(self.config),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=open(self.tmp / "proxy.log", "ab"),  # noqa: SIM115, ASYNC230
        )
        await wait_listening(self.proxy_port)

    async def stop_proxy(self, sig: int) -> None:
        if self.proxy is not None:
            self.proxy.send_signal(sig)
            await self.proxy.wait()
            self.proxy = None


async def one_chat(http: aiohttp.ClientSession, world: World, user: str, n: int) -> Result:
    """One chat of the rotation; ok only when the whole expected answer arrived."""
    text = f"{user} note {n}: the {n * 7919 % 997}th pebble is {['red', 'blue', 'green'][n % 3]}"
    kind = n % 4
    url = f"http://127.0.0.1:{world.proxy_port}"
    headers = {"X-Memory-User": user}
    phase = world.phase
    started = time.perf_counter()
    try:
        if kind == 2:
            body = {"model": "m", "prompt": text, "stream": True}
            path = "/api/generate"
        elif kind == 3:
            body = {"model": "m", "messages": [{"role": "user", "content": text}], "stream": True}
            path = "/v1/chat/completions"
        else:
            body = {
                "model": "m",
                "messages": [{"role": "user", "content": text}],
                "stream": kind == 0,
            }
            path = "/api/chat"
        timeout = aiohttp.ClientTimeout(total=60)
        async with http.post(url + path, json=body, headers=headers, timeout=timeout) as r:
            raw = await r.read()
            ok = r.status == 200 and answer(kind, raw) == f"Noted: {text}"
            error = "" if ok else f"HTTP {r.status}: {raw[:120]!r}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        ok, error = False, f"{type(exc).__name__}"
    elapsed_ms = (time.perf_counter() - started) * 1000
    return Result(phase, user, text, ok, elapsed_ms, error, end_phase=world.phase)


def answer(kind: int, raw: bytes) -> str | None:
    """The assembled answer, or None if the reply was not complete and error-free."""
    try:
        return assemble(kind, raw)
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def assemble(kind: int, raw: bytes) -> str | None:
    """Parse a reply of the rotation's ``kind``; raises on anything malformed."""
    if kind == 1:
        return json.loads(raw)["message"]["content"]
    if kind == 3:
        events = [
            line[5:].strip() for line in raw.decode().splitlines() if line.startswith("data:")
        ]
        if not events or events[-1] != "[DONE]":
            return None
        chunks = [json.loads(e) for e in events[:-1]]
        if any("error" in c for c in chunks):
            return None
        return "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
        )
    frames = [json.loads(line) for line in raw.decode().splitlines() if line.strip()]
    if not frames or any("error" in f for f in frames) or not frames[-1].get("done"):
        return None
    field_name = "response" if kind == 2 else "message"
    if field_name == "message":
        return "".join(f["message"]["content"] for f in frames)
    return "".join(f["response"] for f in frames)


async def client_loop(world: World, user: str, results: list[Result], stop: asyncio.Event) -> None:
    n = 0
    async with aiohttp.ClientSession() as http:
        while not stop.is_set():
            result = await one_chat(http, world, user, n)
            results.append(result)
            n += 1
            if not result.ok and result.phase == "proxy-sigkill":
                await asyncio.sleep(0.05)  # the proxy is restarting: do not spin


async def enter(world: World, phase: str) -> None:
    """Switch the fault on for ``phase`` (and every earlier one off)."""
    fake = world.fake
    fake.fault, fake.embed_fail, fake.embed_delay_s = None, False, 0.0
    if world.lock is not None:
        world.lock.rollback()
        world.lock.close()
        world.lock = None
    if world.chroma is None:
        await world.start_chroma()
    world.phase = phase
    if phase.startswith("upstream-"):
        fake.fault = phase.removeprefix("upstream-")
    elif phase == "embedder-down":
        fake.embed_fail = True
    elif phase == "embedder-slow":
        fake.embed_delay_s = 1.5
    elif phase == "store-down":
        await world.kill_chroma()
    elif phase == "store-locked":
        world.lock = sqlite3.connect(world.tmp / "chroma-server" / "chroma.sqlite3", timeout=10)
        world.lock.execute("BEGIN EXCLUSIVE")


async def sigkill_phase(world: World, phase_s: float) -> None:
    await asyncio.sleep(phase_s / 2)
    await world.stop_proxy(signal.SIGKILL)
    await asyncio.sleep(0.5)
    await world.start_proxy()
    await asyncio.sleep(phase_s / 2)


async def export(world: World, user: str) -> list[dict[str, object]]:
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "symbiotic-memory"),
        "memories",
        "export",
        "--user",
        user,
        "--config",
        str(world.config),
        "--drain-timeout",
        "60",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 300)
    except TimeoutError:
        proc.kill()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"export failed: {err.decode()}")
    return [json.loads(line) for line in out.decode().splitlines()]


def report(results: list[Result], found: dict[str, set[str]], leaks: int) -> None:
    by_phase: dict[str, list[Result]] = {}
    for r in results:
        by_phase.setdefault(r.phase, []).append(r)
    healthy = [r.ms for r in by_phase.get("healthy", []) if r.ok]
    base_p99 = float(np.percentile(healthy, 99)) if healthy else 0.0
    print(f"{'phase':<20} {'chats':>6} {'ok':>6} {'p50 ms':>8} {'p99 ms':>8} {'+p99 ms':>8}")
    for phase in PHASES:
        rs = [r for r in by_phase.get(phase, []) if r.text]
        oks = [r.ms for r in rs if r.ok]
        p50 = float(np.percentile(oks, 50)) if oks else float("nan")
        p99 = float(np.percentile(oks, 99)) if oks else float("nan")
        print(
            f"{phase:<20} {len(rs):>6} {len(oks):>6} {p50:>8.1f} {p99:>8.1f} "
            f"{p99 - base_p99:>+8.1f}"
        )
    counted = [r for r in results if r.text and not {r.phase, r.end_phase} & EXCLUDED]
    success = sum(r.ok for r in counted) / max(1, len(counted))
    failures = [r for r in counted if not r.ok]
    for r in failures[:5]:
        print(f"  failed in {r.phase}: {r.error}")
    acknowledged = [r for r in results if r.ok]
    lost = [r for r in acknowledged if r.text not in found.get(r.user, set())]
    for r in lost[:5]:
        print(f"  lost ({r.phase}): {r.text}")
    print(f"cross-user leaks in export: {leaks}")
    print(f"chat_success={success:.3f} lost={len(lost)} acknowledged={len(acknowledged)}")


async def main(clients: int, phase_s: float) -> None:
    with tempfile.TemporaryDirectory(prefix="slm-chaos-") as tmp:
        fake = FakeOllama()
        await fake.start()
        world = World(Path(tmp), fake)
        world.write_config()
        await world.start_chroma()
        await world.start_proxy()
        users = [f"user{i}" for i in range(clients)]
        results: list[Result] = []
        stop = asyncio.Event()
        tasks = [asyncio.create_task(client_loop(world, u, results, stop)) for u in users]
        try:
            for phase in PHASES:
                await enter(world, phase)
                print(f"phase {phase}", flush=True)
                if phase == "proxy-sigkill":
                    await sigkill_phase(world, phase_s)
                else:
                    await asyncio.sleep(phase_s)
            stop.set()
            await asyncio.gather(*tasks)
            await enter(world, "drain")
            await world.stop_proxy(signal.SIGINT)
            found: dict[str, set[str]] = {}
            leaks = 0
            for user in users:
                records = await export(world, user)
                texts = {str(r["text"]).split("\n")[0].removeprefix("User: ") for r in records}
                found[user] = texts
                leaks += sum(1 for t in texts if not t.startswith(f"{user} note"))
            report(results, found, leaks)
        finally:
            stop.set()
            await world.stop_proxy(signal.SIGKILL)
            await world.kill_chroma()
            await fake.close()
            if os.environ.get("CHAOS_SHOW_LOG"):
                print((Path(tmp) / "proxy.log").read_text()[-5000:])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--phase-s", type=float, default=3.0)
    args = parser.parse_args()
    asyncio.run(main(args.clients, args.phase_s))
