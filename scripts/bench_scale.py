#!/usr/bin/env python3
"""Scale in one run: recall at N memories, RSS at N users, load, writer throughput.

Issue 16's "Done when", each figure measured as follows.

1. **Recall latency of one user** at ``--sizes`` memories (synthetic 384-d vectors):
   ``scripts.bench_index.recall_latency`` (p50/p99 of ``--queries`` recalls, embedding
   excluded; resident set; the cost of merging a write), each size in a fresh process.
2. **Resident memory at ``--users`` users**: ``scripts/bench_users.py``'s
   :func:`measure_users` (one exchange and one recall per user, hashed embedder), each size in
   a fresh process, against a ``chroma run`` server this script starts (what the README
   recommends for many users; its own resident set is reported too) or, with ``--embedded``,
   an embedded store. The time of the largest size is extrapolated to 10,000 users.
3. **Recall under load** at ``--clients`` concurrent clients for ``--seconds`` each:
   ``scripts/bench_load.py``'s :func:`one_level` (fake upstream, a real ``serve`` process with
   the MiniLM embedder, one user per client): share of requests whose recall ran, p50/p99
   against the fewest-clients level of the same run, the writer's backlog when the load stops
   and the time it takes to drain.
4. **Writer throughput**: an in-process ``MemoryService`` with the hashed embedder, the
   symbiosis scorer ``--scorer`` (default ``default``, as ``configs/default.yaml``: MiniLM
   classifiers plus lexical signals) and the write gate on; ``--exchanges`` exchanges of
   ``--writer-users`` users are queued, and the time until the outbox is empty gives
   exchanges/s, with the embedder's own time subtracted.

Lines are printed as each figure is measured; at the end the time a full run would take
(extrapolated from this run's steps), a summary table and one ``key=value`` line per figure.

    python scripts/bench_scale.py [--quick] [--sizes 10000,100000,1000000]
        [--users 1,1000,10000] [--clients 1,8,64] [--seconds 20] [--embedded]
        [--queries 200] [--exchanges 4096] [--writer-users 4] [--scorer default]
        [--parts recall,users,load,writer]

``--quick`` is a smoke run (2k/5k memories, 1/50/100 users, 1/4 clients for 3 s, 512
exchanges: about 2 minutes). A size of users that would not fit in 80 % of the memory
available is not run, and the output says so.

On this machine (2 cores, often shared with another benchmark, 23 GB), with the store's
users in 16 shard collections, the parts took:

- recall at 10k/100k/1M memories: about 5 min, most of it building the 1M user;
- users: 1,000 users took 180 s; the server grew by 76 KB per user (about 2.7 MB per user
  before the store was sharded), and the proxy by 18 KB. 10,000 users took 20.4 minutes:
  the proxy grew 20.4 KB per user, the server 13.7 KB per user;
- load at 1/8/64 clients for 20 s: about 3 min. With admission control (``memory.max_lag_s``
  2 s) recall was served on every request at each level and the backlog drained in 0.7, 1.1
  and 2.1 s; p50 239 ms, 650 ms and 5.4 s (chats wait for the writer at 64 clients);
- writer: about 2 min, 35 exchanges/s with the default scorer (87 with ``--scorer lexical``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memory.config import MemoryConfig, MetabolismConfig, StoreConfig, SymbiosisConfig  # noqa: E402
from memory.service import MemoryService  # noqa: E402
from memory.store.chroma import ChromaStore  # noqa: E402
from memory.store.outbox import Outbox  # noqa: E402
from memory.types import Exchange, Scope  # noqa: E402
from scripts.bench_load import Run, levels, ms_at, sentence  # noqa: E402
from scripts.bench_users import WARM_UP_USERS, HashedEmbedder, measure_users  # noqa: E402
from testing.net import free_port  # noqa: E402

BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Sizes:
    """What one run measures (the flags of the same names)."""

    sizes: list[int]
    users: list[int]
    clients: list[int]
    seconds: float
    queries: int
    exchanges: int


FULL = Sizes([10_000, 100_000, 1_000_000], [1, 1_000, 10_000], [1, 8, 64], 20.0, 200, 4096)
QUICK = Sizes([2_000, 5_000], [1, 50, 100], [1, 4], 3.0, 50, 512)
PARTS = ["recall", "users", "load", "writer"]
TEN_K_USERS_LIMIT_S = 15 * 60
"""Beyond this estimate for 10,000 users, the output says so."""


def say(line: str) -> None:
    print(line, flush=True)


def short(n: int) -> str:
    """``1000000 -> '1M'``, ``2000 -> '2k'``, ``64 -> '64'``."""
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


@dataclass
class Report:
    """Every figure of the run: rows of the summary table and ``key=value`` pairs."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    walls: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    """Per part, ``(size, wall seconds)`` of each step: what a full run is extrapolated from."""

    unfit: dict[str, list[int]] = field(default_factory=dict)
    """Per part, the full sizes this machine's memory would not take (not run)."""

    def wall(self, part: str, size: float, seconds: float) -> None:
        self.walls.setdefault(part, []).append((size, seconds))

    def row(self, figure: str, at: str, text: str) -> None:
        self.rows.append((figure, at, text))

    def value(self, key: str, value: float | int | str) -> None:
        self.values[key] = f"{value:.3f}" if isinstance(value, float) else str(value)

    def print(self) -> None:
        say("\n== summary ==")
        width = max((len(f) for f, _, _ in self.rows), default=6)
        say(f"{'figure':<{width}}  {'at':>10}  value")
        for figure, at, text in self.rows:
            say(f"{figure:<{width}}  {at:>10}  {text}")
        for key, value in self.values.items():
            say(f"{key}={value}")


