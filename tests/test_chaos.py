"""The chaos script, shortened, as a test: no chat lost, every chat answered while it can be."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_chaos_script_meets_its_targets():
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos.py"), "--clients", "3", "--phase-s", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stdout.strip().splitlines()[-1]
    figures = dict(part.split("=") for part in last.split())
    assert float(figures["chat_success"]) == 1.0, run.stdout
    assert int(figures["lost"]) == 0, run.stdout
    assert int(figures["acknowledged"]) > 100, run.stdout
    assert "cross-user leaks in export: 0" in run.stdout
