"""``symbiotic-memory ingest``: history in through the write path; bad lines reported, skipped."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from memory.ingest import exchanges, parse_timestamp, read_messages
from testing.fake_upstream import FakeOllama

EXE = Path(sys.executable).parent / "symbiotic-memory"


def test_pairs_user_with_assistant_and_keeps_singles():
    lines = [
        json.dumps({"role": "user", "content": "I have a dog", "timestamp": 10, "session": "a"}),
        json.dumps({"role": "assistant", "content": "What is its name?", "session": "a"}),
        json.dumps({"role": "user", "content": "Rex", "session": "a", "timestamp": 20}),
        json.dumps({"role": "user", "content": "Also a cat", "session": "b", "timestamp": 30}),
    ]
    messages, problems = read_messages(lines, now=99.0)
    assert problems == []
    made = list(exchanges(messages, "u"))
    assert [(e.user_text, e.reply, e.started_at) for e in made] == [
        ("I have a dog", "What is its name?", 10.0),
        ("Rex", "", 20.0),
        ("Also a cat", "", 30.0),
    ]
    assert made[0].text == "User: I have a dog\nAssistant: What is its name?"
    assert made[1].text == "Rex" and made[2].scope.session == "b"


def test_bad_records_are_reported_with_their_line():
    lines = [
        '{"role": "user", "content": "ok"}',
        "{broken",
        '{"role": "user"}',
        "",
        '{"role": "user", "content": "x", "timestamp": "yesterday"}',
    ]
    messages, problems = read_messages(lines, now=5.0)
    assert [m.content for m in messages] == ["ok"]
    assert problems[0].startswith("line 2: invalid JSON")
    assert problems[1] == "line 3: 'content' must be a non-empty string"
    assert problems[2].startswith("line 5:")
    array, none = read_messages(['[{"role": "user", "content": "a"},', '{"role": "x"}]'], 0.0)
    assert [m.content for m in array] == ["a"] and none == [
        "item 2: 'content' must be a non-empty string"
    ]
    assert parse_timestamp("2024-01-02T00:00:00Z") == 1704153600.0


async def test_ingest_command_end_to_end(fake: FakeOllama, tmp_path: Path):
    history = tmp_path / "history.jsonl"
    history.write_text(
        '{"role": "user", "content": "My sister lives in Porto", "timestamp": "2023-05-08"}\n'
        '{"role": "assistant", "content": "Lovely city."}\n'
        "this line is broken\n"
        '{"role": "user", "content": "I run marathons", "timestamp": "2023-06-01"}\n'
    )
    config = tmp_path / "c.yaml"
    config.write_text(f"upstream:\n  url: {fake.url}\nstore:\n  path: {tmp_path / 'store'}\n")
    proc = await asyncio.create_subprocess_exec(
        str(EXE),
        "ingest",
        str(history),
        "--user",
        "ana",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    assert "line 3: invalid JSON" in err.decode()
    assert "ingested 3 messages as 2 memories for 'ana'" in err.decode()
    proc = await asyncio.create_subprocess_exec(
        str(EXE),
        "memories",
        "export",
        "--user",
        "ana",
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    records = [json.loads(line) for line in out.decode().splitlines()]
    assert sorted(r["text"] for r in records) == [
        "I run marathons",
        "User: My sister lives in Porto\nAssistant: Lovely city.",
    ]
    assert {r["state"] for r in records} == {"stored"}
    assert sorted(r["metadata"]["event_at"] for r in records) == [1683504000.0, 1685577600.0]
