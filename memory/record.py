"""Stored memory records: the schema version and the readers of Chroma metadata."""

from __future__ import annotations

import json
from typing import Any

SCHEMA_VERSION = 3
"""Version of the records this package writes (Chroma metadata, outbox rows). Bump with a
migration.

- 1: first release.
- 2: memories carry ``speaker``, ``strength``, ``access_count``, ``last_access_at``,
  ``valence`` and ``provenance``; outbox exchanges carry ``speaker``. Every added field is
  optional and read with its default, so version-1 records need no rewrite: readers accept
  both (:data:`READABLE_VERSIONS`).
- 3: memories carry the symbiosis score (``symbiosis``, ``symbiosis_signals``,
  ``symbiosis_definition``, ``symbiosis_provisional``, ``polarity``), ``importance``,
  ``reinforcements``, ``last_reinforced_at``, ``phase``, ``dormant``, and after a sleep cycle
  ``quadrant``, ``uses_at_cycle`` and possibly ``consolidated_into``. Readers default every
  one of them (an unscored memory counts as a neutral attractor); the sleep cycle
  (``symbiotic-memory metabolize``) migrates older records by scoring them and stamping
  version 3. The raw archive and the score log are new in this version.
"""
READABLE_VERSIONS = frozenset({1, 2, 3})
"""Record versions this package reads."""


def num(meta: dict[str, Any], key: str, default: float = 0.0) -> float:
    """A numeric metadata value, or ``default``."""
    value = meta.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)


def last_used(meta: dict[str, Any]) -> float:
    """When a memory was last said, recalled or reinforced (Unix seconds; 0 if unknown)."""
    return max(
        num(meta, "event_at", num(meta, "created_at")),
        num(meta, "last_access_at"),
        num(meta, "last_reinforced_at"),
    )


def uses(meta: dict[str, Any]) -> int:
    """Recalls plus reinforcements of a memory."""
    return int(num(meta, "access_count") + num(meta, "reinforcements"))


def signals_of(meta: dict[str, Any]) -> dict[str, float]:
    """The stored symbiosis signals of a memory (``{}`` when unscored or malformed)."""
    raw = meta.get("symbiosis_signals")
    if not isinstance(raw, str):
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float)}


def provenance(meta: dict[str, Any]) -> list[str]:
    """Source exchange ids of a memory (stored as a JSON list)."""
    raw = meta.get("provenance")
    if isinstance(raw, str):
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            return [raw]
        return [str(x) for x in data] if isinstance(data, list) else [str(data)]
    return []


def split_exchange(text: str) -> tuple[str, str]:
    """``(user, assistant)`` of a stored memory text (``User: ...\\nAssistant: ...``), or the
    whole text as the user's turn.

    >>> split_exchange("User: hi\\nAssistant: hello")
    ('hi', 'hello')
    """
    if text.startswith("User: ") and "\nAssistant: " in text:
        user, reply = text[6:].split("\nAssistant: ", 1)
        return user, reply
    return text, ""
