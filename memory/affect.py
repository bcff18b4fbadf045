"""Affect state ("hormones") per scope and the bounded knobs composed from it.

Levels (each in [0, 1]) decay exponentially toward a baseline with a half-life, and take
impulses on events (the Resilient Memory design in ``../shared/seeds``; its code uses half-lives
of 30 and 35 ticks for curiosity and stress):

- ``stress``: upstream errors, failed exchanges, low outcomes, shouting or urgent user text;
- ``reward``: good outcomes;
- ``novelty``: weak recall matches (nothing similar remembered) and curious user text.

An impulse of gain ``g`` moves a level toward 1 by ``g * (1 - level)`` (or toward 0 by
``g * level`` when negative), so a level can never leave [0, 1]. Knobs are
``clamp(base + span * sum_i w_i * (level_i - baseline_i), lo, hi)`` with ``span = hi - lo`` and
weights whose signs are the documented directions: stress recalls less (smaller k and budget,
higher similarity floor, cooler sampling), novelty recalls more (larger k and budget, lower
floor, warmer sampling). Outcomes teach the weights online with an advantage-weighted update
(``w += lr * (outcome - running mean) * (level - baseline)``), bounded to [0, 2] times the
documented weight so a learned direction never flips.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from memory.config import AffectConfig, KnobRange, KnobsConfig, MemoryConfig

log = logging.getLogger(__name__)

Level = Literal["stress", "reward", "novelty"]
LEVELS: tuple[Level, ...] = ("stress", "reward", "novelty")
KNOBS = ("k", "max_tokens", "min_similarity", "temperature", "top_p")

DIRECTIONS: dict[str, dict[Level, float]] = {
    "k": {"stress": -0.5, "reward": 0.0, "novelty": 0.5},
    "max_tokens": {"stress": -0.5, "reward": 0.0, "novelty": 0.4},
    "min_similarity": {"stress": 0.4, "reward": 0.0, "novelty": -0.3},
    "temperature": {"stress": -0.4, "reward": 0.0, "novelty": 0.3},
    "top_p": {"stress": -0.3, "reward": 0.0, "novelty": 0.2},
}
"""Documented weight of each level on each knob (sign = direction, magnitude = share of span)."""

SHOUT = re.compile(r"!{2,}|\b(urgent|asap|emergency|critical|panic|crisis|broken|wtf)\b", re.I)
CURIOUS = re.compile(r"\?|\b(why|how|what if|curious|discover|explore|novel|wonder)\w*", re.I)


def text_signals(text: str) -> dict[Level, float]:
    """Impulse gains read from a user's message: shouting/urgency -> stress, curiosity -> novelty.

    >>> text_signals("EVERYTHING IS BROKEN!!! URGENT!!!")["stress"] > 0.3
    True
    >>> text_signals("routine daily meeting")
    {}
    """
    letters = [c for c in text if c.isalpha()]
    caps = sum(c.isupper() for c in letters) / len(letters) if len(letters) >= 12 else 0.0
    shouts = len(SHOUT.findall(text))
    curious = len(CURIOUS.findall(text))
    out: dict[Level, float] = {}
    stress = min(0.6, 0.4 * max(0.0, caps - 0.5) * 2 + 0.08 * shouts)
    if stress > 0.01:
        out["stress"] = stress
    if curious:
        out["novelty"] = min(0.4, 0.1 * curious)
    return out


@dataclass
class AffectState:
    """The levels of one scope at ``updated_at`` (seconds on the injected clock)."""

    levels: dict[Level, float]
    updated_at: float
    outcome_mean: float = 0.5
    weights: dict[str, dict[Level, float]] = field(
        default_factory=lambda: {k: dict(v) for k, v in DIRECTIONS.items()}
    )


def decay(level: float, baseline: float, dt_s: float, half_life_s: float) -> float:
    """Exponential decay toward ``baseline``: ``b + (h - b) * 0.5 ** (dt / half_life)``.

    >>> decay(1.0, 0.0, 30.0, 30.0)
    0.5
    """
    factor: float = 0.5 ** (max(dt_s, 0.0) / half_life_s)
    return min(1.0, max(0.0, baseline + (level - baseline) * factor))


def impulse(level: float, gain: float) -> float:
    """Saturating impulse: toward 1 by ``gain * (1 - level)``, toward 0 when ``gain < 0``.

    >>> impulse(0.5, 0.5), impulse(0.5, -0.5)
    (0.75, 0.25)
    """
    gain = max(-1.0, min(1.0, gain)) if math.isfinite(gain) else 0.0
    moved = level + gain * (1.0 - level) if gain >= 0 else level + gain * level
    return min(1.0, max(0.0, moved))


def clamp(value: float, lo: float, hi: float) -> float:
    """``value`` within ``[lo, hi]``; NaN or infinity becomes ``lo``.

    >>> clamp(3.0, 0.0, 1.0), clamp(float("nan"), 0.2, 1.0)
    (1.0, 0.2)
    """
    if not math.isfinite(value):
        return lo
    return min(hi, max(lo, value))


def resolve_ranges(knobs: KnobsConfig, memory: MemoryConfig) -> dict[str, KnobRange]:
    """Every knob's clamp with its base filled in (``memory.k`` etc. when not configured)."""
    defaults = {
        "k": memory.k,
        "max_tokens": memory.max_tokens,
        "min_similarity": memory.min_similarity,
    }
    out: dict[str, KnobRange] = {}
    for name in KNOBS:
        spec: KnobRange = getattr(knobs, name)
        base = spec.base if spec.base is not None else clamp(defaults[name], spec.lo, spec.hi)
        out[name] = KnobRange(lo=spec.lo, hi=spec.hi, base=base)
    return out


