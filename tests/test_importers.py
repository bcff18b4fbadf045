"""``memories import``: each sample export of ``../shared/data/exports`` into an empty store,
checked against its answer key (``expected.json``: facts it must yield, abandoned branches it
must not), pickle refused unread, re-import idempotent, export JSONL restored losslessly."""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memory.errors import ImportFormatError
from memory.importers import detect, read
from memory.importers.chats import read_chatgpt
from memory.ingest import exchanges
from proxy.cli import main
from testing.fake_upstream import FakeOllama

EXPORTS = Path(__file__).resolve().parents[2] / "shared" / "data" / "exports"
KEY = json.loads((EXPORTS / "expected.json").read_text())
SAMPLES = [name for name, want in KEY["files"].items() if not want.get("must_refuse")]
FORMAT_OF = {
    "chatgpt/conversations.json": "chatgpt",
    "openwebui/chat-export.json": "openwebui",
    "latent-memory/csv-json": "latent-csv",
    "latent-memory/npy-json": "latent-npy",
    "latent-memory/hdf5/latent_memory.h5": "latent-hdf5",
}


def config_for(tmp_path: Path, fake: FakeOllama, name: str = "store") -> Path:
    config = tmp_path / f"{name}.yaml"
    config.write_text(f"upstream:\n  url: {fake.url}\nstore:\n  path: {tmp_path / name}\n")
    return config


async def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = await asyncio.to_thread(main, list(args))
    out, err = capsys.readouterr()
    return status, out, err


async def exported(capsys: pytest.CaptureFixture[str], config: Path, user: str) -> list[Any]:
    status, out, err = await cli(
        capsys, "memories", "export", "--user", user, "--config", str(config)
    )
    assert status == 0, err
    return [json.loads(line) for line in out.splitlines()]


def mentions(texts: list[str], keywords: list[str]) -> bool:
    return any(k.lower() in t.lower() for t in texts for k in keywords)


