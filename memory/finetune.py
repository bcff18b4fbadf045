"""Fine-tuning records from one user's memories (``memories export --format jsonl|sft|dpo``).

Pure functions (memories in, JSON-ready dicts out) except :func:`archived_turns`, which reads
the raw archive. Three outputs:

- **jsonl** with embeddings (:func:`with_embeddings`): the ``memories export`` records, each
  stored memory also carrying ``"embedding"``, its vector as stored.
- **sft** (:func:`sft_records`): Hugging Face TRL's conversational SFT format, one object per
  selected attractor, ``{"messages": [{"role": "user", ...}, {"role": "assistant", ...}]}``.
- **dpo** (:func:`dpo_records`): TRL's conversational preference format, one object per
  repulsor that has a near attractor: ``{"prompt": [user], "chosen": [assistant],
  "rejected": [assistant]}``.

Which memories are used (:class:`Selection`): an **attractor** is a memory whose ``polarity``
is ``attractor`` or, unscored by polarity, whose symbiosis is above ``symbiosis.threshold``
(an unscored memory reads as a neutral 0.5: an attractor at the default threshold 0.4, as
recall treats it); a **repulsor** is the rest. By default every *live* memory is used: not
dormant and not consolidated into another (a consolidated-away near-duplicate is dormant with
``consolidated_into`` set; its survivor holds its provenance). ``consolidated_only`` keeps only
attractors the metabolism has confirmed: merged into by others (some memory's
``consolidated_into`` names them), reinforced at least once, or in the ``screened`` phase.

The turns of a memory (:func:`turns_of`): the archived exchange (its user turn and reply, by
the memory's ``exchange_id``) when the raw archive holds it, else the stored text split at
``User: ...\\nAssistant: ...`` (the layout :attr:`memory.types.Exchange.text` writes); a
memory without a reply (a single ingested message) is skipped and counted.

Reference: TRL dataset formats, https://huggingface.co/docs/trl/dataset_formats
("conversational" language modeling and preference).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memory.record import MemoryRecord, split_exchange
from memory.store.archive import RawArchive
from memory.types import MemoryHit

Turns = tuple[str, str]
"""``(user turn, assistant reply)`` of one exchange."""

EMBEDDING_KEY = "embedding"
"""Key of a stored memory's vector in a jsonl record (a list of floats, float32 values)."""

DEFAULT_MIN_SIMILARITY = 0.6
"""Cosine floor (in [-1, 1]) between a repulsor and the attractor whose reply becomes its
``chosen`` side. The memories' embeddings cover the user turn and the reply; at 0.6 the two
are clearly about the same thing without being near-duplicates (the metabolism consolidates
from ``metabolism.consolidate_similarity``)."""


@dataclass(frozen=True)
class Selection:
    """Which memories become records (see the module docstring)."""

    threshold: float = 0.4
    """``symbiosis.threshold``: at or below it an unpolarised memory is a repulsor."""
    min_symbiosis: float | None = None
    """Attractors scored below this are left out (None: every attractor)."""
    consolidated_only: bool = False
    include_dormant: bool = False
    """Also use dormant memories (never those consolidated into another)."""


@dataclass
class Report:
    """How many records were written and why memories were skipped (reason -> count)."""

    written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    def summary(self, kind: str) -> str:
        """One line: ``wrote N sft records (skipped M: 2 repulsor, 1 no reply)``."""
        total = sum(self.skipped.values())
        reasons = ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
        return (
            f"wrote {self.written} {kind} records (skipped {total}{': ' if total else ''}{reasons})"
        )


def is_attractor(record: MemoryRecord, threshold: float) -> bool:
    """Whether ``record`` is an attractor: its polarity, else symbiosis above ``threshold``."""
    if record.polarity is not None:
        return record.polarity == "attractor"
    return record.symbiosis > threshold


def merged_into(records: Iterable[MemoryRecord]) -> set[str]:
    """Ids of memories that others were consolidated into."""
    return {r.consolidated_into for r in records if r.consolidated_into}


def skip_reason(
    record: MemoryRecord, selection: Selection, survivors: set[str], attractor: bool
) -> str | None:
    """Why ``record`` is not used on the ``attractor`` (or repulsor) side, or None when it is;
    ``survivors``: :func:`merged_into` of the user's memories."""
    if is_attractor(record, selection.threshold) != attractor:
        return "repulsor" if attractor else "attractor"
    if record.consolidated_into:
        return "consolidated"
    if record.dormant and not selection.include_dormant:
        return "dormant"
    if not attractor:
        return None
    if selection.min_symbiosis is not None and record.symbiosis < selection.min_symbiosis:
        return "below min symbiosis"
    confirmed = record.id in survivors or record.reinforcements > 0 or record.screened
    if selection.consolidated_only and not confirmed:
        return "not consolidated"
    return None


def turns_of(hit: MemoryHit, archived: Mapping[str, Turns]) -> Turns | None:
    """The memory's user turn and reply: archived (by ``exchange_id``), else split from its
    text; None when there is no reply."""
    turns = archived.get(hit.record.exchange_id or "")
    if turns is None or not turns[1].strip():
        turns = split_exchange(hit.text)
    if not turns[0].strip() or not turns[1].strip():
        return None
    return turns


