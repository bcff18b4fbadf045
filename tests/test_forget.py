"""Erasure (``MemoryService.forget``, ``DELETE /memory/{id}``, ``memories forget``): the memory,
what was consolidated from it, its exchanges in the archive and the outbox, and its mention in
other memories' provenance are gone, and recall no longer finds it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from memory.record import encoded
from memory.types import Exchange, Scope
from proxy.cli import main
from testing.fake_upstream import FakeOllama
from tests.conftest import RunningProxy, StartProxy
from tests.test_admin import remember


def system_text(fake: FakeOllama) -> str:
    body = fake.calls("/api/chat")[-1].json()
    return "\n".join(m["content"] for m in body["messages"] if m["role"] == "system")


async def wait_queued(proxy: RunningProxy, user: str, count: int) -> None:
    for _ in range(100):
        if len(proxy.memory.outbox.for_user(user)) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the exchange never reached the outbox")


async def test_forget_erases_what_was_made_from_the_memory(proxy: RunningProxy, fake: FakeOllama):
    service = proxy.memory
    secret = await remember(proxy, "alice", "My locker code at the gym is 4417")
    copy = await remember(proxy, "alice", "Remember the gym locker code 4417 please")
    keeper = await remember(proxy, "alice", "I go to the gym on Mondays and Thursdays")
    hit = await service.get("alice", secret)
    assert hit is not None and hit.record.exchange_id
    own = hit.record.exchange_id
    # what a sleep cycle leaves: a copy consolidated into the secret, the secret's exchange
    # in another memory's provenance
    await service.store.update_metadata(
        "alice",
        {copy: encoded(consolidated_into=secret, dormant=True), keeper: encoded(provenance=(own,))},
    )
    # and an exchange of the secret still queued (the embedder is down, so it stays queued)
    fake.embed_fail = True
    queued = Exchange(
        Scope("alice"), "ingest", "", "the gym locker code is 4417", "ok", started_at=1.0
    )
    service.observe(queued)
    await wait_queued(proxy, "alice", 1)
    await service.store.update_metadata("alice", {secret: encoded(provenance=(own, queued.id))})
    assert service.archive is not None and any(
        r["id"] == own for r in service.archive.for_user("alice")
    )

    erased = await service.forget("alice", secret)
    assert erased is not None
    assert sorted(erased.memories) == sorted([secret, copy])
    assert own in erased.exchanges and queued.id in erased.exchanges
    assert erased.archived >= 1 and erased.queued == 1
    assert service.outbox.for_user("alice") == []
    assert not any(r["id"] == own for r in service.archive.for_user("alice"))
    kept = await service.get("alice", keeper)
    assert kept is not None and own not in kept.record.provenance
    assert await service.get("alice", copy) is None
    fake.embed_fail = False
    assert all("4417" not in h.text for h in await service.search("alice", "gym locker code", 10))
    await proxy.ollama("alice").chat(
        model="llama3.2", messages=[{"role": "user", "content": "What is my gym locker code?"}]
    )
    assert "4417" not in system_text(fake) and "Mondays" in system_text(fake)
    assert await service.forget("alice", secret) is None  # already gone
    assert await service.forget("bob", keeper) is None  # not bob's to forget


def config_yaml(tmp_path: Path, fake: FakeOllama, store: Path, port: int = 0) -> Path:
    path = tmp_path / "forget.yaml"
    data = {"upstream": {"url": fake.url}, "store": {"path": str(store)}, "listen": {"port": port}}
    path.write_text(yaml.safe_dump(data))
    return path


async def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    status = await asyncio.to_thread(main, list(args))
    return status, capsys.readouterr().err


async def test_the_forget_command_takes_a_prefix_and_asks_first(
    fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    history = tmp_path / "h.jsonl"
    history.write_text(
        '{"role": "user", "content": "My bank PIN is 9921", "timestamp": 1}\n'
        '{"role": "user", "content": "I like kayaking", "timestamp": 2}\n'
    )
    config = config_yaml(tmp_path, fake, tmp_path / "store")
    assert (
        await asyncio.to_thread(
            main, ["ingest", str(history), "--user", "u", "--config", str(config)]
        )
        == 0
    )
    status = await asyncio.to_thread(
        main, ["memories", "export", "--user", "u", "--config", str(config)]
    )
    assert status == 0
    records = capsys.readouterr().out.splitlines()
    (pin,) = [r for r in records if "9921" in r]
    mid = yaml.safe_load(pin)["id"]
    args = ["memories", "forget", mid[:10], "--user", "u", "--config", str(config)]
    status, err = await cli(capsys, *args)  # stdin is not a terminal here: no silent erasure
    assert status == 1 and "pass --yes" in err
    status, err = await cli(capsys, *args[:3], "--user", "someone-else", "--config", str(config))
    assert status == 1 and "no memory of 'someone-else'" in err
    status, err = await cli(capsys, *args, "--yes")
    assert status == 0 and f"forgot {mid}: 1 memory," in err, err
    await asyncio.to_thread(main, ["memories", "export", "--user", "u", "--config", str(config)])
    left = capsys.readouterr().out
    assert "9921" not in left and "kayaking" in left


async def test_forget_goes_through_a_running_proxy(
    start_proxy: StartProxy, fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    proxy = await start_proxy()
    mid = await remember(proxy, "alice", "My spare key is under the blue pot")
    port = proxy.runner.addresses[0][1]
    config = config_yaml(tmp_path, fake, tmp_path / "chroma", port)
    args = ["memories", "forget", mid, "--user", "alice", "--config", str(config), "--yes"]
    status, err = await cli(capsys, *args)
    assert status == 0 and f"forgot {mid}" in err, err
    await proxy.ollama("alice").chat(
        model="llama3.2", messages=[{"role": "user", "content": "Where is my spare key?"}]
    )
    assert "blue pot" not in system_text(fake)  # the proxy's own index forgot it at once
    status, err = await cli(capsys, *args)
    assert status == 1 and "404" in err
