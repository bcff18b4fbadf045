"""The tamper-evident score log: one JSON line per symbiosis score, hash-chained.

Each entry holds what an auditor needs to check that a score exists and was not altered,
without the memory's text: the exchange's content address, the memory id, the score, the
polarity, the hash of the symbiosis definition used and a hash of the signals. ``hash`` is the
SHA-256 of the entry (without ``hash``) as compact key-sorted JSON, and ``prev`` is the previous
entry's ``hash`` (64 zeros for the first), so changing, removing or reordering any entry breaks
every hash after it (a hash chain, as in Haber and Stornetta 1991 / certificate transparency
logs). Revisions (hindsight, feedback) are new entries, never edits.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memory.errors import StoreError
from memory.types import sha256_json

GENESIS = "0" * 64
LOG_VERSION = 1


@dataclass(frozen=True)
class Verification:
    """Result of :func:`verify`: ``ok``, entries read, the first bad line (1-based) and why,
    and the entries about the asked-for exchange or memory id."""

    ok: bool
    entries: int
    bad_line: int | None = None
    reason: str | None = None
    matches: tuple[dict[str, Any], ...] = ()


def entry_hash(entry: dict[str, Any]) -> str:
    """SHA-256 hex of ``entry`` without its ``hash`` field."""
    return sha256_json({k: v for k, v in entry.items() if k != "hash"})


class ScoreLog:
    """Appends hash-chained entries to a JSONL file (one writer process; thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._prev: str | None = None
        self._seq = 0

    def _tail(self) -> None:
        self._prev, self._seq = GENESIS, 0
        if not self.path.exists():
            return
        last = b""
        with self.path.open("rb") as f:
            for line in f:
                if line.strip():
                    last = line
        if last:
            entry = json.loads(last)
            self._prev, self._seq = str(entry["hash"]), int(entry["seq"])

    def append(self, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """Append one entry per record (``exchange_id``, ``memory_id``, ``user``, ``score``,
        ``polarity``, ``definition``, ``signals``, ``reason``); the user name and the signals
        are stored as hashes. Returns the entries written.

        Raises:
            StoreError: the file cannot be written.
        """
        with self._lock:
            try:
                if self._prev is None:
                    self._tail()
                out = []
                for record in records:
                    self._seq += 1
                    entry = {
                        "v": LOG_VERSION,
                        "seq": self._seq,
                        "at": round(time.time(), 3),
                        "exchange_id": record.get("exchange_id"),
                        "memory_id": record.get("memory_id"),
                        "user": sha256_json(record.get("user", ""))[:16],
                        "score": record["score"],
                        "polarity": record.get("polarity"),
                        "definition": record.get("definition"),
                        "signals": sha256_json(record.get("signals", {}))[:16],
                        "reason": record.get("reason", "scored"),
                        "prev": self._prev,
                    }
                    entry["hash"] = entry_hash(entry)
                    self._prev = entry["hash"]
                    out.append(entry)
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as f:
                    f.write("".join(json.dumps(e, sort_keys=True) + "\n" for e in out))
                    f.flush()
                    os.fsync(f.fileno())
                return out
            except (OSError, ValueError, KeyError) as exc:
                self._prev = None  # re-read the tail next time
                raise StoreError(f"score log at {self.path}: {exc}") from exc


def verify(path: Path, find: str | None = None) -> Verification:
    """Check every entry's hash and its link to the previous one; collect the entries whose
    ``exchange_id`` or ``memory_id`` is ``find``. A missing file is an empty, valid log."""
    prev, count, matches = GENESIS, 0, []
    if not path.exists():
        return Verification(True, 0)
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                return Verification(False, count, number, "not JSON")
            if entry.get("prev") != prev:
                return Verification(False, count, number, "chain broken (prev does not match)")
            if entry.get("hash") != entry_hash(entry):
                return Verification(False, count, number, "entry altered (hash does not match)")
            prev = entry["hash"]
            count += 1
            if find is not None and find in (entry.get("exchange_id"), entry.get("memory_id")):
                matches.append(entry)
    return Verification(True, count, matches=tuple(matches))