def archived_turns(archive: RawArchive, hits: Iterable[MemoryHit]) -> dict[str, Turns]:
    """``exchange_id -> (user turn, reply)`` of the memories' exchanges the (open) archive
    holds. Raises StoreError."""
    out: dict[str, Turns] = {}
    for hit in hits:
        exchange_id = hit.record.exchange_id
        if exchange_id and exchange_id not in out:
            exchange = archive.get(exchange_id)
            if exchange is not None:
                out[exchange_id] = (exchange.user_text, exchange.reply)
    return out


def sft_record(turns: Turns) -> dict[str, Any]:
    """One TRL conversational SFT record."""
    user, reply = turns
    return {
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": reply},
        ]
    }


def dpo_record(prompt: str, chosen: str, rejected: str) -> dict[str, Any]:
    """One TRL conversational preference record."""
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def _usable(
    hits: Sequence[MemoryHit], selection: Selection, archived: Mapping[str, Turns], attractor: bool
) -> tuple[list[tuple[int, Turns]], Report]:
    """``(index, turns)`` of the memories used on one side, and the skips."""
    report = Report()
    survivors = merged_into(h.record for h in hits)
    used = []
    for i, hit in enumerate(hits):
        why = skip_reason(hit.record, selection, survivors, attractor)
        turns = turns_of(hit, archived) if why is None else None
        if why is None and turns is None:
            why = "no reply"
        if why is None and turns is not None:
            used.append((i, turns))
        else:
            report.skipped[why or ""] += 1
    return used, report


def sft_records(
    hits: Sequence[MemoryHit], selection: Selection, archived: Mapping[str, Turns]
) -> tuple[list[dict[str, Any]], Report]:
    """SFT records of the selected attractors among ``hits``, in store order, and the report
    (every other memory is counted as skipped, with its reason)."""
    used, report = _usable(hits, selection, archived, attractor=True)
    report.written = len(used)
    return [sft_record(turns) for _, turns in used], report


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` (shape ``(n, dim)``) scaled to unit length (zero rows stay zero).

    >>> unit_rows(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist()
    [[0.6, 0.8], [0.0, 0.0]]
    """
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    out: np.ndarray = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return out


def dpo_records(
    hits: Sequence[MemoryHit],
    vectors: np.ndarray,
    selection: Selection,
    archived: Mapping[str, Turns],
    min_similarity: float = DEFAULT_MIN_SIMILARITY,
) -> tuple[list[dict[str, Any]], Report]:
    """One preference record per selected repulsor: its user turn as ``prompt``, its reply
    ``rejected``, and as ``chosen`` the reply of the selected attractor nearest to it (cosine
    of the memories' embeddings, ``vectors`` of shape ``(len(hits), dim)``) when at least
    ``min_similarity``. Repulsors without one are skipped and counted (``no attractor near``),
    as are those whose nearest attractor gave the same reply (``same reply``); attractors are
    not counted (they are the other side, not records)."""
    rejected, report = _usable(hits, selection, archived, attractor=False)
    del report.skipped["attractor"]  # the other side, not skipped
    chosen, _ = _usable(hits, selection, archived, attractor=True)
    if not rejected or not chosen or len(vectors) != len(hits):
        report.skipped["no attractor near"] += len(rejected)
        return [], report
    unit = unit_rows(np.asarray(vectors, dtype=np.float64))
    rows = [j for j, _ in chosen]
    out = []
    for i, (prompt, bad) in rejected:
        best = _nearest(unit, i, rows, min_similarity)
        good = chosen[best][1][1] if best >= 0 else ""
        if best < 0 or good.strip() == bad.strip():
            report.skipped["no attractor near" if best < 0 else "same reply"] += 1
        else:
            out.append(dpo_record(prompt, good, bad))
    report.written = len(out)
    return out, report


def _nearest(unit: np.ndarray, row: int, candidates: list[int], floor: float) -> int:
    """Position in ``candidates`` of the row most similar to ``row``, or -1 below ``floor``."""
    sims = unit[candidates] @ unit[row]
    best = int(np.argmax(sims))
    return best if float(sims[best]) >= floor else -1


def with_embeddings(
    records: Iterable[dict[str, Any]], hits: Sequence[MemoryHit], vectors: np.ndarray
) -> list[dict[str, Any]]:
    """``memories export`` records, each ``stored`` one whose memory is among ``hits`` (with
    ``vectors``, shape ``(len(hits), dim)``) also carrying :data:`EMBEDDING_KEY`: its vector as
    a list of floats (the stored float32 values, exactly: read back as float32 they are equal
    bit for bit). Records of memories without a vector, and ``pending`` ones, are unchanged."""
    by_id = {h.id: i for i, h in enumerate(hits)} if len(vectors) == len(hits) else {}
    out = []
    for record in records:
        row = by_id.get(record["id"]) if record.get("state") == "stored" else None
        if row is not None:
            vector = np.asarray(vectors[row], dtype=np.float32).astype(np.float64)
            record = {**record, EMBEDDING_KEY: vector.tolist()}
        out.append(record)
    return out
