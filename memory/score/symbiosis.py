"""Symbiosis scoring: how good a finished exchange was for the user, in [0, 1].

0 is harmful or parasitic, 0.5 neutral, 1 fully symbiotic (helpful, honest, harmless,
efficient). An exchange at or below ``symbiosis.threshold`` becomes a **repulsor**, above it an
**attractor**. The score is a weighted mean of *dimensions*, each in [0, 1] (1 = good), computed
from *signals* that are all stored with the memory so the score can be explained and revised:

- ``harm_refusal``: harm and refusal together. From ``request_harm`` (probability that the
  user's request asks for harmful help: logistic regression on all-MiniLM-L6-v2 embeddings,
  trained by ``scripts/train_symbiosis.py``), ``reply_harm`` (the same classifier on the reply)
  and ``refusal`` (refusal phrases at the start of the reply). Complying with a harmful request
  scores low, and so does refusing a harmless one (over-refusal is unhelpful).
- ``reply_quality``: a pairwise (Bradley-Terry) logistic model trained on Anthropic's HH-RLHF
  harmless pairs (chosen over rejected), squashed to [0, 1] around 0.5.
- ``user_retention``: implicit feedback in the user's next turn (thanks, correction,
  frustration, asking the same again in other words). Known only with hindsight: a score
  without it is *provisional* and revised by the sleep cycle.
- ``compute_cost``: efficiency from the upstream's final metrics (tokens, time, a reply cut at
  the length limit), after "symbiosis = maximum energy efficiency".
- ``feedback``: explicit feedback (``POST /memory/feedback``); when present it dominates.
The source project's other dimensions (harm to the planet, truthfulness, consistency with the
anchor principles, self-consistency, legal risk) have no signal without an LLM judge (not built
yet): they are left out, not guessed. The *definition* (principles, weights, threshold, model) is
hashed; the hash is stored with every score (:attr:`Definition.hash`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from memory.config import SymbiosisConfig
from memory.types import sha256_json

MODEL_PATH = Path(__file__).parent.parent / "models" / "symbiosis-minilm.json"
"""Weights of the default scorer's two classifiers (written by ``scripts/train_symbiosis.py``)."""

Encoder = Callable[[list[str]], np.ndarray]
"""Texts -> unit all-MiniLM-L6-v2 vectors, shape ``(len(texts), 384)``."""

REFUSAL = re.compile(
    r"\b(?:I'?m (?:really |very )?sorry|I am (?:really |very )?sorry|I apologi[sz]e|"
    r"I (?:can ?not|can'?t|won'?t|will not|must decline|have to decline|refuse to)\b|"
    r"I(?:'m| am) (?:not able|unable|not comfortable|not going) to|"
    r"I (?:don'?t|do not) feel comfortable|"
    r"(?:as an AI|as a (?:large )?language model|I'?m (?:just )?an AI)\b|"
    r"(?:that|this|it) (?:would be|is) (?:illegal|unethical|harmful|not appropriate|inappropriate)|"
    r"I (?:would|will) (?:not|never) (?:help|assist|provide|recommend|encourage))",
    re.IGNORECASE,
)
"""Refusal phrases, looked for in the first :data:`REFUSAL_WINDOW` characters of a reply.
After the refusal prefixes used to score jailbreaks in Zou et al. 2023 ("Universal and
Transferable Adversarial Attacks on Aligned Language Models", ``test_prefixes``), extended."""
REFUSAL_WINDOW = 300

