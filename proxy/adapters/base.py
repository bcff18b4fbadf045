"""What every wire-format adapter provides, and the reply it assembles.

Where an adapter puts the memory block is the :data:`Placement` (``memory.placement``):

- ``system``: merged into the client's leading system instructions (the first release's
  behaviour). Every turn whose recall differs changes the prompt's first tokens, so a server
  with prefix caching (Ollama, llama.cpp) re-reads the whole conversation.
- ``before_user``: its own system message just before the turn being answered (formats without
  a system role in the conversation fall back to ``user``).
- ``user``: a leading part of the turn being answered, before the user's own text.

The last two keep the client's own prefix byte-identical from turn to turn, so only the latest
turn is evaluated anew. An adapter that is also :class:`Conversational` lets the proxy put each
earlier turn's block back where it was (``proxy.sticky``), so the upstream prompt only ever
grows at its end; ``scripts/bench_prefix.py`` measures the difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import ValidationError

from memory.config import Placement
from proxy.wire import ApiKind, Framing, Wire

__all__ = [
    "SAMPLING",
    "Adapter",
    "Conversation",
    "Conversational",
    "Placement",
    "Reply",
    "parse_chunk",
]

C = TypeVar("C", bound=Wire)

SAMPLING = ("temperature", "top_p")
"""The sampling knobs the affect state may set (where the client set none)."""


@dataclass
class Reply:
    """The assistant's side of an exchange as assembled so far."""

    content: str = ""
    thinking: str = ""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    """Ollama's names: ``done_reason``, ``eval_count``, ``prompt_eval_count``, durations in ns."""
    error: str | None = None
    done: bool = False
    unparsed: int = 0
    """Frames that were not valid JSON, or not a chunk of this format (relayed anyway)."""


class Adapter(Protocol):
    """One wire format of an intercepted chat endpoint: how to read and edit its request body
    and how to read its reply chunks.

    Bodies are plain JSON objects already validated against :attr:`request_model`; methods that
    edit return a new object and never mutate the body or alter the user's messages.
    """

    kind: ApiKind
    """The format's name (the key of ``proxy.adapters.ADAPTERS``)."""
    path: str
    """The endpoint it serves, e.g. ``/api/chat``."""
    request_model: type[Wire]
    """The typed model the body is validated against (``BadRequest`` when it does not fit)."""
    framing: Framing
    """The framing of its streamed replies (a reply's own ``Content-Type`` decides in the
    relay; this is what the proxy writes when it frames a reply itself)."""

    def user_turn(self, body: dict[str, Any]) -> str | None:
        """The text this request asks about, or None when it should not touch memory (model
        load/unload, raw generation, a reply being continued)."""
        ...

    def recall_query(self, body: dict[str, Any], turn: str) -> str:
        """The text recall searches with for the user turn ``turn``."""
        ...

    def earlier_user_turns(self, body: dict[str, Any]) -> frozenset[str]:
        """Stripped texts of the user turns before ``turn``: what the model already sees."""
        ...

    def speaker(self, body: dict[str, Any]) -> str | None:
        """The name the user's turn is signed with, if the format has one."""
        ...

    def is_completion(self, body: dict[str, Any]) -> bool:
        """Whether ``body`` asks for a text completion (raw prompt, fill-in-the-middle) rather
        than a conversational turn: relayed without recall and never stored."""
        ...

    def inject(
        self, body: dict[str, Any], block: str, placement: Placement = "system"
    ) -> dict[str, Any]:
        """A copy of ``body`` with the memory ``block`` placed as ``placement`` says (formats
        with no conversation, like ``/api/generate``, always use their system field)."""
        ...

    def with_sampling(self, body: dict[str, Any], knobs: dict[str, float]) -> dict[str, Any]:
        """A copy of ``body`` with :data:`SAMPLING` knobs set where the client set none."""
        ...

    def absorb(self, reply: Reply, frame: dict[str, Any]) -> None:
        """Fold one decoded reply frame (a streamed chunk or the whole body, never an error
        frame) into ``reply``; a frame that is not of this format counts as ``unparsed``."""
        ...


@dataclass(frozen=True)
class Conversation:
    """The shape of a conversation body as the client sent it (before any injection)."""

    digests: tuple[str, ...]
    """One SHA-256 (hex) per user message, in order: of the conversation up to and including
    that message (canonical JSON of each message). Equal digests mean the client resent the
    same conversation up to that turn."""
    continued: bool
    """Whether something follows the last user message (a tool step of the same turn)."""


@runtime_checkable
class Conversational(Protocol):
    """An adapter whose body is a conversation the client resends each turn (``messages``):
    what lets the proxy re-insert earlier turns' blocks (``proxy.sticky``)."""

    def conversation(self, body: dict[str, Any]) -> Conversation:
        """The :class:`Conversation` of ``body``."""
        ...

    def inject_at(
        self, body: dict[str, Any], turn: int, block: str, placement: Placement
    ) -> dict[str, Any]:
        """A copy of ``body`` with ``block`` placed at user message number ``turn`` (0-based,
        negative from the end) as ``placement`` (``before_user`` or ``user``) says; raises
        IndexError when there is no such user message."""
        ...


def parse_chunk(model: type[C], frame: dict[str, Any], reply: Reply) -> C | None:
    """``frame`` as ``model``; None (counted in ``reply.unparsed``) when it does not fit."""
    try:
        return model.model_validate(frame)
    except ValidationError:
        reply.unparsed += 1
        return None
