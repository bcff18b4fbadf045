"""Nothing answered is lost on a full disk; export is one consistent view while the writer runs.

The disk is filled without root: ``PRAGMA max_page_count`` on the outbox's own connection caps
the database at its current size, a filler table takes every free page, and an exchange larger
than a page then needs a new one, so SQLite raises the real ``sqlite3.OperationalError:
database or disk is full`` (SQLITE_FULL). Dropping the filler and lifting the cap is the disk
getting space back.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import ollama
import pytest

from memory.errors import StoreError
from memory.record import provenance
from memory.store.outbox import Outbox
from memory.types import Exchange, Scope
from memory.write.spill import Spill
from tests.conftest import RunningProxy, StartProxy

LONG = " and more detail" * 400
"""Padding that makes an exchange larger than one SQLite page (it needs a new one)."""


def fill(db: sqlite3.Connection) -> Callable[[], None]:
    """Make the database "full" (no free page, no new one); returns the undo."""
    db.execute("CREATE TABLE IF NOT EXISTS filler (b BLOB)")
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")
    for size in (4096, 512, 64, 8, 1):  # take every free page, then what is left in them
        while True:
            try:
                db.execute("INSERT INTO filler VALUES (zeroblob(?))", (size,))
            except sqlite3.OperationalError as exc:
                assert "database or disk is full" in str(exc)
                break

    def undo() -> None:
        db.execute("DROP TABLE filler")
        db.execute("PRAGMA max_page_count = 1073741823")

    return undo


def exchange(i: int, user: str = "u") -> Exchange:
    return Exchange(Scope(user, "s"), "/api/chat", "m", f"turn {i}{LONG}", f"reply {i}")


def test_full_outbox_raises_the_real_sqlite_error(tmp_path: Path):
    outbox = Outbox(tmp_path / "o.sqlite3")
    outbox.open()
    fill(outbox.db)
    with pytest.raises(StoreError, match="database or disk is full"):
        outbox.append(exchange(0))
    outbox.close()


def test_spill_keeps_order_bounds_memory_and_logs_state_changes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    outbox = Outbox(tmp_path / "o.sqlite3")
    outbox.open()
    spill = Spill(outbox, max_items=3)
    assert spill.put(exchange(0)) and not spill.unsaved
    undo = fill(outbox.db)
    with caplog.at_level(logging.ERROR, "memory.write.spill"):
        assert [spill.put(exchange(i)) for i in range(1, 6)] == [False] * 5
    assert spill.unsaved and [e.user_text for e in spill.queue] == [
        exchange(i).user_text for i in (1, 2, 3)
    ]  # the oldest are kept; 4 and 5 arrived to a full spill queue
    assert (spill.spilled, spill.dropped) == (3, 2)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot take exchanges" in m for m in messages) == 1  # once, not per exchange
    assert sum("memory LOST" in m for m in messages) == 2  # every loss
    assert spill.snapshot()["ok"] is False and spill.snapshot()["spilled"] == 3
    caplog.clear()
    undo()
    with caplog.at_level(logging.ERROR, "memory.write.spill"):
        assert spill.put(exchange(6))  # the spilled ones go first, then this one
    assert not spill.unsaved and not spill.queue
    queued = [row.exchange.user_text for row in outbox.due(float("inf"), 100)]
    assert queued == [exchange(i).user_text for i in (0, 1, 2, 3, 6)]
    assert [r.getMessage() for r in caplog.records] == [
        "outbox recovered: it takes exchanges again; 3 spilled exchanges moved into it"
    ]
    outbox.close()


def test_text_sqlite_cannot_store_is_kept_not_refused(tmp_path: Path):
    outbox = Outbox(tmp_path / "o.sqlite3")
    outbox.open()
    odd = Exchange(Scope("b\udcffob", "s"), "/api/chat", "m", "lone \ud800 here", "fine \U0001f600")
    outbox.append(odd)  # raised UnicodeEncodeError before
    (row,) = outbox.for_user("b\udcffob")
    assert row.exchange.user_text == "lone \ufffd here" and row.exchange.reply == "fine \U0001f600"
    assert row.exchange.scope.user == "b\ufffdob"
    outbox.close()


async def stored_count(proxy: RunningProxy, user: str) -> int:
    """How many memories ``/memory/search`` finds for ``user`` (all of them: k = 100)."""
    url = f"{proxy.url}/memory/search"
    async with aiohttp.ClientSession() as http:
        async with http.get(url, params={"q": "turn", "k": "100", "user": user}) as resp:
            assert resp.status == 200
            return len(await resp.json())


async def healthz(proxy: RunningProxy) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/healthz") as resp:
            assert resp.status == 200
            return dict(await resp.json())


async def test_full_disk_through_the_proxy_nothing_lost(start_proxy: StartProxy):
    proxy = await start_proxy(
        memory={"spill_retry_s": 0.05}, metabolism={"enabled": False}, symbiosis={"enabled": False}
    )
    statuses: list[str] = []

    async def seen(response: httpx.Response) -> None:
        statuses.append(response.headers.get("X-Memory-Status", ""))

    client = ollama.AsyncClient(
        host=proxy.url, headers={"X-Memory-User": "alice"}, event_hooks={"response": [seen]}
    )
    proxy.clients.append(client)

    async def chat(i: int) -> None:
        message = {"role": "user", "content": f"turn {i} about topic {i}{LONG}"}
        reply = await client.chat(model="m", messages=[message])
        assert reply.done and reply.message.content

    await chat(0)
    await proxy.flush()
    undo = fill(proxy.memory.outbox.db)
    for i in range(1, 11):
        await chat(i)
    # the first chat after the disk filled was answered before its own append failed; every
    # later one arrived while the proxy could not save and says so
    assert statuses[1] != "unsaved" and statuses[2:] == ["unsaved"] * 9
    health = await healthz(proxy)
    assert health["status"] == "degraded"
    assert health["outbox"]["ok"] is False and health["outbox"]["spilled"] == 10
    assert "database or disk is full" in health["outbox"]["error"]
    assert health["outbox"]["dropped"] == 0
    assert await stored_count(proxy, "alice") == 1
    held = [r for r in await proxy.memory.export("alice") if r["state"] == "pending"]
    assert len(held) == 10 and all(r["metadata"]["spilled"] for r in held)
    undo()  # space is back: the periodic retry moves the spilled exchanges, in order
    for _ in range(100):
        if (await healthz(proxy))["outbox"]["ok"]:
            break
        await asyncio.sleep(0.05)
    await proxy.flush()
    health = await healthz(proxy)
    assert health["status"] == "ok" and health["outbox"]["spilled"] == 0
    assert await stored_count(proxy, "alice") == 11  # nothing lost
    await chat(11)
    assert statuses[-1] != "unsaved"


def exchange_counts(records: list[dict[str, Any]]) -> Counter[str]:
    """How often each exchange id appears in an export (once per record that holds it)."""
    counts: Counter[str] = Counter()
    for record in records:
        if record["state"] == "stored":
            meta = record["metadata"]
            ids = set(provenance(meta)) | {meta["exchange_id"]}
        else:
            ids = {record["id"]}
        counts.update(ids)
    return counts


async def test_export_while_the_writer_drains_has_every_exchange_once(
    start_proxy: StartProxy,
):
    proxy = await start_proxy(
        memory={"write_batch_max": 8, "write_delay_ms": 0, "max_lag_s": 0},
        metabolism={"enabled": False},
    )
    service = proxy.memory
    said = [
        Exchange(Scope("alice", "s"), "/api/chat", "m", f"fact {i}", f"ok {i}") for i in range(240)
    ]
    for one in said:
        assert service.observe(one)
    expected = {one.id for one in said}
    exports = 0
    while service.pending:
        counts = exchange_counts(await service.export("alice"))
        assert set(counts) == expected, f"lost: {len(expected - set(counts))}"
        assert max(counts.values()) == 1, "an exchange exported twice"
        exports += 1
    assert exports >= 3  # the exports did overlap the drain
    await proxy.flush()
    final = await service.export("alice")
    assert {r["state"] for r in final} == {"stored"} and exchange_counts(final) == Counter(expected)


async def test_the_writer_outlives_an_outbox_that_fails_under_it(
    start_proxy: StartProxy,
):
    """A disk I/O error while the writer reads the outbox is logged and retried; the writer
    loop does not die with it (nothing would be written until a restart)."""
    proxy = await start_proxy(memory={"retry_base_s": 0.05})
    outbox = proxy.memory.outbox
    real_due = outbox.due
    failures = {"left": 3}

    def failing_due(now: float, limit: int = 32):  # type: ignore[no-untyped-def]
        if failures["left"]:
            failures["left"] -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return real_due(now, limit)

    outbox.due = failing_due  # type: ignore[method-assign]
    assert proxy.memory.observe(exchange(1, "alice"))
    assert await proxy.memory.flush(timeout_s=10)
    assert failures["left"] == 0 and proxy.memory.stats.written == 1
    assert not proxy.memory.writer._task.done()  # type: ignore[union-attr]
