"""Domain records shared by the proxy and the memory package."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from memory.record import MemoryRecord
from memory.voice import user_voiced

ExchangeStatus = Literal["ok", "failed", "aborted", "tool_call"]
AuthMethod = Literal["token", "jwt", "claimed"]
"""How a scope's user was established: a proxy token, Open WebUI's signed JWT, or only
claimed by the client (headers, body, ``default``)."""
AUTHENTICATED: frozenset[str] = frozenset({"token", "jwt"})


@dataclass(frozen=True)
class Scope:
    """Who a request belongs to. ``user`` is the hard isolation boundary; ``auth`` says whether
    it was proven (only proven users count toward the shared tier)."""

    user: str
    session: str | None = None
    auth: AuthMethod = "claimed"


@dataclass
class Exchange:
    """One user turn and the assistant's reply, as it passed through the proxy.

    ``metrics`` holds the upstream's final figures when present: ``done_reason``, ``eval_count``,
    ``prompt_eval_count``, ``total_duration``, ``load_duration``, ``prompt_eval_duration``,
    ``eval_duration`` (nanoseconds, from Ollama's final chunk) or OpenAI's ``usage`` mapped to the
    same names. Timestamps are Unix seconds.
    """

    scope: Scope
    endpoint: str
    model: str
    user_text: str
    reply: str = ""
    thinking: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    status: ExchangeStatus = "ok"
    error: str | None = None
    started_at: float = 0.0
    finished_at: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    speaker: str | None = None
    """Who said the user turn, when known (a chat message's ``name``, an ingested ``name``)."""
    assigned_id: str | None = None
    """The id the proxy gave the client (``X-Memory-Exchange-Id``) before the reply was known;
    when set it is the exchange's :attr:`id`."""

    @property
    def id(self) -> str:
        """:attr:`assigned_id` when set, else SHA-256 (hex) of the exchange's scope, texts and
        start time: its content address."""
        if self.assigned_id:
            return self.assigned_id
        return sha256_json(
            [self.scope.user, self.scope.session, self.user_text, self.reply, self.started_at]
        )

    @property
    def text(self) -> str:
        """The text embedded and stored: ``User: ...\\nAssistant: ...`` (the prototype's own
        layout), or the message alone for a single ingested message."""
        if not self.reply:
            return self.user_text
        return f"User: {self.user_text}\nAssistant: {self.reply}"


@dataclass(frozen=True)
class MemoryHit:
    """A stored memory as returned by the store; ``similarity`` is cosine similarity in [-1, 1]."""

    id: str
    text: str
    metadata: dict[str, Any]
    similarity: float | None = None

    @cached_property
    def record(self) -> MemoryRecord:
        """The decoded ``metadata`` (decoded on first use, then kept: change a memory by
        building a new hit, not by changing ``metadata`` in place)."""
        return MemoryRecord.from_metadata(self.id, self.text, self.metadata)

    @cached_property
    def user_voiced(self) -> bool:
        """Whether the memory holds the user's own words, not only an assistant's answer
        (:func:`memory.voice.user_voiced`; computed once per hit)."""
        return user_voiced(self.text)

    def with_similarity(self, similarity: float | None) -> MemoryHit:
        """The same memory with another ``similarity`` (keeping the decoded :attr:`record`)."""
        out = MemoryHit(self.id, self.text, self.metadata, similarity)
        for cached in ("record", "user_voiced"):
            if cached in self.__dict__:
                out.__dict__[cached] = self.__dict__[cached]
        return out


@dataclass(frozen=True)
class MemoryBlock:
    """What recall produced for one request: the rendered text and how it was obtained.

    ``text`` is empty when nothing was recalled; ``tokens`` counts cl100k tokens of ``text``;
    ``timings_ms`` has one entry per recall stage (``embed``, ``candidates``, ``rank``, ``pack``).
    """

    text: str
    ids: tuple[str, ...]
    tokens: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    best_similarity: float | None = None
    """Cosine similarity of the best candidate (None when the user has no memories)."""
    caution: bool = False
    """Whether the block carries the cautionary note of a relevant repulsor."""

    @classmethod
    def empty(cls) -> MemoryBlock:
        """A block that injects nothing."""
        return cls(text="", ids=(), tokens=0)


def sha256_json(value: Any) -> str:
    """SHA-256 hex digest of ``value`` serialised as compact, key-sorted JSON."""
    raw = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()