class Affect:
    """Per-scope affect states (an LRU of ``config.max_scopes``) and the knob composer."""

    def __init__(
        self,
        config: AffectConfig,
        ranges: dict[str, KnobRange],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.ranges = ranges
        self._clock = clock
        self._states: OrderedDict[str, AffectState] = OrderedDict()

    def state(self, user: str) -> AffectState:
        """The user's state, decayed to now."""
        now = self._clock()
        state = self._states.get(user)
        if state is None:
            state = AffectState(dict(self.config.baselines), now)
            self._states[user] = state
            while len(self._states) > self.config.max_scopes:
                self._states.popitem(last=False)
        self._states.move_to_end(user)
        dt = now - state.updated_at
        for name in LEVELS:
            state.levels[name] = decay(
                state.levels[name],
                self.config.baselines[name],
                dt,
                self.config.half_lives_s[name],
            )
        state.updated_at = now
        return state

    def pulse(self, user: str, gains: dict[Level, float]) -> None:
        """Apply impulses (gain per level, in [-1, 1]) to the user's levels."""
        state = self.state(user)
        for name, gain in gains.items():
            state.levels[name] = impulse(state.levels[name], gain)

    def knobs(self, user: str) -> dict[str, float]:
        """Every knob for the user now, each inside its configured clamp."""
        state = self.state(user)
        out: dict[str, float] = {}
        for knob, spec in self.ranges.items():
            drive = sum(
                state.weights[knob][name] * (state.levels[name] - self.config.baselines[name])
                for name in LEVELS
            )
            base = spec.base if spec.base is not None else spec.lo
            out[knob] = clamp(base + (spec.hi - spec.lo) * drive, spec.lo, spec.hi)
        return out

    def recalled(self, user: str, best_similarity: float | None) -> None:
        """Novelty from a recall: nothing similar remembered is new ground."""
        if best_similarity is None or not math.isfinite(best_similarity):
            self.pulse(user, {"novelty": 0.3})
        elif best_similarity < 0.5:
            self.pulse(user, {"novelty": 0.3 * (0.5 - best_similarity) / 0.5})

    def outcome(self, user: str, score: float) -> None:
        """Learn from an exchange's outcome in [0, 1] (1 good): impulses and a weight update."""
        if not math.isfinite(score):
            return
        score = min(1.0, max(0.0, score))
        state = self.state(user)
        if score < 0.4:
            state.levels["stress"] = impulse(state.levels["stress"], 0.5 * (0.4 - score) / 0.4)
        elif score > 0.6:
            state.levels["reward"] = impulse(state.levels["reward"], 0.5 * (score - 0.6) / 0.4)
        advantage = score - state.outcome_mean
        state.outcome_mean += 0.1 * advantage
        if not self.config.learning:
            return
        log.debug("affect outcome %.2f, advantage %+.3f", score, advantage)
        for knob, documented in DIRECTIONS.items():
            for name in LEVELS:
                w0 = documented[name]
                if w0 == 0.0:
                    continue
                step = self.config.learning_rate * advantage
                step *= state.levels[name] - self.config.baselines[name]
                lo, hi = sorted((0.0, 2.0 * w0))
                state.weights[knob][name] = min(hi, max(lo, state.weights[knob][name] + step))
