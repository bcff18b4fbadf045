#!/usr/bin/env python3
"""LoCoMo: recall of evidence turns within a token budget, the project vs two baselines.

For each conversation in ``--data`` (LoCoMo's JSON, Maharana et al., ACL 2024), every turn is
ingested with its session date into a fresh store through the project's own ingest and write
path (one memory per turn: ``"Speaker: text"``, plus ``[shares a photo: caption]`` when the turn
has one). Then each question of categories 1-4 (1 multi-hop, 2 temporal, 3 open-domain,
4 single-hop: the dataset's own mapping) goes through the project's own recall as the query,
and the exact block the proxy would inject (within ``--budget`` cl100k tokens) is checked: an
evidence turn counts when its text (as rendered: stripped, line breaks folded) is in the block.
The baselines, in the same run, with the same embedder, budget and renderer: plain dense top-k
over turns, and BM25 over turns.

    python scripts/bench_locomo.py --data ../shared/data/locomo/locomo_dev3.json \\
        --budget 1000 --out /tmp/locomo.jsonl [--embedder all-MiniLM-L6-v2]

Writes one JSON line per question to ``--out``: ``{"sample_id", "question", "category",
"evidence", "injected", "retrieval_ms"}`` (retrieval time excludes the query's embedding).
Last line: ``recall@{B}tok=R dense=D bm25=M p50_ms=T skipped=S`` (``S``: recalls that failed
open, e.g. a blown embedding budget on a busy machine; they count as nothing recalled).

``--metabolism on`` (the default, as in the proxy) writes through symbiosis scoring, the write
gate and reinforcement, and runs one sleep cycle (``metabolize``) after the ingest and before
the questions; ``off`` stores every turn as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memory.config import (
    EmbedderConfig,
    MemoryConfig,
    MetabolismConfig,
    StoreConfig,
    SymbiosisConfig,
)
from memory.errors import MemoryLayerError
from memory.ingest import Message, drain, queue
from memory.recall.index import UserIndex
from memory.recall.render import quote, render_block
from memory.service import MemoryService, build_memory_service
from memory.types import MemoryBlock, MemoryHit, Scope
from proxy.config import Config, UpstreamConfig

CATEGORIES = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop"}
USER = "locomo"


def session_time(text: str) -> float:
    """``"1:56 pm on 8 May, 2023"`` -> Unix seconds (UTC)."""
    parsed = datetime.strptime(text.strip(), "%I:%M %p on %d %B, %Y")
    return parsed.replace(tzinfo=UTC).timestamp()


def turns_of(sample: dict[str, Any], captions: bool = False) -> list[dict[str, Any]]:
    """Every turn with its session date, in order (sessions counted from ``session_N`` keys);
    ``captions`` appends the caption of a shared photo to the text."""
    conv = sample["conversation"]
    numbers = sorted(int(k.split("_")[1]) for k in conv if re.fullmatch(r"session_\d+", k))
    out = []
    for n in numbers:
        stamp = session_time(conv[f"session_{n}_date_time"])
        for turn in conv[f"session_{n}"]:
            body = turn["text"]
            if captions and turn.get("blip_caption"):
                body += f" [shares a photo: {turn['blip_caption']}]"
            out.append(
                {
                    "id": turn["dia_id"],
                    "text": turn["text"],
                    "speaker": turn["speaker"],
                    "body": body,
                    "doc": f"{turn['speaker']}: {body}",
                    "at": stamp,
                    "session": str(n),
                }
            )
    return out


def evidence_ids(qa: dict[str, Any], known: set[str]) -> list[str]:
    """Evidence ids, split on ``;``, ``,`` and spaces; ids that match no turn are skipped."""
    ids = [x for e in qa.get("evidence", []) for x in re.split(r"[;,\s]+", e) if x]
    return [x for x in ids if x in known]


def hit_rate(block: str, texts: list[str]) -> int:
    """How many of ``texts`` (evidence turns) are in ``block``, each as the renderer writes it:
    neutralised, escaped and with line breaks folded, inside the quotes of its line
    (:func:`memory.recall.render.quote`; a stored turn carries its speaker before it). Matching
    the raw text would miss 11 of the 519 evidence turns of the development
    conversations even when they are in the block (their text ends with a space or holds a line
    break)."""
    return sum(1 for t in texts if quote(t)[1:-1] in block)


async def run_conversation(
    sample: dict[str, Any], args: argparse.Namespace, out: Any, tally: dict[str, Any]
) -> None:
    turns = turns_of(sample, args.captions)
    by_id = {t["id"]: t for t in turns}
    with tempfile.TemporaryDirectory(prefix="locomo-") as tmp:
        memory = MemoryConfig(
            k=500, candidates=args.candidates, max_tokens=args.budget, min_similarity=-1.0
        )
        async with aiohttp.ClientSession() as session:
            config = Config(
                memory=memory,
                store=StoreConfig(path=Path(tmp) / "chroma"),
                embedder=EmbedderConfig(kind="sentence-transformers", model=args.embedder),
                upstream=UpstreamConfig(url="http://127.0.0.1:9"),
                symbiosis=SymbiosisConfig(enabled=args.metabolism == "on"),
                metabolism=MetabolismConfig(enabled=args.metabolism == "on"),
            )
            service = build_memory_service(config, session)
            await service.start()
            try:
                await ingest_and_ask(service, sample, turns, by_id, args, out, tally)
            finally:
                await service.close(timeout_s=0)


async def ingest_and_ask(
    service: MemoryService,
    sample: dict[str, Any],
    turns: list[dict[str, Any]],
    by_id: dict[str, dict[str, Any]],
    args: argparse.Namespace,
    out: Any,
    tally: dict[str, Any],
) -> None:
    messages = [
        Message(i, "user", t["body"], t["at"], t["session"], t["speaker"])
        for i, t in enumerate(turns)
    ]
    queued = queue(service, messages, USER)
    if not await drain(service, queued, progress=False):
        raise RuntimeError("ingest failed")
    if service.metabolism.enabled:
        reports = await service.metabolize([USER])
        stats = service.stats
        print(
            f"  metabolism: {stats.gated} gated, {stats.reinforced} reinforced, "
            f"{stats.repulsors} repulsors; sleep cycle: {vars(reports[USER])}".replace(
                ", 'log': []", ""
            ),
            file=sys.stderr,
        )
    await service.index_ready(USER)
    vectors = await service.embedder.embed([t["doc"] for t in turns])
    hits = [MemoryHit(t["id"], t["doc"], {"event_at": t["at"]}) for t in turns]
    bm25 = UserIndex(hits, None)
    template = service.config.template
    qas = [q for q in sample["qa"] if q.get("category") in CATEGORIES]
    for qa in qas:
        evidence = evidence_ids(qa, set(by_id))
        if not evidence:
            continue
        texts = [by_id[e]["text"] for e in evidence]
        try:
            block = await service.recall(Scope(USER), qa["question"])
        except MemoryLayerError as exc:  # the proxy fails open: nothing injected, counted
            tally["skipped"].append(f"{qa['question']!r}: {exc}")
            block = MemoryBlock("", (), 0, {})
        ms = sum(v for k, v in block.timings_ms.items() if k != "embed")
        qv = (await service.embedder.embed([qa["question"]]))[0]
        dense_order = [hits[i] for i in np.argsort(-(vectors @ qv))]
        dense = render_block(dense_order, template, args.budget)
        lexical = render_block(bm25.search(qa["question"], len(hits)), template, args.budget)
        cat = qa["category"]
        blocks = {"project": block.text, "dense": dense.text, "bm25": lexical.text}
        found = {name: hit_rate(text, texts) for name, text in blocks.items()}
        for name, hits_found in found.items():
            tally[name][cat][0] += hits_found
            tally[name][cat][1] += len(texts)
        spread = tally["by_evidence"].setdefault(min(len(texts), 4), [0, 0])
        spread[0] += found["project"]
        spread[1] += len(texts)
        if block.timings_ms:
            tally["ms"].append(ms)
        out.write(
            json.dumps(
                {
                    "sample_id": sample["sample_id"],
                    "question": qa["question"],
                    "category": cat,
                    "evidence": evidence,
                    "injected": block.text,
                    "retrieval_ms": round(ms, 3),
                }
            )
            + "\n"
        )


def overall(per_cat: dict[int, list[int]]) -> float:
    hit = sum(v[0] for v in per_cat.values())
    total = sum(v[1] for v in per_cat.values())
    return hit / max(1, total)


async def main(args: argparse.Namespace, samples: list[dict[str, Any]], out: Any) -> None:
    tally: dict[str, Any] = {
        n: {c: [0, 0] for c in CATEGORIES} for n in ("project", "dense", "bm25")
    }
    tally["ms"] = []
    tally["skipped"] = []
    tally["by_evidence"] = {}
    for sample in samples:
        print(f"{sample['sample_id']}: ingesting and asking", file=sys.stderr, flush=True)
        await run_conversation(sample, args, out, tally)
    print(
        f"LoCoMo, {len(samples)} conversations, budget {args.budget} tokens, {args.embedder}, "
        f"metabolism {args.metabolism}"
    )
    print(f"{'':<10}" + "".join(f"{CATEGORIES[c]:>13}" for c in CATEGORIES) + f"{'overall':>10}")
    for name in ("project", "dense", "bm25"):
        cells = "".join(
            f"{tally[name][c][0] / max(1, tally[name][c][1]):>13.3f}" for c in CATEGORIES
        )
        print(f"{name:<10}{cells}{overall(tally[name]):>10.3f}")
    spread = sorted(tally["by_evidence"].items())
    print(
        "project, by evidence turns per question: "
        + ", ".join(
            f"{'4+' if n == 4 else n}: {hit / max(1, total):.3f} ({total} turns)"
            for n, (hit, total) in spread
        )
    )
    skipped = tally["skipped"]
    print(f"recalls skipped (failed open, counted as nothing recalled): {len(skipped)}")
    for line in skipped[:5]:
        print(f"  {line}")
    ms = np.asarray(tally["ms"])
    p50, p95 = float(np.percentile(ms, 50)), float(np.percentile(ms, 95))
    print(f"recall latency excluding the query embedding: p50 {p50:.1f} ms, p95 {p95:.1f} ms")
    print(
        f"recall@{args.budget}tok={overall(tally['project']):.3f} "
        f"dense={overall(tally['dense']):.3f} bm25={overall(tally['bm25']):.3f} p50_ms={p50:.1f} "
        f"skipped={len(skipped)}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--out", required=True)
    parser.add_argument("--embedder", default="all-MiniLM-L6-v2")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--metabolism", choices=("on", "off"), default="on")
    parser.add_argument(
        "--captions",
        action="store_true",
        help="append the caption of a shared photo to the turn's text (the proxy stores text "
        "only, so the default leaves captions out)",
    )
    arguments = parser.parse_args()
    data = json.loads(Path(arguments.data).read_text(encoding="utf-8"))
    with open(arguments.out, "w", encoding="utf-8") as handle:
        asyncio.run(main(arguments, data, handle))