# --- child processes: one measurement each, one JSON line on stdout ---------------------


ONE_SIZE = """
import json, sys
from scripts.bench_index import recall_latency
print(json.dumps(recall_latency(int(sys.argv[1]), int(sys.argv[2])), default=float), flush=True)
"""
"""A fresh interpreter's recall latency at ``argv[1]`` memories, ``argv[2]`` queries: it
imports only ``scripts.bench_index``, so its resident set is the index's."""


async def one_users(n: int, url: str | None) -> dict[str, Any]:
    """RSS at ``n`` users, in this (fresh) process; its own collections on a shared server."""
    result = await measure_users(n, url, prefix=f"benchs{n}")
    return {**asdict(result), "per_user_kb": result.per_user_kb}


async def child(args: list[str]) -> dict[str, Any]:
    """Run ``python args...`` in a fresh interpreter; its last stdout line, as JSON
    (``{"error": ...}`` when it failed)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    out, err = await proc.communicate()
    lines = out.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# --- 1. recall latency at N memories ---------------------------------------------------


async def recall_part(sizes: list[int], queries: int, report: Report) -> None:
    say(f"\n== recall latency, one user, {queries} queries per size (embedding excluded) ==")
    for n in sizes:
        started = time.perf_counter()
        r = await child(["-c", ONE_SIZE, str(n), str(queries)])
        if "error" in r:
            say(f"memories={n}: not measured: {r['error']}")
            report.row("recall p50 / p99", short(n), "not measured")
            continue
        exhaustive = r.get("exhaustive_p50_ms")
        extra = f" hit_at_10={r['hit_at_10']:.3f}"
        if exhaustive is not None:
            extra += f" exhaustive_p50_ms={exhaustive:.2f} ({exhaustive / r['p50_ms']:.1f}x)"
        say(
            f"memories={n} p50_ms={r['p50_ms']:.2f} p99_ms={r['p99_ms']:.2f} "
            f"rss_mb={r['rss_mb']:.0f} merge_ms={r['merge_ms']:.2f}{extra}"
        )
        report.wall("recall", n, time.perf_counter() - started)
        report.row("recall p50 / p99", short(n), f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f} ms")
        report.row("recall RSS, merge", short(n), f"{r['rss_mb']:.0f} MB, {r['merge_ms']:.2f} ms")
        for key in ("p50_ms", "p99_ms", "rss_mb", "merge_ms", "exhaustive_p50_ms"):
            if r.get(key) is not None:
                report.value(f"recall_{key}_{short(n)}", float(r[key]))


# --- 2. resident memory at N users ------------------------------------------------------


def process_rss_mb(pid: int) -> float:
    """Resident set of process ``pid`` in MB (``VmRSS``); NaN when it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


