"""Training and evaluation data of the default symbiosis scorer (``memory.score.symbiosis``).

Readers of the evaluation sets in ``../shared/data`` (see its README for sources and licences)
and the two trainers. scikit-learn (a dependency of sentence-transformers, so present with the
``local`` extra) fits the logistic regressions. Used by ``scripts/train_symbiosis.py`` (fit on
everything, write ``memory/models/symbiosis-minilm.json``) and ``scripts/eval_symbiosis.py``
(fit on one part, report on the held-out rest).
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np

BENIGN_PATH = Path(__file__).parent.parent / "models" / "benign_requests.txt"
BENIGN_WEIGHT = 10
"""Sample weight of each hand-written benign request: they are few (about 90) against 400
harmful ones, and they are what teaches the classifier that "kill a Python process" is not a
harmful request (ConvAI2's chit-chat does not)."""
REQUEST_C = 1.0
"""Inverse L2 strength of the request-harm regression (scikit-learn's default)."""
QUALITY_C = 0.1
"""Inverse L2 strength of the pairwise reply-quality model; 0.1 beat 0.3, 1 and 3 in 2-fold
cross-validation on HH-RLHF harmless-base (0.627 vs 0.617, 0.607, 0.596 pairwise accuracy)."""


def split_last_turn(transcript: str) -> tuple[str, str]:
    """The last ``Human:`` turn and the ``Assistant:`` reply after it of an HH-RLHF transcript.

    >>> split_last_turn("\\n\\nHuman: hi\\n\\nAssistant: yo\\n\\nHuman: how?\\n\\nAssistant: so.")
    ('how?', 'so.')
    """
    i = transcript.rfind("\n\nAssistant:")
    j = transcript.rfind("\n\nHuman:", 0, i)
    request = transcript[j + len("\n\nHuman:") : i].strip()
    return request, transcript[i + len("\n\nAssistant:") :].strip()


def load_hh(data: Path) -> list[tuple[str, str, str]]:
    """HH-RLHF harmless-base test pairs that share every turn but the last reply:
    ``(request, chosen reply, rejected reply)``."""
    out: list[tuple[str, str, str]] = []
    with gzip.open(data / "hh-rlhf" / "harmless-base-test.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            request, chosen = split_last_turn(row["chosen"])
            other, rejected = split_last_turn(row["rejected"])
            if (
                request == other
                and row["chosen"].rsplit("\n\nAssistant:", 1)[0]
                == row["rejected"].rsplit("\n\nAssistant:", 1)[0]
            ):
                out.append((request, chosen, rejected))
    return out


def load_harmbench(data: Path) -> list[tuple[str, str]]:
    """HarmBench behaviours: ``(split, request)`` with split ``val`` (80) or ``test`` (320)."""
    out: list[tuple[str, str]] = []
    for split in ("val", "test"):
        path = data / "harmbench" / f"harmbench_behaviors_text_{split}.csv"
        with path.open(encoding="utf-8", newline="") as f:
            out.extend((split, row["Behavior"]) for row in csv.DictReader(f))
    return out


def load_convai2(data: Path, limit: int = 3000) -> list[tuple[str, str]]:
    """ConvAI2 (PersonaChat) validation turn pairs ``(utterance, reply)``, first ``limit``."""
    out = []
    path = data / "convai2" / "valid_self_original_no_cands.txt"
    with path.open(encoding="utf-8") as f:
        for line in f:
            _, _, rest = line.rstrip("\n").partition(" ")
            if "\t" in rest and not rest.startswith("your persona:"):
                utterance, reply = rest.split("\t", 1)
                out.append((utterance, reply))
                if len(out) >= limit:
                    break
    return out


def load_benign(path: Path = BENIGN_PATH) -> list[str]:
    """The hand-written benign requests (one per line, ``#`` comments skipped)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def train_request_harm(
    harmful: np.ndarray, chitchat: np.ndarray, benign: np.ndarray
) -> dict[str, Any]:
    """Logistic regression P(harmful request | MiniLM vector); inputs are ``(n, 384)``
    embeddings. Returns ``{"coef": [384 floats], "intercept": float}``."""
    from sklearn.linear_model import LogisticRegression

    x = np.vstack([harmful, chitchat, benign])
    y = np.r_[np.ones(len(harmful)), np.zeros(len(chitchat) + len(benign))]
    weights = np.r_[np.ones(len(harmful) + len(chitchat)), np.full(len(benign), BENIGN_WEIGHT)]
    model = LogisticRegression(C=REQUEST_C, max_iter=3000, class_weight="balanced")
    model.fit(x, y, sample_weight=weights)
    return {"coef": model.coef_[0].tolist(), "intercept": float(model.intercept_[0])}


def quality_features(request: np.ndarray, reply: np.ndarray) -> np.ndarray:
    """``[reply, reply * request]``, shape ``(n, 768)`` for 384-d inputs."""
    return np.hstack([reply, reply * request])


def train_reply_quality(
    request: np.ndarray, chosen: np.ndarray, rejected: np.ndarray
) -> dict[str, Any]:
    """Pairwise (Bradley-Terry) logistic model: P(chosen > rejected) = sigmoid(w . (f(c) -
    f(r))), no intercept. Returns ``{"coef", "mean", "std"}``, mean and std of ``w . f`` over
    the training replies (for calibration to (0, 1) around 0.5)."""
    from sklearn.linear_model import LogisticRegression

    fc = quality_features(request, chosen)
    fr = quality_features(request, rejected)
    x = np.vstack([fc - fr, fr - fc])
    y = np.r_[np.ones(len(fc)), np.zeros(len(fc))]
    model = LogisticRegression(C=QUALITY_C, max_iter=3000, fit_intercept=False).fit(x, y)
    coef = model.coef_[0]
    raw = np.r_[fc @ coef, fr @ coef]
    return {"coef": coef.tolist(), "mean": float(raw.mean()), "std": float(raw.std())}