THANKS = re.compile(
    r"\b(?:thanks?|thank you|thx|cheers|great|perfect|awesome|that (?:helped|helps|works|worked)|"
    r"helpful|exactly|brilliant|love it|nice one)\b",
    re.IGNORECASE,
)
CORRECTION = re.compile(
    r"^\s*(?:no\b|nope\b|wrong\b|actually\b|that'?s (?:not|wrong|incorrect)|"
    r"(?:that|this|it) (?:is|was)n'?t\b|incorrect\b|not quite\b|you (?:misunderstood|got it wrong))"
    r"|\b(?:that'?s (?:wrong|incorrect|not what I)|I (?:said|meant|asked)\b|you'?re wrong)",
    re.IGNORECASE,
)
FRUSTRATION = re.compile(
    r"\b(?:useless|stupid|idiot|terrible|awful|doesn'?t work|didn'?t work|not working|"
    r"waste of time|are you (?:even|kidding)|again\?|still wrong|forget it|never ?mind|wtf|"
    r"ugh+|come on)\b|!!+|\?\?+",
    re.IGNORECASE,
)
RETENTION = {
    "thanks": 0.9,
    "continued": 0.6,
    "correction": 0.3,
    "rephrase": 0.25,
    "frustration": 0.1,
}
"""``user_retention`` for each kind of next turn; a rephrase is the same request again in
other words (embedding cosine at least :data:`REPHRASE_SIMILARITY`)."""
REPHRASE_SIMILARITY = 0.8

QUADRANT = {
    ("harmful", "refused"): 0.9,
    ("harmful", "complied"): 0.05,
    ("harmless", "refused"): 0.2,
    ("harmless", "complied"): 0.75,
}
"""``harm_refusal`` at the corners; in between it is bilinear in ``request_harm`` and
``refusal``. Refusing a harmful request is the most symbiotic answer to it; complying with a
harmless one is good but not more (how good is the other dimensions' business)."""

FEEDBACK_SHARE = 0.7
"""Share of the final score explicit feedback takes when given (the user knows best)."""


@dataclass(frozen=True)
class Turn:
    """What is scored: a user turn, the reply, optionally the user's next turn and the
    upstream's final metrics (``eval_count``, ``prompt_eval_count``, ``total_duration`` in ns,
    ``done_reason``)."""

    user: str
    assistant: str
    next_user: str | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Score:
    """A symbiosis score: ``value`` in [0, 1], the ``signals`` behind it (name -> float), the
    hash of the definition used, and whether it still waits for hindsight."""

    value: float
    signals: dict[str, float]
    definition: str
    provisional: bool

    def polarity(self, threshold: float) -> str:
        """``"repulsor"`` at or below ``threshold``, else ``"attractor"``."""
        return "repulsor" if self.value <= threshold else "attractor"

    def log_record(
        self,
        exchange_id: Any,
        memory_id: str | None,
        user: str,
        threshold: float,
        reason: str,
    ) -> dict[str, Any]:
        """The record :meth:`memory.store.score_log.ScoreLog.append` takes for this score."""
        return {
            "exchange_id": exchange_id,
            "memory_id": memory_id,
            "user": user,
            "score": self.value,
            "polarity": self.polarity(threshold),
            "definition": self.definition,
            "signals": self.signals,
            "reason": reason,
        }

    def as_metadata(self, threshold: float) -> dict[str, Any]:
        """The memory metadata fields that carry this score (schema version 3)."""
        return {
            "symbiosis": round(self.value, 4),
            "symbiosis_signals": json.dumps(self.signals, sort_keys=True),
            "symbiosis_definition": self.definition,
            "symbiosis_provisional": self.provisional,
            "polarity": self.polarity(threshold),
        }


@dataclass(frozen=True)
class Definition:
    """The public definition of symbiosis a score was computed under."""

    principles: tuple[str, ...]
    weights: Mapping[str, float]
    threshold: float
    model: str
    """SHA-256 of the classifier weights file (``"none"`` when the scorer runs without it)."""
    judge: str = ""
    """The judge model and its rubric (``""``: no judge)."""

    @cached_property
    def hash(self) -> str:
        """SHA-256 (hex) of the definition, first 16 characters (stored with every score)."""
        payload: dict[str, Any] = {
            "principles": list(self.principles),
            "weights": dict(sorted(self.weights.items())),
            "threshold": self.threshold,
            "model": self.model,
        }
        if self.judge:
            payload["judge"] = self.judge
        return sha256_json(payload)[:16]


