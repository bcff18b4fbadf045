"""``scripts/bench_locomo.py`` end to end on a small conversation in LoCoMo's format."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.local_embedder

ROOT = Path(__file__).resolve().parent.parent


def conversation() -> dict[str, object]:
    """Two dated sessions, six turns; one evidence text ends with a space, as 11 of the 519
    evidence turns of the development conversations do."""
    return {
        "sample_id": "tiny-1",
        "conversation": {
            "speaker_a": "Ana",
            "speaker_b": "Ben",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": "Ana", "dia_id": "D1:1", "text": "I adopted a grey cat named Miso. "},
                {"speaker": "Ben", "dia_id": "D1:2", "text": "Lovely! I just started rowing."},
                {"speaker": "Ana", "dia_id": "D1:3", "text": "Rowing sounds hard work."},
            ],
            "session_2_date_time": "10:00 am on 20 June, 2023",
            "session_2": [
                {"speaker": "Ben", "dia_id": "D2:1", "text": "We won the regatta last Sunday!"},
                {"speaker": "Ana", "dia_id": "D2:2", "text": "Congratulations, Ben!"},
                {"speaker": "Ana", "dia_id": "D2:3", "text": "Miso learnt to open doors."},
            ],
        },
        "qa": [
            {
                "question": "What is Ana's cat called?",
                "answer": "Miso",
                "evidence": ["D1:1"],
                "category": 4,
            },
            {
                "question": "When did Ben win the regatta?",
                "answer": "June 2023",
                "evidence": ["D2:1"],
                "category": 2,
            },
            {
                "question": "What sport and pet are in the talk?",
                "answer": "rowing; a cat",
                "evidence": ["D1:2; D1:1", "D9:9"],
                "category": 1,
            },
            {
                "question": "Unanswerable?",
                "adversarial_answer": "x",
                "evidence": ["D1:3"],
                "category": 5,
            },
        ],
    }


def test_benchmark_prints_the_three_figures_and_writes_one_line_per_question(tmp_path: Path):
    data = tmp_path / "tiny.json"
    data.write_text(json.dumps([conversation()]), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench_locomo.py"),
            "--data",
            str(data),
            "--budget",
            "300",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    last = run.stdout.strip().splitlines()[-1]
    match = re.fullmatch(
        r"recall@300tok=([\d.]+) dense=([\d.]+) bm25=([\d.]+) p50_ms=([\d.]+) skipped=0", last
    )
    assert match, last
    # Six short turns fit in 300 tokens: every evidence turn is injected, the one whose text
    # ends with a space included, for the project and the dense baseline alike.
    assert float(match.group(1)) == 1.0 and float(match.group(2)) == 1.0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["category"] for r in rows] == [4, 2, 1]  # category 5 is not asked
    assert rows[2]["evidence"] == ["D1:2", "D1:1"]  # packed ids split, the unknown one skipped
    assert set(rows[0]) == {
        "sample_id",
        "question",
        "category",
        "evidence",
        "injected",
        "retrieval_ms",
    }
    assert "I adopted a grey cat named Miso." in rows[0]["injected"]
    assert "[2023-06-20]" in rows[1]["injected"]  # the session date, for "when" questions