@contextlib.asynccontextmanager
async def chroma_server(path: Path) -> AsyncIterator[tuple[str, int]]:
    """A ``chroma run`` server on a free port with its data in ``path``, answering its
    heartbeat: ``(url, pid)``; stopped on exit."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(BIN / "chroma"),
        *("run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await heartbeat(url, proc, 60.0)
        yield url, proc.pid
    finally:
        proc.terminate()
        await proc.wait()


async def heartbeat(url: str, proc: asyncio.subprocess.Process, timeout_s: float) -> None:
    """Return once the server at ``url`` answers ``/api/v2/heartbeat``."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"chroma run exited early ({proc.returncode})")
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with http.get(f"{url}/api/v2/heartbeat") as response:
                    if response.status == 200:
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"chroma run at {url} gave no heartbeat in {timeout_s:.0f} s")


@dataclass
class UsersSeen:
    """The users sizes measured so far: what the next size would cost."""

    sizes: list[tuple[int, float]] = field(default_factory=list)
    """``(users, seconds)`` of each measured size."""
    mb_per_user: float = 0.0
    """Growth per user at the largest size so far, of the measuring process (its ``n`` users)
    or the server (which also holds the warm-up users), whichever is larger."""

    def needed_mb(self, n: int) -> float:
        return self.mb_per_user * (n + WARM_UP_USERS)

    def fits(self, n: int) -> bool:
        """Whether ``n`` users would fit in 80 % of the memory available now."""
        return self.needed_mb(n) <= 0.8 * available_mb()

    def add(self, n: int, r: dict[str, Any], server_mb: float) -> None:
        self.sizes.append((n, float(r["seconds"])))
        server = 0.0 if math.isnan(server_mb) else server_mb / (n + WARM_UP_USERS)
        self.mb_per_user = max((r["after_mb"] - r["before_mb"]) / max(n, 1), server)


