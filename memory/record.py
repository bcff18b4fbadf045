"""Stored memory records: the schema version and :class:`MemoryRecord`, the one decoder and
encoder of a memory's Chroma metadata."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
  version 3. The raw archive and the score log are new in this version. Added later within
  version 3, optional and defaulted like the rest: ``auth`` (how the writer's user was proven;
  absent reads as claimed, which is what every earlier memory was).

:class:`MemoryRecord` is where these defaults live.
"""
READABLE_VERSIONS = frozenset({1, 2, 3})
"""Record versions this package reads."""

Scalar = str | int | float | bool
"""A metadata value as Chroma stores it."""
NEUTRAL_SYMBIOSIS = 0.5
"""The symbiosis score of an unscored memory (the middle of [0, 1])."""


@dataclass(frozen=True)
class MemoryRecord:
    """One stored memory: its Chroma metadata decoded by :meth:`from_metadata` and encoded back
    by :meth:`to_metadata`. Fields are named after the stored keys; times are Unix seconds.

    A key that is not stored reads as the field's default, so the version-1 and version-2
    records of :data:`SCHEMA_VERSION` need no rewrite and an unscored memory is a neutral
    attractor (``symbiosis`` :data:`NEUTRAL_SYMBIOSIS`, ``polarity`` None, not a repulsor).
    ``stored`` names the decoded keys, which :meth:`to_metadata` writes back (defaults of keys
    that were not stored are not written); ``extra`` keeps, as stored, every key the record
    does not model (the upstream's metrics, keys of a newer version) and every value that does
    not decode to its field's type or would not encode back to the same value, so
    ``record.to_metadata()`` always equals the metadata it was read from.
    """

    id: str
    text: str
    schema_version: int = 1
    user: str | None = None
    auth: str | None = None
    """How the writer's user was proven: ``token``, ``jwt`` or ``claimed`` (None: written
    before the proxy authenticated anyone, so claimed)."""
    session: str | None = None
    tier: str | None = None
    """``session``, ``user`` or ``shared``."""
    speaker: str | None = None
    model: str | None = None
    endpoint: str | None = None
    exchange_id: str | None = None
    embedder: str | None = None
    event_at: float | None = None
    """When the exchange happened (see :attr:`event_time`)."""
    created_at: float | None = None
    """When the memory was stored."""
    finished_at: float | None = None
    thinking_chars: int | None = None
    valence: float | None = None
    strength: float = 1.0
    """Stored strength in [0, 1], before decay (:mod:`memory.metabolism.decay`)."""
    access_count: int = 0
    last_access_at: float = 0.0
    reinforcements: int = 0
    last_reinforced_at: float = 0.0
    provenance: tuple[str, ...] = ()
    """Source exchange ids (stored as a JSON list)."""
    importance: float = 1.0
    """The write gate's importance (1 for memories written before the gate existed)."""
    symbiosis: float = NEUTRAL_SYMBIOSIS
    """Symbiosis score in [0, 1] (see :attr:`scored`)."""
    symbiosis_signals: Mapping[str, float] = field(default_factory=dict)
    """The score's signals, each in [0, 1] (stored as a JSON object)."""
    symbiosis_definition: str | None = None
    symbiosis_provisional: bool | None = None
    """Whether the score may still be revised in hindsight (None: unscored)."""
    polarity: str | None = None
    """``attractor`` or ``repulsor`` (None: unscored)."""
    phase: str | None = None
    """``free`` or ``screened`` decay phase."""
    dormant: bool = False
    quadrant: str | None = None
    uses_at_cycle: int = 0
    """:attr:`uses` at the last sleep cycle."""
    consolidated_into: str | None = None
    confirmations: int = 0
    """Shared tier: distinct users who confirm the memory."""
    contradictions: int = 0
    """Shared tier: distinct users who contradict it."""
    supporters: tuple[str, ...] = ()
    """Shared tier: pseudonymous tags of the confirming users (stored as a JSON list)."""
    dropped: str | None = None
    """Shared tier: why the memory is dropped (``""``: it is not)."""
    stored: frozenset[str] = frozenset()
    extra: Mapping[str, Scalar] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, id: str, document: str, metadata: Mapping[str, Any]) -> MemoryRecord:
        """Decode a memory as the store returns it (``metadata``: Chroma's scalars)."""
        values, stored, extra = _decode(metadata)
        return cls(id, document, **values, stored=stored, extra=extra)

    @classmethod
    def create(cls, id: str, text: str, **fields: Any) -> MemoryRecord:
        """A new record holding ``fields`` (field name -> value; None is not stored)."""
        return cls.from_metadata(id, text, {k: _encode(v) for k, v in fields.items()})

    def to_metadata(self) -> dict[str, Scalar]:
        """The record as Chroma stores it: the inverse of :meth:`from_metadata`."""
        out = dict(self.extra)
        for key in _DECODERS:
            if key in self.stored:
                value = _encode(getattr(self, key))
                if value is not None:
                    out[key] = value
        return out

    def merged(self, update: Mapping[str, Any]) -> MemoryRecord:
        """The record with ``update`` (stored keys -> values, as
        :meth:`memory.store.chroma.Store.update_metadata` takes them) set; as there, a None value
        leaves its key as it is."""
        values, stored, extra = _decode(update)
        changed = {k for k, v in update.items() if v is not None}
        for key in changed - values.keys():
            if key in _DECODERS:  # stored in a form that does not decode: read as the default
                values[key] = _default(key)
        return dataclasses.replace(
            self,
            **values,
            stored=(self.stored - changed) | stored,
            extra={**{k: v for k, v in self.extra.items() if k not in changed}, **extra},
        )

    def has(self, key: str) -> bool:
        """Whether the stored metadata holds ``key`` (decoded or not)."""
        return key in self.stored or key in self.extra

    @property
    def scored(self) -> bool:
        """Whether the memory carries a symbiosis score (version 3: the sleep cycle scores older
        memories)."""
        return self.has("symbiosis")

    @property
    def event_time(self) -> float | None:
        """When the exchange happened, else when the memory was stored (None: neither known)."""
        return self.event_at if self.event_at is not None else self.created_at

    @property
    def last_used(self) -> float:
        """When the memory was last said, recalled or reinforced (0 if unknown)."""
        return max(self.event_time or 0.0, self.last_access_at, self.last_reinforced_at)

    @property
    def uses(self) -> int:
        """Recalls plus reinforcements."""
        return self.access_count + self.reinforcements

    @property
    def authenticated(self) -> bool:
        """Whether the memory's user was proven (a token or Open WebUI JWT) when it was said."""
        return self.auth in ("token", "jwt")

    @property
    def repulsor(self) -> bool:
        """Whether the memory was scored at or below the symbiosis threshold."""
        return self.polarity == "repulsor"

    @property
    def screened(self) -> bool:
        """Whether the memory is in the screened (slow decay) phase."""
        return self.phase == "screened"


