"""``symbiotic-memory demo`` against the fake upstream (the real-model run is in
``test_real_llm.py``)."""

from __future__ import annotations

import asyncio
import io
import re
import sys
from pathlib import Path

from proxy.config import Config
from proxy.demo import run_demo
from testing.fake_upstream import FakeOllama
from testing.net import free_port

EXE = Path(sys.executable).parent / "symbiotic-memory"


async def test_demo_shows_recall_injection_and_storage(fake: FakeOllama, tmp_path: Path):
    config = Config.model_validate(
        {"upstream": {"url": fake.url}, "store": {"path": str(tmp_path / "mine")}}
    )
    out = io.StringIO()
    injected = await run_demo(config, None, max_tokens=8, out=out)
    text = out.getvalue()
    assert injected == 2 and "model llama3.2" in text
    turns = text.split("--- turn ")[1:]
    assert len(turns) == 4 and "recalled: nothing" in turns[0]
    assert "recalled: nothing" in turns[1]  # turn 1 is still in that conversation's history
    assert "peanuts" in turns[2].split("model:")[0]
    assert "Lisbon" in turns[3].split("model:")[0]  # recalled before the model answered
    found = re.findall(r"symbiosis: (\d\.\d\d) \((attractor|repulsor)\)", text)
    scores = [float(x) for x, _ in found]
    assert text.count("stored:   memory") == 4 and len(scores) == 4
    # harmless and answered: attractors. The fake model's replies to turns 3 and 4 repeat
    # the injected block (it echoes its user turn), which no real answer does: only scored
    assert (
        all(0.5 < x <= 1.0 for x in scores[:2]) and [p for _, p in found[:2]] == ["attractor"] * 2
    )
    assert all(0.0 <= x <= 1.0 for x in scores)
    assert "4 memories stored" in text
    assert not (tmp_path / "mine").exists()  # the user's own store is never touched
    sent = fake.calls("/api/chat")[-1].json()
    assert sent["options"]["num_predict"] == 8


async def test_demo_without_an_upstream_is_one_line(tmp_path: Path):
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(EXE),
        "demo",
        env={
            "SYMBIOTIC_MEMORY__UPSTREAM__URL": f"http://127.0.0.1:{port}",
            "SYMBIOTIC_MEMORY__STORE__PATH": str(tmp_path / "s"),
            "PATH": "/usr/bin:/bin",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    lines = stderr.decode().strip().splitlines()
    assert proc.returncode == 1 and stdout == b""
    assert len(lines) == 1 and lines[0].startswith("symbiotic-memory: demo: cannot list models")