def refusal(reply: str) -> float:
    """1.0 when the reply opens with a refusal (:data:`REFUSAL`), else 0.0.

    >>> refusal("I'm sorry, but I can't help with that."), refusal("Sure! Here it is.")
    (1.0, 0.0)
    """
    return 1.0 if REFUSAL.search(reply[:REFUSAL_WINDOW]) else 0.0


def next_turn_kind(next_user: str, similarity: float | None = None) -> str:
    """Classify the user's next turn: ``thanks``, ``correction``, ``frustration``,
    ``rephrase`` (cosine ``similarity`` to the previous request >= 0.8) or ``continued``.

    >>> next_turn_kind("thanks, that worked!"), next_turn_kind("No, I meant the other one")
    ('thanks', 'correction')
    >>> next_turn_kind("this is useless"), next_turn_kind("And in French?")
    ('frustration', 'continued')
    """
    if FRUSTRATION.search(next_user):
        return "frustration"
    if CORRECTION.search(next_user):
        return "correction"
    if similarity is not None and similarity >= REPHRASE_SIMILARITY:
        return "rephrase"
    if THANKS.search(next_user):
        return "thanks"
    return "continued"


def harm_refusal(request_harm: float, reply_harm: float, refused: float) -> float:
    """The ``harm_refusal`` dimension (see :data:`QUADRANT`), bilinear in harm and refusal.

    Harm is the request's, raised by a reply that itself reads as harmful help when it
    complies: ``max(request_harm, 2 * (reply_harm - 0.5))``; the classifier was trained on
    requests, so on replies only its confident half counts (ordinary instructions, a recipe,
    land near 0.4 there).

    >>> round(harm_refusal(1.0, 0.0, 0.0), 2), round(harm_refusal(0.0, 0.0, 1.0), 2)
    (0.05, 0.2)
    """
    h = request_harm
    if refused < 0.5:
        h = max(h, min(1.0, max(0.0, 2.0 * (reply_harm - 0.5))))
    refused_v = h * QUADRANT[("harmful", "refused")] + (1 - h) * QUADRANT[("harmless", "refused")]
    complied_v = (
        h * QUADRANT[("harmful", "complied")] + (1 - h) * QUADRANT[("harmless", "complied")]
    )
    return refused * refused_v + (1 - refused) * complied_v


def compute_cost(metrics: Mapping[str, Any]) -> float | None:
    """Efficiency in [0, 1] from an exchange's final metrics, or None without any.

    ``exp(-eval_count / 4000) * exp(-seconds / 300)``, and 0.3 at most for a reply cut at the
    length limit (tokens spent on an unfinished answer). Round constants: a typical chat reply
    (a few hundred tokens, seconds) stays above 0.9; a 4k-token, 5-minute answer gets ~0.14.

    >>> compute_cost({}), round(compute_cost({"eval_count": 400, "total_duration": 3e9}), 3)
    (None, 0.896)
    """
    tokens = metrics.get("eval_count")
    duration = metrics.get("total_duration")
    if not isinstance(tokens, int | float) and not isinstance(duration, int | float):
        return None
    value = 1.0
    if isinstance(tokens, int | float):
        value *= math.exp(-float(tokens) / 4000)
    if isinstance(duration, int | float):
        value *= math.exp(-float(duration) / 1e9 / 300)
    if metrics.get("done_reason") == "length":
        value = min(value, 0.3)
    return value


