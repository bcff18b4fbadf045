"""Fine-tuning export: ``memories export --format sft|dpo`` and ``--embeddings`` for jsonl."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from memory.finetune import (
    EMBEDDING_KEY,
    Selection,
    archived_turns,
    dpo_records,
    sft_records,
    turns_of,
    with_embeddings,
)
from memory.record import encoded
from memory.store.archive import RawArchive
from memory.types import Exchange, MemoryHit, Scope
from proxy.app import create_app, memory_for
from proxy.cli import main
from proxy.config import load_config
from proxy.state import MEMORY
from testing.fake_upstream import FakeOllama
from tests.test_doctor import config_file


def hit(id: str, user: str, reply: str, **fields: Any) -> MemoryHit:
    text = f"User: {user}\nAssistant: {reply}" if reply else user
    return MemoryHit(id, text, encoded(**fields))


GOOD = {"polarity": "attractor", "symbiosis": 0.9}
BAD = {"polarity": "repulsor", "symbiosis": 0.1}


def test_sft_uses_live_attractors_and_counts_the_rest():
    hits = [
        hit("a", "I keep bees", "Lovely, bees need water nearby.", **GOOD),
        hit("r", "make a weapon", "Sure, step one...", **BAD),
        hit("d", "old fact", "old reply", **GOOD, dormant=True),
        hit("c", "dup fact", "dup reply", **GOOD, dormant=True, consolidated_into="a"),
        hit("n", "just one ingested message", "", **GOOD),
        hit("u", "unscored", "neutral reply"),  # reads as symbiosis 0.5: an attractor at 0.4
        hit("low", "meh", "meh reply", symbiosis=0.45),  # no polarity: above the threshold
    ]
    records, report = sft_records(hits, Selection(), {})
    assert records[0] == {
        "messages": [
            {"role": "user", "content": "I keep bees"},
            {"role": "assistant", "content": "Lovely, bees need water nearby."},
        ]
    }
    assert [r["messages"][0]["content"] for r in records] == ["I keep bees", "unscored", "meh"]
    assert report.written == 3
    assert dict(report.skipped) == {"repulsor": 1, "dormant": 1, "consolidated": 1, "no reply": 1}
    assert report.summary("sft") == (
        "wrote 3 sft records (skipped 4: 1 consolidated, 1 dormant, 1 no reply, 1 repulsor)"
    )
    strict, report = sft_records(hits, Selection(min_symbiosis=0.5, include_dormant=True), {})
    assert [r["messages"][0]["content"] for r in strict] == ["I keep bees", "old fact", "unscored"]
    assert report.skipped["below min symbiosis"] == 1
    # at threshold 0.5 the neutral (unscored) memory and the unpolarised 0.45 are repulsors
    assert sft_records(hits, Selection(threshold=0.5), {})[1].skipped["repulsor"] == 3


def test_consolidated_only_keeps_what_the_metabolism_confirmed():
    hits = [
        hit("kept", "bees", "reply", **GOOD),
        hit("gone", "bees again", "reply", **GOOD, dormant=True, consolidated_into="kept"),
        hit("again", "said twice", "reply", **GOOD, reinforcements=1),
        hit("screened", "used often", "reply", **GOOD, phase="screened"),
        hit("once", "said once", "reply", **GOOD, phase="free"),
    ]
    records, report = sft_records(hits, Selection(consolidated_only=True), {})
    assert [r["messages"][0]["content"] for r in records] == ["bees", "said twice", "used often"]
    assert report.skipped == {"consolidated": 1, "not consolidated": 1}


def test_turns_come_from_the_archive_before_the_text():
    stored = hit("a", "summary of what was said", "short", **GOOD, exchange_id="e1")
    assert turns_of(stored, {"e1": ("the real user turn", "the real reply")}) == (
        "the real user turn",
        "the real reply",
    )
    assert turns_of(stored, {"e1": ("a single message", "")}) == (
        "summary of what was said",
        "short",
    )
    assert turns_of(stored, {}) == ("summary of what was said", "short")
    assert turns_of(hit("b", "no reply at all", ""), {}) is None


def test_archived_turns_read_the_raw_archive(tmp_path: Path):
    said = Exchange(Scope("alice"), "/api/chat", "m", "what I really asked", "what it answered")
    archive = RawArchive(tmp_path / "archive.sqlite3")
    archive.open()
    try:
        archive.add([said])
        hits = [
            hit("a", "stored text", "stored reply", **GOOD, exchange_id=said.id),
            hit("b", "not archived", "reply", **GOOD, exchange_id="nope"),
        ]
        archived = archived_turns(archive, hits)
    finally:
        archive.close()
    assert archived == {said.id: ("what I really asked", "what it answered")}
    records, _ = sft_records(hits, Selection(), archived)
    assert [r["messages"][1]["content"] for r in records] == ["what it answered", "reply"]


def test_dpo_pairs_each_repulsor_with_its_nearest_attractor_above_the_floor():
    hits = [
        hit("a1", "store bike oil in winter", "Keep it sealed indoors.", **GOOD),
        hit("r1", "store bike oil in summer", "Pour it in the garden.", **BAD),
        hit("a2", "favourite colour", "Teal is calm.", **GOOD),
        hit("r2", "quantum capacitors", "They are cheese.", **BAD),
        hit("r3", "same again", "Teal is calm.", **BAD),
        hit("a3", "near but dormant", "Dormant reply.", **GOOD, dormant=True),
    ]
    vectors = np.array(
        [
            [1.0, 0.0, 0.0],
            [0.9, 0.1, 0.0],  # cosine 0.99 to a1 (and to the dormant a3)
            [0.0, 1.0, 0.0],
            [0.0, 0.0, 1.0],  # orthogonal to every attractor
            [0.0, 2.0, 0.1],  # nearest a2, whose reply is its own
            [1.0, 0.05, 0.0],
        ]
    )
    records, report = dpo_records(hits, vectors, Selection(), {})
    assert records == [
        {
            "prompt": [{"role": "user", "content": "store bike oil in summer"}],
            "chosen": [{"role": "assistant", "content": "Keep it sealed indoors."}],
            "rejected": [{"role": "assistant", "content": "Pour it in the garden."}],
        }
    ]
    assert report.written == 1
    assert report.skipped == {"no attractor near": 1, "same reply": 1}  # attractors not counted
    assert (
        report.summary("dpo")
        == "wrote 1 dpo records (skipped 2: 1 no attractor near, 1 same reply)"
    )
    everything, report = dpo_records(hits, vectors, Selection(), {}, min_similarity=-1.0)
    assert len(everything) == 2 and report.skipped == {"same reply": 1}
    none, report = dpo_records(hits, vectors, Selection(), {}, min_similarity=0.9999)
    assert none == [] and report.skipped == {"no attractor near": 3}


def test_dpo_without_attractors_or_vectors_skips_every_repulsor():
    hits = [hit("r1", "q", "bad", **BAD), hit("r2", "q2", "bad2", **BAD)]
    records, report = dpo_records(hits, np.ones((2, 3)), Selection(), {})
    assert records == [] and report.skipped == {"no attractor near": 2}
    both = [*hits, hit("a", "q", "good", **GOOD)]
    records, report = dpo_records(both, np.zeros((0, 0)), Selection(), {})
    assert records == [] and report.skipped == {"no attractor near": 2}


def test_embeddings_go_on_stored_records_only():
    hits = [hit("m1", "x", "y"), hit("m2", "z", "w")]
    vectors = np.array([[0.1, 0.2], [0.3, 0.4]], dtype=np.float32)
    records = [
        {"state": "stored", "id": "m2"},
        {"state": "pending", "id": "m1"},
        {"state": "stored", "id": "gone"},
    ]
    out = with_embeddings(records, hits, vectors)
    assert np.array_equal(np.asarray(out[0][EMBEDDING_KEY], dtype=np.float32), vectors[1])
    assert EMBEDDING_KEY not in out[1] and EMBEDDING_KEY not in out[2]
    assert EMBEDDING_KEY not in records[0]  # the input is not changed


async def _write_through_proxy(path: Path, fake: FakeOllama, said: dict[str, str]) -> list[str]:
    """Say ``said`` (user turn -> scripted reply) as alice through a proxy; returns the stored
    memory ids in the order said. The proxy is stopped before returning."""
    fake.scripted.update(said)
    runner = web.AppRunner(create_app(load_config(path)))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession(headers={"X-Memory-User": "alice"}) as client:
            for text in said:
                body = {"model": "m", "messages": [{"role": "user", "content": text}]}
                async with client.post(f"{url}/api/chat", json={**body, "stream": False}) as r:
                    assert r.status == 200
        memory = runner.app[MEMORY]
        await memory.flush()
        hits = await memory.store.all("alice")
        by_user = {h.text.split("\n")[0][len("User: ") :]: h.id for h in hits}
        ids = [by_user[text] for text in said]
        polarity = [GOOD, BAD, GOOD, BAD]
        await memory.store.update_metadata("alice", dict(zip(ids, polarity, strict=True)))
        return ids
    finally:
        await runner.cleanup()


async def _export(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[list[Any], str]:
    status = await asyncio.to_thread(main, ["memories", "export", "--user", "alice", *args])
    out, err = capsys.readouterr()
    assert status == 0, err
    return [json.loads(line) for line in out.splitlines()], err


async def test_export_dpo_sft_and_embeddings_end_to_end(
    fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = config_file(tmp_path, fake.url, symbiosis={"scorer": "lexical"})
    capsys.readouterr()
    winter = "How should I store my bike chain oil in winter"
    summer = "How should I store my bike chain oil in summer"
    said = {
        winter: "Keep the bike chain oil sealed and indoors in winter",
        summer: "Just pour it in the garden",
        "My favourite colour is teal": "Teal is a calm colour",
        "Tell me about quantum flux capacitors": "They are made of cheese",
    }
    ids = await _write_through_proxy(path, fake, said)
    config = ["--config", str(path)]
    pairs, err = await _export(capsys, *config, "--format", "dpo")
    assert pairs == [
        {
            "prompt": [{"role": "user", "content": summer}],
            "chosen": [{"role": "assistant", "content": said[winter]}],
            "rejected": [{"role": "assistant", "content": "Just pour it in the garden"}],
        }
    ]
    assert "wrote 1 dpo records (skipped 1: 1 no attractor near)" in err
    sft, err = await _export(capsys, *config, "--format", "sft", "--min-symbiosis", "0.5")
    assert [r["messages"][1]["content"] for r in sft] == [said[winter], "Teal is a calm colour"]
    assert "wrote 2 sft records (skipped 2: 2 repulsor)" in err
    plain, _ = await _export(capsys, *config)
    assert {r["id"] for r in plain} == set(ids) and all(EMBEDDING_KEY not in r for r in plain)
    full, _ = await _export(capsys, *config, "--embeddings")
    assert [{k: v for k, v in r.items() if k != EMBEDDING_KEY} for r in full] == plain
    async with aiohttp.ClientSession() as session:
        service = memory_for(load_config(path), session)
        async with service.reading():
            hits, vectors = await service.store.snapshot("alice")
    stored = {h.id: v for h, v in zip(hits, vectors, strict=True)}
    for record in full:
        vector = np.asarray(record[EMBEDDING_KEY], dtype=np.float32)
        assert vector.shape == (64,) and np.array_equal(vector, stored[record["id"]])


async def test_export_rejects_options_that_do_not_go_together(
    fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = str(config_file(tmp_path, fake.url))
    capsys.readouterr()
    for args, message in [
        (["--format", "sft", "--embeddings"], "--embeddings goes with --format jsonl"),
        (["--format", "dpo", "--min-similarity", "2"], "--min-similarity must be in [-1, 1]"),
        (["--format", "sft", "--min-symbiosis", "-0.1"], "--min-symbiosis must be in [0, 1]"),
    ]:
        status = await asyncio.to_thread(
            main, ["memories", "export", "--user", "alice", "--config", path, *args]
        )
        err = capsys.readouterr().err
        assert status == 2 and message in err and "Traceback" not in err
