"""``symbiotic-memory init`` and ``doctor`` as a new user runs them, against the fake Ollama."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml

from proxy.cli import main
from proxy.config import load_config
from proxy.setup_cli import template_path
from testing.fake_upstream import FakeOllama
from tests.conftest import StartProxy

ROOT = Path(__file__).resolve().parent.parent


def config_file(tmp_path: Path, url: str, **extra: object) -> Path:
    """A config as ``init`` would write it for the fake (the template, values set)."""
    tmp_path.mkdir(exist_ok=True)
    target = tmp_path / "cfg.yaml"
    args = ["init", str(target), "--upstream", url, "--upstream-kind", "ollama"]
    args += ["--store", str(tmp_path / "chroma")]
    assert main(args) == 0
    extra = {"listen": {"port": 0}, **extra}  # 11435 may be taken on this machine
    data = yaml.safe_load(target.read_text())
    for section, values in extra.items():
        data[section] = {**(data.get(section) or {}), **values}  # type: ignore[dict-item]
    target.write_text(yaml.safe_dump(data))
    return target


async def doctor(capsys: pytest.CaptureFixture[str], path: Path) -> tuple[int, str, str]:
    capsys.readouterr()
    status = await asyncio.to_thread(main, ["doctor", "--config", str(path)])
    out, err = capsys.readouterr()
    return status, out, err


def line(out: str, name: str) -> str:
    """The report line of check ``name``, and its fix line when there is one."""
    lines = out.splitlines()
    for i, text in enumerate(lines):
        if text.split()[1:2] == [name]:
            fix = lines[i + 1] if i + 1 < len(lines) and "fix:" in lines[i + 1] else ""
            return f"{text}\n{fix}"
    raise AssertionError(f"no {name} line in:\n{out}")


def test_init_writes_the_annotated_template_and_refuses_to_overwrite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    monkeypatch.chdir(tmp_path)
    assert main(["init"]) == 0
    written = tmp_path / "symbiotic-memory.yaml"
    assert written.read_text() == (ROOT / "configs" / "default.yaml").read_text()
    assert template_path() == ROOT / "configs" / "default.yaml"
    written.write_text("# mine\n")
    assert main(["init"]) == 1
    assert "exists (--force overwrites it)" in capsys.readouterr().err
    assert written.read_text() == "# mine\n"  # untouched
    assert main(["init", "--force", "--embedder", "sentence-transformers"]) == 0
    config = load_config(written, env={})
    assert config.embedder.kind == "sentence-transformers"
    assert "# ollama | openai | sentence-transformers" in written.read_text()  # comment kept


def test_init_with_a_bad_value_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    target = tmp_path / "c.yaml"
    assert main(["init", str(target), "--upstream", "ftp://x", "--upstream-kind", "ollama"]) == 2
    assert "must start with http://" in capsys.readouterr().err
    assert not target.exists() and not list(tmp_path.iterdir())


async def test_init_asks_the_server_which_api_it_speaks(fake: FakeOllama, tmp_path: Path):
    fake.without = frozenset({"/api/version"})  # what llama.cpp's server looks like
    target = tmp_path / "c.yaml"
    assert await asyncio.to_thread(main, ["init", str(target), "--upstream", fake.url]) == 0
    config = load_config(target, env={})
    assert (config.upstream.url, config.upstream.kind) == (fake.url, "openai")


async def test_doctor_passes_on_a_working_set_up(
    fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    fake.pulled = ("nomic-embed-text:latest",)
    status, out, err = await doctor(capsys, config_file(tmp_path, fake.url))
    assert status == 0, out + err
    names = [text.split()[1] for text in out.splitlines()]
    assert names == [
        "upstream",
        "embedder",
        "store",
        "files",
        "scorer",
        "manifest",
        "auth",
        "listen",
    ]
    assert all(text.startswith("ok") for text in out.splitlines())
    assert "Ollama 0.12.6" in line(out, "upstream")
    assert "64 dims" in line(out, "embedder")
    assert "\x1b[" not in out  # not a terminal: no colour codes


async def test_doctor_prints_the_pull_command_for_a_missing_embedding_model(
    fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    status, out, err = await doctor(capsys, config_file(tmp_path, fake.url))
    assert status == 1
    assert "fix: ollama pull nomic-embed-text" in line(out, "embedder")
    assert line(out, "embedder").startswith("FAIL")
    assert "embedder failed" in err


async def test_doctor_finds_a_wrong_upstream_kind_and_an_unreachable_upstream(
    fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = config_file(tmp_path, fake.url)
    fake.without = frozenset({"/api/version"})
    status, out, _ = await doctor(capsys, path)
    assert status == 1
    assert "fix: set upstream.kind: openai" in line(out, "upstream")
    down = config_file(tmp_path / "d", "http://127.0.0.1:9")
    status, out, _ = await doctor(capsys, down)
    assert status == 1
    assert "cannot be reached" in line(out, "upstream")
    assert "ollama serve" in line(out, "upstream")
    assert "cannot be reached" in line(out, "embedder")  # not "ollama pull": nothing answered


async def test_doctor_finds_a_store_built_with_another_vector_size(
    fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    fake.pulled = ("nomic-embed-text:latest",)
    path = config_file(tmp_path, fake.url)
    history = tmp_path / "history.jsonl"
    history.write_text('{"role": "user", "content": "I keep bees on my balcony in Lyon"}\n')
    assert await asyncio.to_thread(main, ["ingest", str(history), "--config", str(path)]) == 0
    status, out, _ = await doctor(capsys, path)
    assert status == 0 and "vector size matches" in line(out, "store")
    fake.embed_dim = 12
    status, out, _ = await doctor(capsys, path)
    assert status == 1
    report = line(out, "store")
    assert "holds 64-dim vectors, the embedder makes 12" in report
    assert "store.collection_prefix" in report


async def test_doctor_finds_unwritable_paths_and_a_token_file_without_users(
    fake: FakeOllama, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    fake.pulled = ("nomic-embed-text:latest",)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    tokens = tmp_path / "tokens"
    tokens.write_text("# nobody yet\n")
    path = config_file(
        tmp_path,
        fake.url,
        store={"path": str(blocker / "chroma")},
        auth={"tokens_file": str(tokens)},
    )
    status, out, _ = await doctor(capsys, path)
    assert status == 1
    assert "is not a directory" in line(out, "store")
    assert line(out, "files").startswith("FAIL")
    auth = line(out, "auth")
    assert "lists no users" in auth and "symbiotic-memory users add NAME" in auth
    assert line(out, "manifest").startswith("ok")


async def test_doctor_tells_a_running_proxy_from_another_program_on_the_port(
    fake: FakeOllama,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    start_proxy: StartProxy,
):
    fake.pulled = ("nomic-embed-text:latest",)
    running = await start_proxy()
    port = int(running.url.rsplit(":", 1)[1])
    status, out, _ = await doctor(capsys, config_file(tmp_path, fake.url, listen={"port": port}))
    assert "a proxy already runs on 127.0.0.1" in line(out, "listen") and status == 0
    other = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    taken = other.sockets[0].getsockname()[1]
    try:
        status, out, _ = await doctor(
            capsys, config_file(tmp_path / "o", fake.url, listen={"port": taken})
        )
    finally:
        other.close()
    assert status == 1
    assert "fix: stop what holds it, or set listen.port" in line(out, "listen")