def encoded(**fields: Any) -> dict[str, Scalar]:
    """``fields`` (field name -> value) as stored keys and values: a metadata update as
    :meth:`memory.store.chroma.Store.update_metadata` takes it (None values are left out).

    >>> encoded(provenance=("e1", "e2"), dormant=True, phase=None)
    {'provenance': '["e1", "e2"]', 'dormant': True}
    """
    return MemoryRecord.create("", "", **fields).to_metadata()


def signals_of(meta: Mapping[str, Any]) -> dict[str, float]:
    """The stored symbiosis signals of a memory (``{}`` when unscored or malformed)."""
    return dict(MemoryRecord.from_metadata("", "", meta).symbiosis_signals)


def provenance(meta: Mapping[str, Any]) -> list[str]:
    """Source exchange ids of a memory (stored as a JSON list)."""
    return list(MemoryRecord.from_metadata("", "", meta).provenance)


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


Decoded = tuple[Any, bool]
"""A decoded value (None: not decodable) and whether encoding it gives the stored value back."""


def _text(raw: Any) -> Decoded:
    return (raw, True) if isinstance(raw, str) else (None, False)


def _number(raw: Any) -> Decoded:
    # Kept as stored (an int stays an int), so it is written back unchanged.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None, False
    return raw, True


def _count(raw: Any) -> Decoded:
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None, False
    return int(raw), isinstance(raw, int)


def _flag(raw: Any) -> Decoded:
    return (raw, True) if isinstance(raw, bool) else (None, False)


def _ids(raw: Any) -> Decoded:
    """A JSON list of ids; a string that is no JSON list is one id."""
    if not isinstance(raw, str):
        return None, False
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return (raw,), False
    value = tuple(str(x) for x in data) if isinstance(data, list) else (str(data),)
    return value, _encode(value) == raw


def _signals(raw: Any) -> Decoded:
    """A JSON object of named scores; entries that are not numbers are left out."""
    if not isinstance(raw, str):
        return None, False
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        return None, False
    if not isinstance(data, dict):
        return None, False
    value = {k: float(v) for k, v in data.items() if isinstance(v, int | float)}
    return value, _encode(value) == raw


def _encode(value: Any) -> Any:
    """A field's value as Chroma stores it: id lists and signals as JSON (the formats the
    writers have always used), scalars as they are."""
    if isinstance(value, tuple):
        return json.dumps(list(value), ensure_ascii=False)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def _decode(metadata: Mapping[str, Any]) -> tuple[dict[str, Any], frozenset[str], dict[str, Any]]:
    """``(field values, keys that round-trip, everything else as stored)`` of ``metadata``;
    None values are left out (Chroma cannot store them)."""
    values: dict[str, Any] = {}
    exact: list[str] = []
    extra: dict[str, Any] = {}
    for key, raw in metadata.items():
        if raw is None:
            continue
        decode = _DECODERS.get(key)
        value, same = (None, False) if decode is None else decode(raw)
        if value is not None:
            values[key] = value
        if same:
            exact.append(key)
        else:
            extra[key] = raw  # written back as it was read
    return values, frozenset(exact), extra


_BY_TYPE: dict[str, Callable[[Any], Decoded]] = {
    "str | None": _text,
    "float | None": _number,
    "float": _number,
    "int | None": _count,
    "int": _count,
    "bool | None": _flag,
    "bool": _flag,
    "tuple[str, ...]": _ids,
    "Mapping[str, float]": _signals,
}
_FIELDS = [f for f in dataclasses.fields(MemoryRecord) if f.name not in ("id", "text", "stored")]
_DECODERS: dict[str, Callable[[Any], Decoded]] = {
    f.name: _BY_TYPE[str(f.type)] for f in _FIELDS if f.name != "extra"
}
"""Stored key -> its decoder, in field order."""
_MODELLED = {f.name: f for f in _FIELDS if f.name != "extra"}


def _default(name: str) -> Any:
    """The value of field ``name`` when its key is not stored."""
    f = _MODELLED[name]
    return f.default_factory() if callable(f.default_factory) else f.default
