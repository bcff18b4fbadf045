"""``memories list|search|show|stats``: the CLI read against the store of a proxy on the fake,
while the proxy runs (read-only beside it) and after it stopped (the CLI owns the outbox)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from rich.console import Console

from memory.types import MemoryHit
from proxy.app import create_app
from proxy.cli import main
from proxy.memories_view import Row, matching, memory_table
from testing.fake_upstream import FakeOllama
from tests.conftest import RunningProxy, StartProxy, make_config

FACTS = ("Marta lives in Porto", "Marta is vegetarian", "Marta has a cat called Miso")


def config_file(tmp_path: Path, fake: FakeOllama) -> Path:
    """The YAML of the ``start_proxy`` fixture's config (same fake, same store)."""
    path = tmp_path / "view.yaml"
    data = {
        "listen": {"port": 0},
        "upstream": {"url": fake.url},
        "store": {"path": str(tmp_path / "chroma")},
        "memory": {"timeout_ms": 2000, "placement": "system"},
    }
    path.write_text(yaml.safe_dump(data))
    return path


async def remember(proxy: RunningProxy, user: str, text: str) -> None:
    await proxy.ollama(user).chat(
        model="llama3.2", messages=[{"role": "user", "content": text}], stream=False
    )


async def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run ``symbiotic-memory memories ARGS``; returns ``(status, stdout, stderr)``."""
    capsys.readouterr()
    status = await asyncio.to_thread(main, ["memories", *args])
    out, err = capsys.readouterr()
    return status, out, err


async def marta(proxy: RunningProxy) -> dict[str, Any]:
    """Write :data:`FACTS` for ``marta`` and one memory for ``bob``; the cat one is made a
    repulsor by feedback. Returns the stored hits of ``marta`` by fact."""
    for fact in FACTS:
        await remember(proxy, "marta", fact)
    await remember(proxy, "bob", "Bob collects stamps")
    await proxy.flush()
    hits = {f: h for h in await proxy.memory.store.all("marta") for f in FACTS if f in h.text}
    assert len(hits) == 3
    revised = await proxy.memory.feedback("marta", hits[FACTS[2]].id, 0.0)
    assert revised is not None and revised["polarity"] == "repulsor"
    return hits


async def test_views_beside_a_running_proxy(
    start_proxy: StartProxy, fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    hits = await marta(await start_proxy())
    cfg = ["--config", str(config_file(tmp_path, fake))]
    mine = ["--user", "marta", *cfg]

    status, out, err = await cli(capsys, "list", *mine)
    assert status == 0, err
    assert all(fact in out for fact in FACTS) and "stamps" not in out
    assert out.strip().endswith("3 of 3 memories")
    assert "\x1b[" not in out  # not a terminal: no colour codes
    assert all(line == line.rstrip() for line in out.splitlines())  # no padding when piped
    rows = {line.split()[0]: line for line in out.splitlines() if "Marta" in line}
    assert set(rows) == {hit.id[:8] for hit in hits.values()}
    assert "repulsor" in rows[hits[FACTS[2]].id[:8]]
    assert "repulsor" not in rows[hits[FACTS[0]].id[:8]]

    status, out, _ = await cli(capsys, "list", *mine, "--json", "--limit", "2")
    listed = json.loads(out)
    assert status == 0 and listed["total"] == 3 and len(listed["memories"]) == 2
    assert {m["id"] for m in listed["memories"]} < {hit.id for hit in hits.values()}
    times = [m["time"] for m in listed["memories"]]
    assert times == sorted(times, reverse=True)

    status, out, _ = await cli(capsys, "list", *mine, "--sort", "symbiosis", "--json")
    assert status == 0 and json.loads(out)["memories"][-1]["id"] == hits[FACTS[2]].id

    status, out, _ = await cli(capsys, "list", "--user", "nobody", *cfg)
    assert status == 0 and out.strip().endswith("0 memories") and "Marta" not in out


async def test_search_show_and_stats_beside_a_running_proxy(
    start_proxy: StartProxy, fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    proxy = await start_proxy()
    hits = await marta(proxy)
    mine = ["--user", "marta", "--config", str(config_file(tmp_path, fake))]

    status, out, err = await cli(capsys, "search", "vegetarian", *mine, "--k", "3")
    assert status == 0, err
    first = next(line for line in out.splitlines() if "Marta" in line)
    assert "vegetarian" in first and first.split()[0] == hits[FACTS[1]].id[:8]
    status, out, _ = await cli(capsys, "search", "vegetarian", *mine, "--json")
    found = json.loads(out)
    assert FACTS[1] in found[0]["text"] and found[0]["score"] >= found[-1]["score"]

    cat = hits[FACTS[2]]
    status, out, _ = await cli(capsys, "show", cat.id[:6], *mine)
    assert status == 0 and cat.text.splitlines()[-1] in out and FACTS[2] in out
    assert cat.id in out and "provenance" in out and str(cat.record.exchange_id) in out
    status, out, _ = await cli(capsys, "show", cat.id, *mine, "--json")
    assert json.loads(out)["polarity"] == "repulsor" and json.loads(out)["text"] == cat.text

    status, out, err = await cli(capsys, "show", "zzzzzz", *mine)
    assert status == 1 and out == "" and len(err.strip().splitlines()) == 1
    assert "zzzzzz" in err and "not found" in err

    fake.embed_fail = True  # the next exchange waits in the running proxy's outbox
    await remember(proxy, "marta", "Marta asked about trains")
    for _ in range(100):  # the exchange is queued just after the reply
        if proxy.memory.pending:
            break
        await asyncio.sleep(0.02)
    status, out, _ = await cli(capsys, "stats", *mine, "--json")
    stats = json.loads(out)
    assert status == 0 and stats["total"] == 3 and stats["pending"] == 1
    assert stats["repulsors"] == 1 and stats["attractors"] + stats["unscored"] == 2
    assert sum(stats["tiers"].values()) == stats["total"]
    assert stats["oldest"] <= stats["newest"]
    status, out, _ = await cli(capsys, "stats", *mine)
    assert status == 0 and "repulsors" in out and "\x1b[" not in out


async def test_views_after_the_proxy_stopped(
    fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    runner = web.AppRunner(create_app(make_config(fake.url, tmp_path / "chroma")))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    proxy = RunningProxy(f"http://127.0.0.1:{runner.addresses[0][1]}", runner.app, runner)
    try:
        hits = await marta(proxy)
    finally:
        for client in proxy.clients:
            await client.close()
        await runner.cleanup()
    mine = ["--user", "marta", "--config", str(config_file(tmp_path, fake))]
    status, out, err = await cli(capsys, "stats", *mine, "--json")
    assert status == 0, err
    stats = json.loads(out)
    assert stats["total"] == 3 and stats["pending"] == 0 and stats["repulsors"] == 1
    fake.embed_cold_s = 3.0  # the embedding model is loaded again, past the 2 s recall budget
    status, out, err = await cli(capsys, "search", "Porto", *mine, "--json", "--k", "1")
    assert status == 0 and [hit["id"] for hit in json.loads(out)] == [hits[FACTS[0]].id], err
    status, out, _ = await cli(capsys, "list", *mine)
    assert status == 0 and out.strip().endswith("3 of 3 memories")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "cats", "--k", "0"], "--k must be between 1 and 100"),
        (["search", "  "], "query must not be empty"),
        (["list", "--limit", "0"], "--limit must be at least 1"),
        (["list", "--offset", "-3"], "--offset must not be negative"),
    ],
)
async def test_bad_arguments_are_one_line_and_status_2(
    fake: FakeOllama,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
):
    cfg = ["--user", "marta", "--config", str(config_file(tmp_path, fake))]
    status, out, err = await cli(capsys, *args, *cfg)
    assert status == 2 and out == "" and err.strip().splitlines() == [err.strip()]
    assert message in err


def test_show_takes_a_unique_prefix_and_the_full_id_wins_over_longer_ids():
    rows = [Row(MemoryHit(mid, "t", {}), 1.0) for mid in ("abc", "abcdef", "abd01")]
    assert [r.hit.id for r in matching(rows, "abc")] == ["abc"]  # exact, though a prefix too
    assert [r.hit.id for r in matching(rows, "abcd")] == ["abcdef"]
    assert [r.hit.id for r in matching(rows, "ab")] == ["abc", "abcdef", "abd01"]  # ambiguous
    assert matching(rows, "x") == []


def test_on_a_terminal_the_text_is_cut_and_the_other_columns_are_whole(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich then takes stdout for a terminal
    monkeypatch.setenv("COLUMNS", "100")
    meta = {"tier": "user", "event_at": 1.7e9, "symbiosis": 0.2, "polarity": "repulsor"}
    hit = MemoryHit("0123456789abcdef", "User: " + "very long text " * 20, meta, 0.25)
    screen = Console(width=100, record=True, force_terminal=True)
    for similarity in (False, True):
        screen.print(memory_table([Row(hit, 0.5)], 0.4, similarity))
    lines = screen.export_text().splitlines()
    assert all(len(line) <= 100 for line in lines)
    rows = [line for line in lines if line.startswith("01234567 ")]
    assert len(rows) == 2 and all(row.rstrip().endswith("…") for row in rows)
    assert all("repulsor" in row and "0.500" in row and "user" in row for row in rows)
    assert "0.250" in rows[1]
