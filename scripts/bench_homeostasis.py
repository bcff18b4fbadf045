#!/usr/bin/env python3
"""Replay event streams through the affect state and report recovery, bounds and directions.

Streams (one event per tick, then quiet ticks so the levels can recover):

- ``source-chaos``: the 18-event chaos stream published with the Resilient Memory prototype
  (github hughes-research/teaser-repo, ``src/resilient_controller.py::test_resilient_chaos``,
  Apache-2.0): CPU and error-rate metrics mixed with shouting, urgent, curious and routine text.
  Metrics become stress impulses (``min(0.6, 2 * error_rate)``, +0.1 above 90 % CPU); text goes
  through the proxy's own ``text_signals``.
- ``error-burst``: ten failed exchanges (outcome 0).
- ``novelty-burst``: ten recalls that found nothing similar.
- ``good-day``: twenty good outcomes (0.9) with curious questions.

Per stream it prints, per level, the ticks from the last impulse until the level is back within
10 % of its baseline (tolerance ``0.1 * max(baseline, 0.1)``) and stays there; the share of ticks
with every knob inside its clamp (must be 1.000); and whether each knob moved the documented way
while the stream was running (stress: less recalled, higher floor, cooler sampling; novelty: the
opposite). The source's own measure, the share of ticks with its scalar knob in [0.7, 0.9] (61.1 %
there), is printed only beside these, for our normalised recall-k knob and for a constant 0.8,
which scores 100 % and shows that the measure rewards inertia.

    python scripts/bench_homeostasis.py [--tick-s 10] [--quiet-ticks 800]

Last line: ``knobs_in_clamps=F directions_ok=N/M worst_recovery_ticks=T``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memory.affect import LEVELS, Affect, resolve_ranges, text_signals
from memory.config import AffectConfig, KnobsConfig, MemoryConfig

SOURCE_CHAOS: list[dict[str, Any]] = [
    {"metrics": {"cpu_percent": 98.0, "error_rate": 0.25}},
    {"text": "CRITICAL EMERGENCY!!! MULTIPLE SYSTEM FAILURES!!! URGENT!!! PANIC MODE!!!"},
    {"metrics": {"cpu_percent": 99.0, "error_rate": 0.30}},
    {"text": "DEADLINE CRISIS!!! EVERYTHING BROKEN!!! PRESSURE!!! EMERGENCY!!!"},
    {"metrics": {"cpu_percent": 97.0, "error_rate": 0.28}},
    {"text": "System maintenance completed successfully."},
    {"metrics": {"cpu_percent": 100.0, "error_rate": 0.40}},
    {"text": "CATASTROPHIC FAILURE!!! ALL HANDS ON DECK!!! RUSH!!! CRITICAL!!!"},
    {"metrics": {"cpu_percent": 95.0, "error_rate": 0.35}},
    {"text": "Fascinating new discovery! Explore unknown territory! Novel breakthrough!"},
    {"text": "Revolutionary research! Discover amazing patterns! Investigate possibilities!"},
    {"text": "Intriguing anomaly! Novel findings! Mysterious behavior! What could this mean?"},
    {"metrics": {"cpu_percent": 90.0, "error_rate": 0.20}},
    {"text": "URGENT research needed! Critical discovery! Emergency investigation!"},
    {"text": "routine daily meeting standard procedure typical normal usual"},
    {"metrics": {"cpu_percent": 20.0, "error_rate": 0.001}},
    {"metrics": {"cpu_percent": 100.0, "error_rate": 0.50}},
    {"text": "TOTAL SYSTEM MELTDOWN!!! PANIC!!! CRISIS!!! EMERGENCY PROTOCOLS!!!"},
]

STREAMS: dict[str, list[dict[str, Any]]] = {
    "source-chaos": SOURCE_CHAOS,
    "error-burst": [{"outcome": 0.0}] * 10,
    "novelty-burst": [{"recalled": None}] * 10,
    "good-day": [{"outcome": 0.9}, {"text": "how does this work? curious"}] * 10,
}
EXPECTED: dict[str, dict[str, str]] = {
    "source-chaos": {"k": "down", "min_similarity": "up", "temperature": "down"},
    "error-burst": {"k": "down", "max_tokens": "down", "min_similarity": "up"},
    "novelty-burst": {"k": "up", "max_tokens": "up", "min_similarity": "down"},
    "good-day": {"k": "up", "temperature": "up"},
}
"""The documented direction of each knob while a stream runs (mean over its ticks vs rest)."""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def apply(affect: Affect, event: dict[str, Any]) -> bool:
    """Feed one event; True when it carried an impulse."""
    if "metrics" in event:
        m = event["metrics"]
        gain = min(0.6, 2 * m["error_rate"]) + (0.1 if m["cpu_percent"] > 90 else 0.0)
        if gain > 0.01:
            affect.pulse("u", {"stress": gain})
            return True
        return False
    if "text" in event:
        signals = text_signals(event["text"])
        affect.pulse("u", signals)
        return bool(signals)
    if "outcome" in event:
        affect.outcome("u", event["outcome"])
        return True
    affect.recalled("u", event["recalled"])
    return True


def ticks(stream: list[dict[str, Any]], quiet: int) -> Iterator[dict[str, Any] | None]:
    yield from stream
    yield from [None] * quiet


def replay(name: str, stream: list[dict[str, Any]], tick_s: float, quiet: int) -> dict[str, Any]:
    clock = Clock()
    config = AffectConfig()
    affect = Affect(config, resolve_ranges(KnobsConfig(), MemoryConfig()), clock)
    rest = affect.knobs("u")
    ranges = affect.ranges
    history: list[dict[str, float]] = []
    knob_history: list[dict[str, float]] = []
    last_impulse = 0
    for tick, event in enumerate(ticks(stream, quiet)):
        clock.now = tick * tick_s
        if event is not None and apply(affect, event):
            last_impulse = tick
        history.append(dict(affect.state("u").levels))
        knob_history.append(affect.knobs("u"))
    in_clamps = sum(
        all(ranges[k].lo <= v <= ranges[k].hi for k, v in knobs.items()) for knobs in knob_history
    ) / len(knob_history)
    recovery = {}
    for level in LEVELS:
        base = config.baselines[level]
        tol = 0.1 * max(base, 0.1)
        back = next(
            (
                t - last_impulse
                for t in range(last_impulse, len(history))
                if all(abs(h[level] - base) <= tol for h in history[t:])
            ),
            None,
        )
        recovery[level] = back
    running = knob_history[: len(stream)]
    moved = {}
    for knob, way in EXPECTED[name].items():
        mean = sum(k[knob] for k in running) / len(running)
        moved[knob] = (mean < rest[knob]) if way == "down" else (mean > rest[knob])
    k_range = ranges["k"]
    scalar = [
        (k["k"] - k_range.lo) / (k_range.hi - k_range.lo) for k in knob_history[: len(stream)]
    ]
    source_measure = sum(0.7 <= x <= 0.9 for x in scalar) / len(scalar)
    return {"in_clamps": in_clamps, "recovery": recovery, "moved": moved, "source": source_measure}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tick-s", type=float, default=10.0, help="seconds per tick")
    parser.add_argument("--quiet-ticks", type=int, default=800)
    args = parser.parse_args()
    worst = 0
    ok = total = 0
    clamps = 1.0
    print(f"tick = {args.tick_s:g} s; half-lives (s): {AffectConfig().half_lives_s}")
    for name, stream in STREAMS.items():
        r = replay(name, stream, args.tick_s, args.quiet_ticks)
        clamps = min(clamps, r["in_clamps"])
        rec = ", ".join(
            f"{lvl} {t if t is not None else '>' + str(args.quiet_ticks)}"
            for lvl, t in r["recovery"].items()
        )
        moves = ", ".join(f"{k} {'ok' if v else 'WRONG'}" for k, v in r["moved"].items())
        ok += sum(r["moved"].values())
        total += len(r["moved"])
        worst = max([worst, *[t if t is not None else 10**9 for t in r["recovery"].values()]])
        print(
            f"{name:<14} {len(stream):>2} events | knobs in clamps {r['in_clamps']:.3f} | "
            f"recovery ticks: {rec} | directions: {moves} | "
            f"source measure {r['source']:.1%} (constant 0.8: 100.0%)"
        )
    print(f"knobs_in_clamps={clamps:.3f} directions_ok={ok}/{total} worst_recovery_ticks={worst}")


if __name__ == "__main__":
    main()