@pytest.mark.parametrize("sample", SAMPLES)
async def test_each_sample_yields_its_facts_and_none_of_its_negatives(
    sample: str, fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = config_for(tmp_path, fake)
    status, _, err = await cli(
        capsys,
        "memories",
        "import",
        str(EXPORTS / sample),
        "--user",
        "marta",
        "--config",
        str(config),
    )
    assert status == 0, err
    assert f"({FORMAT_OF[sample]})" in err
    texts = [r["text"] for r in await exported(capsys, config, "marta")]
    want = KEY["files"][sample]
    missing = [f for f in want["facts"] if not mentions(texts, KEY["facts"][f]["keywords"])]
    assert missing == [], texts
    for negative in want["negatives"]:
        assert not mentions(texts, KEY["negatives"][negative]["keywords"]), texts
    assert not mentions(texts, want["skip_markers"]) if want["skip_markers"] else True
    assert all(r["state"] == "stored" for r in await exported(capsys, config, "marta"))


def test_formats_are_detected_from_content_and_layout(tmp_path: Path):
    for sample, fmt in FORMAT_OF.items():
        assert detect(EXPORTS / sample) == fmt
    assert detect(EXPORTS / "latent-memory" / "npy-json" / "embeddings.npy") == "latent-npy"
    # ChatGPT's download is a zip holding conversations.json
    conversations = EXPORTS / "chatgpt" / "conversations.json"
    with zipfile.ZipFile(tmp_path / "export.zip", "w") as archive:
        archive.write(conversations, "conversations.json")
    assert detect(tmp_path / "export.zip") == "chatgpt"
    zipped = read(tmp_path / "export.zip", "auto", "marta", 0.0).messages
    assert zipped == read(conversations, "auto", "marta", 0.0).messages and zipped
    # the same export unpacked and zipped again: its files sit in a folder
    with zipfile.ZipFile(tmp_path / "again.zip", "w") as archive:
        archive.writestr("chatgpt-2025/chat.html", "<html></html>")
        archive.write(conversations, "chatgpt-2025/conversations.json")
    assert read(tmp_path / "again.zip", "auto", "marta", 0.0).messages == zipped


def test_latent_memory_summaries_keep_their_times_and_conversations():
    parsed = read(EXPORTS / "latent-memory" / "csv-json", "auto", "marta", now=0.0)
    assert parsed.problems == []
    assert [m.session for m in parsed.messages][:2] == ["conv_0", "conv_1"]
    assert parsed.messages[0].timestamp == 1743501600.0  # "2025-04-1 10:00:00" UTC
    npy = read(EXPORTS / "latent-memory" / "npy-json", "auto", "marta", now=0.0)
    hdf5 = read(EXPORTS / "latent-memory" / "hdf5" / "latent_memory.h5", "auto", "marta", 0.0)
    assert [m.content for m in npy.messages] == [m.content for m in parsed.messages]
    assert [m.content for m in hdf5.messages] == [m.content for m in parsed.messages]


async def test_pickle_is_refused_unread_and_creates_nothing(
    fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = config_for(tmp_path, fake)
    pkl = EXPORTS / "latent-memory" / "pkl" / "latent_memory.pkl"
    status, _, err = await cli(
        capsys, "memories", "import", str(pkl), "--user", "marta", "--config", str(config)
    )
    assert status == 1 and "pickle" in err and "runs any code" in err
    assert len(err.strip().splitlines()) == 1
    # a pickle that would create a file if it were ever unpickled, disguised as JSON
    canary = tmp_path / "unpickled"
    disguised = tmp_path / "conversations.json"
    disguised.write_bytes(pickle.dumps(Touch(str(canary)), protocol=4))
    status, _, err = await cli(
        capsys, "memories", "import", str(disguised), "--user", "marta", "--config", str(config)
    )
    assert status == 1 and "pickle" in err
    assert not canary.exists()
    assert await exported(capsys, config, "marta") == []


class Touch:
    """Unpickling this creates ``path`` (what a hostile pickle could do, harmlessly)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (Path.touch, (Path(self.path),))  # type: ignore[return-value]


async def test_importing_twice_adds_nothing(
    fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = config_for(tmp_path, fake)
    args = ["memories", "import", str(EXPORTS / "openwebui" / "chat-export.json")]
    args += ["--user", "marta", "--config", str(config)]
    assert (await cli(capsys, *args))[0] == 0
    first = await exported(capsys, config, "marta")
    status, _, err = await cli(capsys, *args)
    assert status == 0 and "0 exchanges written" in err
    assert sorted(r["id"] for r in await exported(capsys, config, "marta")) == sorted(
        r["id"] for r in first
    )


async def test_export_jsonl_round_trips_losslessly(
    fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    source = config_for(tmp_path, fake, "source")
    chats = str(EXPORTS / "chatgpt" / "conversations.json")
    await cli(capsys, "memories", "import", chats, "--user", "marta", "--config", str(source))
    status, out, err = await cli(
        capsys, "memories", "export", "--user", "marta", "--config", str(source), "--embeddings"
    )
    assert status == 0, err
    before = [json.loads(line) for line in out.splitlines()]
    assert all(len(r["embedding"]) == 64 for r in before)
    ordered = sorted(before, key=lambda r: r["id"])
    dump = tmp_path / "marta.jsonl"
    dump.write_text(out)
    for name, lines in (
        ("target", out),
        (
            "reembedded",
            "".join(
                json.dumps({k: v for k, v in r.items() if k != "embedding"}) + "\n" for r in before
            ),
        ),
    ):
        dump.write_text(lines)
        target = config_for(tmp_path, fake, name)
        status, _, err = await cli(
            capsys, "memories", "import", str(dump), "--user", "marta", "--config", str(target)
        )
        assert status == 0 and "(jsonl)" in err, err
        status, again, _ = await cli(
            capsys, "memories", "export", "--user", "marta", "--config", str(target), "--embeddings"
        )
        after = [json.loads(line) for line in again.splitlines()]
        by_id = sorted(after, key=lambda r: r["id"])
        # ids, texts and every metadata key are the same; the vectors (exported, or made
        # again by the same embedder) agree to float32 rounding: a stored vector goes
        # float32 -> JSON decimal -> float32, which can move its last bit
        strip = [{k: v for k, v in r.items() if k != "embedding"} for r in by_id]
        assert [{k: v for k, v in r.items() if k != "embedding"} for r in ordered] == strip
        for x, y in zip(ordered, by_id, strict=True):
            assert np.allclose(x["embedding"], y["embedding"], rtol=0, atol=1e-6), x["id"]
    made = exchanges(read(Path(chats), "chatgpt", "marta", 0.0).messages, "marta")
    assert len(before) == len(list(made))  # every exchange of the live branches, once


async def test_bad_input_is_one_line_and_writes_nothing(
    fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = config_for(tmp_path, fake)
    junk = tmp_path / "notes.txt"
    junk.write_text("just some text\n")
    (tmp_path / "empty.json").write_text("\n")
    cases = ((junk, "not a format"), (tmp_path / "nope.json", "no such file"))
    for path, words in (*cases, (tmp_path / "empty.json", "the file is empty")):
        status, _, err = await cli(
            capsys, "memories", "import", str(path), "--user", "u", "--config", str(config)
        )
        assert status == 1 and words in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(ImportFormatError, match="embedding rows for"):
        bad = tmp_path / "pair"
        bad.mkdir()
        (bad / "metadata.json").write_text('[{"summary": "a"}, {"summary": "b"}]')
        (bad / "embeddings.csv").write_text("0,1\n0.1,0.2\n")
        read(bad, "auto", "u", 0.0)


def test_chatgpt_branch_walk_survives_a_cycle_and_a_lost_current_node():
    def node(key: str, parent: str | None, role: str, text: str, t: float) -> dict[str, Any]:
        message = {"author": {"role": role}, "create_time": t}
        message["content"] = {"content_type": "text", "parts": [text]}
        return {"id": key, "parent": parent, "children": [], "message": message}

    mapping = {"a": node("a", "b", "user", "loop one", 1), "b": node("b", "a", "assistant", "x", 2)}
    messages, _ = read_chatgpt([{"id": "c", "mapping": mapping, "current_node": "b"}], "t")
    assert [m.content for m in messages] == ["loop one", "x"]
    mapping = {"r": node("r", None, "user", "hello", 1), "s": node("s", "r", "assistant", "hi", 2)}
    mapping["r"]["children"] = ["s"]
    messages, _ = read_chatgpt([{"id": "c", "mapping": mapping}], "t")  # no current_node
    assert [(m.role, m.content) for m in messages] == [("user", "hello"), ("assistant", "hi")]


async def test_dry_run_counts_and_writes_nothing(
    fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = config_for(tmp_path, fake)
    chats = str(EXPORTS / "openwebui" / "chat-export.json")
    status, _, err = await cli(
        capsys, "memories", "import", chats, "--user", "marta", "--config", str(config), "--dry-run"
    )
    assert status == 0 and "openwebui, 8 messages in 4 exchanges; nothing written" in err, err
    assert await exported(capsys, config, "marta") == []


def closed_pipe_run(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run the CLI with its stdout a pipe whose reading end is already closed (``| head``
    that has stopped reading)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        command = [sys.executable, "-m", "proxy.cli", *args]
        return subprocess.run(command, stdout=write_end, stderr=subprocess.PIPE, timeout=120)
    finally:
        os.close(write_end)


async def test_a_reader_that_stops_reading_gets_no_traceback(
    fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = config_for(tmp_path, fake)
    chats = str(EXPORTS / "chatgpt" / "conversations.json")
    await cli(capsys, "memories", "import", chats, "--user", "marta", "--config", str(config))
    for command in (["export"], ["export", "--format", "sft"], ["list"]):
        done = await asyncio.to_thread(
            closed_pipe_run, "memories", *command, "--user", "marta", "--config", str(config)
        )
        assert done.returncode == 1 and done.stderr == b"", (command, done.stderr)


async def test_an_export_larger_than_one_chroma_batch_restores(
    fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    # chromadb refuses an upsert of more than get_max_batch_size() records (5461 embedded)
    source = config_for(tmp_path, fake, "source")
    chats = str(EXPORTS / "openwebui" / "chat-export.json")
    await cli(capsys, "memories", "import", chats, "--user", "ana", "--config", str(source))
    status, out, err = await cli(
        capsys, "memories", "export", "--user", "ana", "--config", str(source), "--embeddings"
    )
    assert status == 0, err
    template = json.loads(out.splitlines()[0])
    rng = np.random.default_rng(7)
    lines = []
    for i in range(6000):
        vector = rng.normal(size=64)
        record = dict(template, id=f"{i:032x}", text=f"fact number {i}")
        lines.append(json.dumps(record | {"embedding": (vector / np.linalg.norm(vector)).tolist()}))
    big = tmp_path / "big.jsonl"
    big.write_text("\n".join(lines) + "\n")
    target = config_for(tmp_path, fake, "target")
    status, _, err = await cli(
        capsys, "memories", "import", str(big), "--user", "ana", "--config", str(target)
    )
    assert status == 0 and "6000 memories restored" in err, err
    after = await exported(capsys, target, "ana")
    assert sorted(r["id"] for r in after) == sorted(json.loads(line)["id"] for line in lines)