def available_mb() -> float:
    """``MemAvailable`` of this machine in MB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return math.inf


async def users_part(users: list[int], url: str | None, pid: int | None, report: Report) -> None:
    where = f"chroma run server {url}" if url else "embedded store"
    say(f"\n== resident memory per user, {where}, a fresh process per size ==")
    seen = UsersSeen()
    for n in users:
        if not seen.fits(n):
            say(
                f"users={n}: not run: at {seen.mb_per_user:.2f} MB per user it needs about "
                f"{seen.needed_mb(n) / 1024:.1f} GB, over 80 % of the "
                f"{available_mb() / 1024:.1f} GB available"
            )
            report.row("RSS after (per user)", short(n), "not run: would not fit in memory")
            continue
        server_before = process_rss_mb(pid) if pid else math.nan
        started = time.perf_counter()
        r = await child([__file__, "--one-users", str(n), *(["--url", url] if url else [])])
        if "error" in r:
            say(f"users={n}: not measured: {r['error']}")
            continue
        server = process_rss_mb(pid) - server_before if pid else math.nan
        wall = time.perf_counter() - started
        report.wall("users", 0, wall - r["seconds"])  # the process's fixed cost
        report.wall("users", n, wall)
        seen.add(n, r, server)
        users_figures(n, r, server, report)
    estimate_10k(seen, report)
    report.unfit["users"] = [n for n in FULL.users if not seen.fits(n)]


def users_figures(n: int, r: dict[str, Any], server_mb: float, report: Report) -> None:
    server_kb = server_mb * 1024 / (n + WARM_UP_USERS)  # the server also holds warm-up users
    say(
        f"users={n} rss_before_mb={r['before_mb']:.1f} rss_after_mb={r['after_mb']:.1f} "
        f"per_user_kb={r['per_user_kb']:.1f} index_kb={r['index_bytes'] / 1024:.1f} "
        f"held={r['held']} failed_open={r['skipped']} seconds={r['seconds']:.1f}"
        + ("" if math.isnan(server_mb) else f" server_grew_mb={server_mb:.1f}")
        + ("" if math.isnan(server_mb) else f" server_per_user_kb={server_kb:.0f}")
    )
    server = (
        "" if math.isnan(server_mb) else f"; server +{server_mb:.0f} MB, {server_kb:.0f} KB/user"
    )
    text = f"{r['after_mb']:.0f} MB ({r['per_user_kb']:.1f} KB/user{server})"
    report.row("RSS after (per user)", short(n), text)
    for key in ("before_mb", "after_mb", "per_user_kb", "seconds"):
        report.value(f"users_{key}_{short(n)}", float(r[key]))
    report.value(f"users_index_bytes_{short(n)}", int(r["index_bytes"]))
    if not math.isnan(server_mb):
        report.value(f"users_server_grew_mb_{short(n)}", server_mb)
        report.value(f"users_server_per_user_kb_{short(n)}", server_kb)


def estimate_10k(seen: UsersSeen, report: Report) -> None:
    """What 10,000 users would take at the largest size's rate per user (with the rates of
    the sizes before: a rate that grows with the users makes it an underestimate)."""
    if not seen.sizes:
        return
    n, seconds = seen.sizes[-1]
    estimate = seconds / max(n, 1) * 10_000
    rates = ", ".join(f"{s * 1000 / max(k, 1):.0f} ms at {k}" for k, s in seen.sizes)
    note = " (over 15 min)" if estimate > TEN_K_USERS_LIMIT_S else ""
    say(f"10,000 users would take about {estimate / 60:.1f} min{note}; per user: {rates}")
    report.row("10k users would take", "est.", f"{estimate / 60:.1f} min{note} (at {n}'s rate)")
    report.value("users_10k_estimate_s", estimate)
    if not seen.fits(10_000):
        say(
            f"10,000 users would need about {seen.needed_mb(10_000) / 1024:.1f} GB "
            f"({seen.mb_per_user:.2f} MB per user): more than this machine has available"
        )
        report.row("10k users would need", "est.", f"{seen.needed_mb(10_000) / 1024:.1f} GB")
    report.value("users_10k_needs_mb", seen.needed_mb(10_000))


# --- 3. recall under load ---------------------------------------------------------------


async def load_part(clients: list[int], seconds: float, report: Report) -> list[Run]:
    say(f"\n== recall under load, {seconds:g} s per level (fake upstream, MiniLM, serve) ==")
    runs: list[Run] = []
    started = time.perf_counter()
    async for run in levels(clients, seconds):
        report.wall("load", run.clients, time.perf_counter() - started - seconds)
        started = time.perf_counter()
        runs.append(run)
        base = runs[0]
        p50, p99 = ms_at(run, 50), ms_at(run, 99)
        r50, r99 = p50 / ms_at(base, 50), p99 / ms_at(base, 99)
        say(
            f"clients={run.clients} requests={run.requests} errors={run.errors} "
            f"served={run.served:.3f} p50_ms={p50:.1f} p99_ms={p99:.1f} "
            f"p50_vs_{base.clients}={r50:.2f}x p99_vs_{base.clients}={r99:.2f}x "
            f"backlog_at_stop={run.pending_at_stop} drain_s={run.drain_s:.2f} "
            f"breaker_trips={run.trips}"
        )
        at = f"{run.clients} cl."
        report.row("recall served", at, f"{run.served:.1%} of {run.requests} requests")
        report.row("p50 / p99 (vs base)", at, f"{p50:.0f} / {p99:.0f} ms ({r50:.2f}x / {r99:.2f}x)")
        report.row("backlog at stop, drain", at, f"{run.pending_at_stop}, {run.drain_s:.1f} s")
        for key, value in (
            ("served", run.served),
            ("p50_ms", p50),
            ("p99_ms", p99),
            ("p50_ratio", r50),
            ("p99_ratio", r99),
            ("backlog_at_stop", run.pending_at_stop),
            ("drain_s", run.drain_s),
            ("errors", run.errors),
        ):
            report.value(f"load_{key}_{run.clients}", value)
    report.value("load_ratio_base_clients", runs[0].clients if runs else 0)
    return runs


# --- 4. writer throughput ---------------------------------------------------------------


class TimedEmbedder(HashedEmbedder):
    """The hashed embedder, counting the seconds spent in it (to subtract them)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    async def embed(self, texts: list[str]) -> Any:
        started = time.perf_counter()
        try:
            return await super().embed(texts)
        finally:
            self.seconds += time.perf_counter() - started