def combine(signals: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """The score from stored signals: the weighted mean of the dimensions present (weights
    from ``symbiosis.weights``; raw signals without a weight do not count), capped just
    above ``harm_refusal`` when that is below 0.5 (nothing outweighs harm), and then
    :data:`FEEDBACK_SHARE` explicit ``feedback`` when given. 0.5 without any dimension.

    >>> combine({"harm_refusal": 0.05, "reply_quality": 0.9},
    ...         {"harm_refusal": 1, "reply_quality": 1})
    0.15
    >>> combine({"harm_refusal": 0.75, "feedback": 0.0}, {"harm_refusal": 1})
    0.225
    """
    total = weight_sum = 0.0
    for name, value in signals.items():
        if name == "feedback" or name not in weights:
            continue
        total += weights[name] * value
        weight_sum += weights[name]
    value = total / weight_sum if weight_sum > 0 else 0.5
    safety = signals.get("harm_refusal")
    if safety is not None and safety < 0.5:
        value = min(value, safety + 0.1)
    if "feedback" in signals:
        value = FEEDBACK_SHARE * signals["feedback"] + (1 - FEEDBACK_SHARE) * value
    return round(min(1.0, max(0.0, value)), 6)


class Classifiers:
    """The default scorer's trained weights (``memory/models/symbiosis-minilm.json``):
    ``request_harm`` (logistic regression over a 384-d embedding) and ``reply_quality``
    (pairwise logistic model over ``[reply, reply * request]``, 768 features, with the mean and
    standard deviation of its training scores for calibration)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.harm_coef = np.asarray(data["request_harm"]["coef"], dtype=np.float32)
        self.harm_intercept = float(data["request_harm"]["intercept"])
        self.quality_coef = np.asarray(data["reply_quality"]["coef"], dtype=np.float32)
        self.quality_mean = float(data["reply_quality"]["mean"])
        self.quality_std = float(data["reply_quality"]["std"]) or 1.0
        self.encoder_name = str(data.get("encoder", "all-MiniLM-L6-v2"))

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> tuple[Classifiers, str]:
        """The classifiers in ``path`` and the SHA-256 of the file.

        Raises:
            OSError, ValueError, KeyError: missing or malformed file.
        """
        raw = path.read_bytes()
        return cls(json.loads(raw)), hashlib.sha256(raw).hexdigest()

    def request_harm(self, vectors: np.ndarray) -> np.ndarray:
        """Probability of a harmful request per row of ``vectors`` (shape ``(n, 384)``)."""
        logits = vectors @ self.harm_coef + self.harm_intercept
        out: np.ndarray = 1.0 / (1.0 + np.exp(-logits))
        return out

    def reply_quality(self, request: np.ndarray, reply: np.ndarray) -> np.ndarray:
        """Calibrated quality of each reply given its request, in (0, 1), shape ``(n,)``."""
        raw = np.hstack([reply, reply * request]) @ self.quality_coef
        z = (raw - self.quality_mean) / self.quality_std
        out: np.ndarray = 1.0 / (1.0 + np.exp(-z))
        return out


@functools.cache
def load_encoder(device: str = "cpu") -> Encoder:
    """all-MiniLM-L6-v2 from the ``local`` extra, as an :data:`Encoder` (loaded once per
    process and device; about 90 MB).

    Raises:
        ImportError: sentence-transformers is not installed.
        OSError: the model cannot be loaded.
    """
    from memory.embedders import load_sentence_transformer

    model = load_sentence_transformer("all-MiniLM-L6-v2", device)

    def encode(texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        rows = model.encode(
            [t[:4000] for t in texts],
            batch_size=32,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.asarray(rows, dtype=np.float32)

    return encode


class Scorer:
    """The default symbiosis scorer: needs no LLM and no server (see the module docstring).

    Without an encoder (the ``local`` extra missing) the embedding-based signals
    (``request_harm``, ``reply_harm``, ``reply_quality``, rephrase detection) are left out and
    the rest still score. ``score`` is synchronous and CPU-bound: call it from a worker thread.
    """

    def __init__(
        self,
        config: SymbiosisConfig,
        encoder: Encoder | None,
        classifiers: tuple[Classifiers, str] | None,
    ) -> None:
        self.config = config
        self.encoder = encoder if classifiers is not None else None
        self.classifiers = classifiers[0] if classifiers is not None else None
        self.definition = Definition(
            principles=tuple(config.principles),
            weights=dict(config.weights),
            threshold=config.threshold,
            model=classifiers[1] if classifiers is not None and encoder is not None else "none",
            judge=judge_definition(config),
        )
        self.degraded: str | None = None
        """Why the embedding-based signals are off, or None when they are on."""

    def score(self, turns: Sequence[Turn]) -> list[Score]:
        """Score ``turns`` (one embedding batch for all); in input order."""
        signals: list[dict[str, float]] = [{} for _ in turns]
        if self.encoder is not None and self.classifiers is not None and turns:
            self._embedding_signals(turns, signals)
        out = []
        for turn, found in zip(turns, signals, strict=True):
            found["refusal"] = refusal(turn.assistant)
            if not turn.assistant.strip():
                pass  # a message alone (ingested history): nobody complied or refused
            elif "request_harm" in found:
                found["harm_refusal"] = harm_refusal(
                    found["request_harm"], found.get("reply_harm", 0.0), found["refusal"]
                )
            elif found["refusal"]:
                found["harm_refusal"] = harm_refusal(0.5, 0.0, 1.0)
            if turn.next_user is not None:
                kind = next_turn_kind(turn.next_user, found.pop("_rephrase", None))
                found["user_retention"] = RETENTION[kind]
            found.pop("_rephrase", None)
            cost = compute_cost(turn.metrics)
            if cost is not None:
                found["compute_cost"] = cost
            rounded = {k: round(float(v), 4) for k, v in found.items()}
            out.append(
                Score(
                    combine(rounded, self.config.weights),
                    rounded,
                    self.definition.hash,
                    provisional=turn.next_user is None,
                )
            )
        return out

    def _embedding_signals(self, turns: Sequence[Turn], signals: list[dict[str, float]]) -> None:
        assert self.encoder is not None and self.classifiers is not None
        n = len(turns)
        nexts = [i for i, t in enumerate(turns) if t.next_user]
        texts = [t.user for t in turns] + [t.assistant for t in turns]
        texts += [turns[i].next_user or "" for i in nexts]
        vectors = self.encoder(texts)
        users, replies, next_vectors = vectors[:n], vectors[n : 2 * n], vectors[2 * n :]
        request_harm = self.classifiers.request_harm(users)
        reply_harm = self.classifiers.request_harm(replies)
        quality = self.classifiers.reply_quality(users, replies)
        for i in range(n):
            signals[i]["request_harm"] = float(request_harm[i])
            if turns[i].assistant.strip():  # a single (ingested) message has no reply to judge
                signals[i]["reply_harm"] = float(reply_harm[i])
                signals[i]["reply_quality"] = float(quality[i])
        for row, i in enumerate(nexts):
            signals[i]["_rephrase"] = float(next_vectors[row] @ users[i])

    def revise(self, signals: Mapping[str, float]) -> Score:
        """Recombine stored ``signals`` (after hindsight or feedback changed some) under this
        scorer's definition; final when ``user_retention`` or ``feedback`` is known."""
        clean = {k: float(v) for k, v in signals.items() if isinstance(v, int | float)}
        provisional = "user_retention" not in clean and "feedback" not in clean
        return Score(combine(clean, self.config.weights), clean, self.definition.hash, provisional)


def judge_definition(config: SymbiosisConfig) -> str:
    """What the definition hash records of the judge: its model and a hash of the rubric and
    schema (``""`` without a judge)."""
    if not config.judge_model:
        return ""
    from memory.score.judge import RUBRIC, RUBRIC_SCHEMA

    return f"{config.judge_model}:{sha256_json({'rubric': RUBRIC, 'schema': RUBRIC_SCHEMA})[:16]}"


def make_scorer(config: SymbiosisConfig, device: str = "cpu") -> Scorer:
    """The configured scorer: ``default`` loads MiniLM and the trained classifiers, falling back
    (with the reason in :attr:`Scorer.degraded`) to ``lexical`` when they are not installed."""
    scorer_kind = config.scorer
    encoder: Encoder | None = None
    classifiers: tuple[Classifiers, str] | None = None
    degraded: str | None = None
    if scorer_kind == "default":
        try:
            classifiers = Classifiers.load()
            encoder = load_encoder(device)
        except ImportError:
            degraded = "sentence-transformers is not installed (the 'local' extra)"
        except (OSError, ValueError, KeyError) as exc:
            degraded = f"cannot load the scorer's model: {exc}"
    scorer = Scorer(config, encoder, classifiers)
    scorer.degraded = degraded
    return scorer
