"""The repulsor leakage audit (scripts/audit_leakage.py) on a small sample, with the fake
upstream that repeats its whole context: a repulsor's text never reaches the model, and the
control arm (scoring off) shows that the same measure does see injected text."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"

pytestmark = pytest.mark.local_embedder


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "audit_leakage", ROOT / "scripts/audit_leakage.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["audit_leakage"] = module
    spec.loader.exec_module(module)
    return module


def test_repulsor_text_never_reaches_the_model_and_the_control_shows_it_would(capsys):
    audit = load_script()
    arms = audit.main(["--data", str(DATA), "--n", "6", "--benign", "4", "--seed", "3"])
    repelled, control = arms["repelled"], arms["control"]
    assert len(repelled.replays()) >= 5  # harmful compliance is scored a repulsor
    assert all(c.status != "skipped" for c in repelled.replays() + control.replays())
    assert repelled.count("upstream") == 0 and repelled.count("repeated") == 0
    assert repelled.count("caution") >= 1  # the model is warned, without the content
    assert control.count("upstream") == len(control.replays()) == 6
    assert control.count("repeated") == 6
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("upstream=0/") and "control_upstream=6/6" in last


def test_bad_arguments_are_one_line_errors(capsys):
    audit = load_script()
    with pytest.raises(SystemExit) as caught:
        audit.main(["--data", "/nonexistent", "--n", "2"])
    assert caught.value.code == 2
    assert "no harmbench/ folder" in capsys.readouterr().err