def writer_exchange(user: int, n: int) -> Exchange:
    now = time.time()
    text = sentence(user, n)
    scope = Scope(f"writer-{user}", f"s{n // 20}")
    reply = f"Noted: {text.lower()}"
    return Exchange(scope, "/api/chat", "m", text, reply, started_at=now, finished_at=now)


async def timed_drain(service: MemoryService, users: int, first: int, count: int) -> float:
    """Queue ``count`` exchanges round-robin over ``users`` users; seconds until written."""
    started = time.perf_counter()
    for n in range(first, first + count):
        service.observe(writer_exchange(n % users, n))
    if not await service.flush(timeout_s=600):
        raise RuntimeError(f"the writer did not drain {count} exchanges in 600 s")
    return time.perf_counter() - started


def writer_service(
    tmp: Path, url: str | None, scorer: str, embedder: TimedEmbedder
) -> MemoryService:
    """As bench_users builds it, with scoring (``scorer``, or ``off``) and the write gate on,
    as in ``configs/default.yaml``."""
    store = StoreConfig(path=tmp / "chroma", url=url, collection_prefix="benchw")
    kind = "lexical" if scorer == "off" else scorer
    return MemoryService(
        MemoryConfig(timeout_ms=5000),
        ChromaStore(store),
        embedder,
        Outbox(tmp / "outbox.sqlite3"),
        symbiosis=SymbiosisConfig(enabled=scorer != "off", scorer=kind),  # type: ignore[arg-type]
        metabolism=MetabolismConfig(),
    )


async def writer_part(args: argparse.Namespace, url: str | None, report: Report) -> None:
    embedder = TimedEmbedder()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        service = writer_service(Path(tmp), url, args.scorer, embedder)
        await service.start()
        try:
            scorer = scorer_text(service, args.scorer)
            say(f"\n== writer throughput, {args.writer_users} users, scorer {scorer} ==")
            await timed_drain(service, args.writer_users, 0, 32)  # warm up
            embedder.seconds, written = 0.0, service.stats.written
            seconds = await timed_drain(service, args.writer_users, 32, args.exchanges)
            stats = service.stats
        finally:
            await service.close(timeout_s=0)
    setup = time.perf_counter() - started - seconds
    report.wall("writer", 0, setup)
    report.wall("writer", args.exchanges, setup + seconds)
    own = max(seconds - embedder.seconds, 1e-9)
    rate = args.exchanges / own
    say(
        f"exchanges={args.exchanges} seconds={seconds:.2f} embed_s={embedder.seconds:.2f} "
        f"exchanges_per_s={rate:.0f} written={stats.written - written} gated={stats.gated} "
        f"reinforced={stats.reinforced} store={'server' if url else 'embedded'}"
    )
    text = f"{rate:.0f} exchanges/s (scorer {args.scorer})"
    report.row("writer (embedding excluded)", f"{args.exchanges} ex.", text)
    report.value("writer_exchanges_per_s", rate)
    report.value("writer_scorer", args.scorer)
    report.value("writer_seconds", seconds)
    report.value("writer_embed_s", embedder.seconds)


def scorer_text(service: MemoryService, kind: str) -> str:
    if kind == "off" or service.scorer is None:
        return "off (symbiosis disabled)"
    degraded = service.scorer.degraded
    return f"{kind} (degraded to lexical: {degraded})" if degraded else kind


# --- the run ----------------------------------------------------------------------------


