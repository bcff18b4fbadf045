"""Nothing a client saw answered is lost: the outbox, crash replay, export, one owner."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import ollama
import pytest

from memory.errors import OutboxBusyError
from memory.record import SCHEMA_VERSION
from memory.store.outbox import Outbox, exchange_from_json, exchange_to_json
from memory.types import Exchange, Scope
from testing.fake_upstream import FakeOllama
from testing.net import free_port, wait_listening
from tests.conftest import RunningProxy, StartProxy

EXE = Path(sys.executable).parent / "symbiotic-memory"


def test_outbox_records_round_trip_with_their_schema_version(tmp_path: Path):
    exchange = Exchange(Scope("u", "s"), "/api/chat", "m", "hi", "hello", metrics={"eval_count": 2})
    raw = exchange_to_json(exchange)
    assert json.loads(raw)["schema_version"] == SCHEMA_VERSION == 3
    assert exchange_from_json(raw) == exchange
    # a row queued by version 1 (no speaker field) still reads, with the default
    v1 = {k: v for k, v in json.loads(raw).items() if k != "speaker"} | {"schema_version": 1}
    assert exchange_from_json(json.dumps(v1)) == exchange
    with pytest.raises(ValueError, match="schema_version 99"):
        exchange_from_json(json.dumps({**json.loads(raw), "schema_version": 99}))
    outbox = Outbox(tmp_path / "o.sqlite3")
    outbox.open()
    seq = outbox.append(exchange)
    assert [r.exchange for r in outbox.for_user("u")] == [exchange] and outbox.for_user("x") == []
    second = Outbox(tmp_path / "o.sqlite3")
    with pytest.raises(OutboxBusyError, match=r"memory\.outbox_path"):
        second.open()
    outbox.done(seq)
    assert outbox.count() == 0
    outbox.close()
    second.open()  # free again once the owner has closed it
    second.close()


async def test_exchange_is_in_the_outbox_before_the_client_sees_it_done(
    proxy: RunningProxy, fake: FakeOllama
):
    fake.embed_fail = True  # nothing can leave the outbox, so it must be there
    stream = await proxy.ollama("alice").chat(
        model="m", messages=[{"role": "user", "content": "remember the number 4711"}], stream=True
    )
    parts = [part async for part in stream]
    assert parts[-1].done and proxy.memory.pending == 1


async def test_openai_and_non_streamed_replies_are_queued_before_they_complete(
    proxy: RunningProxy, fake: FakeOllama
):
    fake.embed_fail = True
    reply = await proxy.ollama("alice").chat(
        model="m", messages=[{"role": "user", "content": "non streamed"}], stream=False
    )
    assert reply.done and proxy.memory.pending == 1


async def test_second_proxy_on_the_same_outbox_refuses_to_start(start_proxy: StartProxy):
    await start_proxy()
    with pytest.raises(OutboxBusyError):
        await start_proxy()


async def serve(config: Path, port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        str(EXE),
        "serve",
        "--config",
        str(config),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    await wait_listening(port, proc)
    return proc


async def export(config: Path, user: str) -> list[dict]:
    proc = await asyncio.create_subprocess_exec(
        str(EXE),
        "memories",
        "export",
        "--user",
        user,
        "--config",
        str(config),
        "--drain-timeout",
        "5",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    except TimeoutError:
        proc.kill()
        raise
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


async def test_sigkill_loses_nothing_the_client_saw_answered(fake: FakeOllama, tmp_path: Path):
    port = free_port()
    config = tmp_path / "c.yaml"
    config.write_text(
        f"listen:\n  port: {port}\nupstream:\n  url: {fake.url}\n"
        f"store:\n  path: {tmp_path / 'store'}\nmemory:\n  retry_base_s: 0.05\n"
    )
    fake.embed_fail = True  # the writer cannot write: everything waits in the outbox
    proc = await serve(config, port)
    said = [f"fact number {i}: my locker code is {1000 + i}" for i in range(5)]
    async with ollama.AsyncClient(
        host=f"http://127.0.0.1:{port}", headers={"X-Memory-User": "alice"}
    ) as client:
        for text in said:
            await client.chat(model="m", messages=[{"role": "user", "content": text}])
        async with ollama.AsyncClient(
            host=f"http://127.0.0.1:{port}", headers={"X-Memory-User": "bob"}
        ) as bob:
            await bob.chat(model="m", messages=[{"role": "user", "content": "bob's secret"}])
    proc.send_signal(signal.SIGKILL)
    await proc.wait()

    exported = await export(config, "alice")  # proxy down, embedder down: all still pending
    assert sorted(r["text"].split("\n")[0] for r in exported) == sorted(f"User: {t}" for t in said)
    assert {r["state"] for r in exported} == {"pending"}
    assert all("bob" not in json.dumps(r) for r in exported)

    fake.embed_fail = False
    proc = await serve(config, port)  # the restart replays the outbox into the store
    try:
        for _ in range(200):
            records = await export(config, "alice")  # a proxy owns the outbox: read as is
            if {r["state"] for r in records} == {"stored"}:
                break
            await asyncio.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)
        await proc.wait()
    assert len(records) == 5 and {r["state"] for r in records} == {"stored"}
    assert sorted(r["metadata"]["user"] for r in records) == ["alice"] * 5
    assert [r["text"] for r in await export(config, "bob")] == [
        "User: bob's secret\nAssistant: Noted: bob's secret"
    ]
