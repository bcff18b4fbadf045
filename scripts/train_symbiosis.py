#!/usr/bin/env python
"""Train the default symbiosis scorer's classifiers and write memory/models/symbiosis-minilm.json.

    .venv/bin/python scripts/train_symbiosis.py [--data ../shared/data] [--out PATH]

Request harm: HarmBench behaviours (harmful) against ConvAI2 utterances and the hand-written
benign requests in memory/models/benign_requests.txt (harmless). Reply quality: pairwise model
on Anthropic HH-RLHF harmless-base pairs. Embeddings: all-MiniLM-L6-v2 (the `local` extra).
Deterministic; about a minute on 2 cores. Held-out figures: scripts/eval_symbiosis.py.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from memory.score import symbiosis_train as st  # noqa: E402
from memory.score.symbiosis import MODEL_PATH, load_encoder  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=MODEL_PATH)
    args = parser.parse_args()
    if not (args.data / "hh-rlhf").is_dir():
        print(f"train_symbiosis: no evaluation data at {args.data}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    encode = load_encoder()
    hh = st.load_hh(args.data)
    harmful = [r for _, r in st.load_harmbench(args.data)]
    chitchat = [u for u, _ in st.load_convai2(args.data)]
    benign = st.load_benign()
    request_harm = st.train_request_harm(encode(harmful), encode(chitchat), encode(benign))
    requests = encode([h[0] for h in hh])
    quality = st.train_reply_quality(
        requests, encode([h[1] for h in hh]), encode([h[2] for h in hh])
    )
    model = {
        "format": 1,
        "encoder": "all-MiniLM-L6-v2",
        "trained_on": {
            "request_harm": (
                f"HarmBench behaviours val+test ({len(harmful)}, MIT) vs ConvAI2 valid utterances "
                f"({len(chitchat)}, CC BY 4.0) and {len(benign)} hand-written benign requests"
            ),
            "reply_quality": f"Anthropic HH-RLHF harmless-base test pairs ({len(hh)}, MIT)",
            "benign_requests_sha256": hashlib.sha256(st.BENIGN_PATH.read_bytes()).hexdigest(),
        },
        "request_harm": {k: _round(v) for k, v in request_harm.items()},
        "reply_quality": {k: _round(v) for k, v in quality.items()},
    }
    args.out.write_text(json.dumps(model, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


def _round(value: object) -> object:
    if isinstance(value, list):
        return [round(float(v), 6) for v in value]
    return round(float(value), 6) if isinstance(value, float | np.floating) else value


if __name__ == "__main__":
    sys.exit(main())