async def run_all(args: argparse.Namespace) -> None:
    report = Report()
    started = time.perf_counter()
    if "recall" in args.parts:
        await recall_part(args.sizes, args.queries, report)
    with tempfile.TemporaryDirectory(prefix="bench-scale-chroma-") as tmp:
        async with contextlib.AsyncExitStack() as stack:
            url, pid = None, None
            if not args.embedded and {"users", "writer"} & set(args.parts):
                url, pid = await stack.enter_async_context(chroma_server(Path(tmp)))
            if "users" in args.parts:
                await users_part(args.users, url, pid, report)
            if "load" in args.parts:
                drain_summary(await load_part(args.clients, args.seconds, report), report)
            if "writer" in args.parts:
                await writer_part(args, url, report)
    report.value("run_s", time.perf_counter() - started)
    full_estimate(report)
    report.print()


def drain_summary(runs: list[Run], report: Report) -> None:
    """The longest backlog drain of the load levels (item 3), and the lowest served share."""
    if not runs:
        return
    worst = max(runs, key=lambda r: r.drain_s)
    say(f"backlog drain after the load: at most {worst.drain_s:.2f} s ({worst.clients} clients)")
    report.row("backlog drain (worst level)", f"{worst.clients} cl.", f"{worst.drain_s:.1f} s")
    report.value("drain_max_s", worst.drain_s)
    report.value("served_min", min(r.served for r in runs))


def fitted(points: list[tuple[float, float]], sizes: list[int]) -> float:
    """Seconds for ``sizes`` from measured ``(size, seconds)``: a line through the two largest
    sizes (a fixed cost plus a cost per unit), or through zero and the largest."""
    ordered = sorted(points)
    x2, w2 = ordered[-1]
    slope, fixed = (w2 / x2 if x2 else 0.0), 0.0
    if len(ordered) > 1 and x2 > ordered[-2][0] and w2 >= ordered[-2][1]:
        x1, w1 = ordered[-2]
        slope = (w2 - w1) / (x2 - x1)
        fixed = max(0.0, w2 - slope * x2)
    return sum(fixed + slope * x for x in sizes)


def full_estimate(report: Report) -> None:
    """The time of a run at the full sizes, extrapolated from this run's steps (each linear in
    its size; the load levels: this run's overhead per level plus the full seconds)."""
    full = {
        "recall": FULL.sizes,
        "users": FULL.users,
        "load": FULL.clients,
        "writer": [FULL.exchanges],
    }
    parts = []
    for part, sizes in full.items():
        if part not in report.walls:
            parts.append(f"{part} not measured")
            continue
        unfit = report.unfit.get(part, [])
        seconds = fitted(report.walls[part], [n for n in sizes if n not in unfit])
        if part == "load":
            seconds += len(sizes) * FULL.seconds
        left_out = (
            f" ({', '.join(short(n) for n in unfit)} not run: out of memory)" if unfit else ""
        )
        parts.append(f"{part} {seconds / 60:.1f} min{left_out}")
        report.value(f"full_run_{part}_estimate_s", seconds)
    say(f"a full run (default sizes) would take about: {', '.join(parts)}")
    report.row("full run would take", "est.", ", ".join(parts))


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smoke sizes (see the docstring)")
    parser.add_argument("--sizes", type=ints, help="memories of one user, comma-separated")
    parser.add_argument("--users", type=ints, help="user counts, comma-separated")
    parser.add_argument("--clients", type=ints, help="concurrency levels, fewest first")
    parser.add_argument("--seconds", type=float, help="load per concurrency level")
    parser.add_argument("--queries", type=int, help="recalls timed per size")
    parser.add_argument("--exchanges", type=int, help="exchanges the writer drains")
    parser.add_argument("--writer-users", type=int, default=4, help="users of those exchanges")
    parser.add_argument(
        "--scorer",
        choices=["default", "lexical", "off"],
        default="default",
        help="the writer's symbiosis scorer (default: as configs/default.yaml)",
    )
    parser.add_argument("--embedded", action="store_true", help="embedded Chroma, no server")
    parser.add_argument("--parts", type=lambda s: s.split(","), default=PARTS, help=",".join(PARTS))
    parser.add_argument("--one-users", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for key, value in asdict(QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main() -> None:
    args = parse()
    if args.one_users is not None:  # a child of users_part
        print(json.dumps(asyncio.run(one_users(args.one_users, args.url))), flush=True)
    else:
        asyncio.run(run_all(args))


if __name__ == "__main__":
    main()
