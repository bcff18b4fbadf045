"""Sticky blocks: each turn's memory block is put back where it was on the conversation's later
turns, so the prompt the upstream sees only ever grows at its end.

A chat client resends the whole conversation every turn, without the memory blocks the proxy
added. Injecting a fresh block at the latest turn alone (``memory.placement`` ``user`` or
``before_user``) keeps the client's prefix stable, but the previous turn's block disappears from
its turn, so a prefix-caching server (Ollama, llama.cpp: they keep the previous prompt's KV
cache and evaluate only what follows the longest common prefix) re-reads from that turn on. With
the earlier blocks re-inserted byte for byte the new prompt extends the previous prompt plus its
reply, and the whole of it is reused; each memory is shown once per conversation (later recalls
leave out the ones already shown). This is the pattern agent harnesses use for their reminders
in user turns.

Blocks are kept per replica in an LRU keyed by (user, session, digest of the conversation up to
the turn); a turn answered by another replica, or evicted, falls back to the client's own text
for that turn: the prompt is still correct, only its cached prefix is shorter.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from memory.types import MemoryBlock, Scope
from proxy.adapters.base import Conversation, Conversational, Placement

Key = tuple[str, str, str]


@dataclass(frozen=True)
class Shown:
    """A block that went into one turn: its exact text and the memories in it."""

    text: str
    ids: tuple[str, ...]
    tokens: int

    def block(self) -> MemoryBlock:
        """The same block as a :class:`~memory.types.MemoryBlock` (no timings)."""
        return MemoryBlock(self.text, self.ids, self.tokens)


@dataclass(frozen=True)
class Earlier:
    """What the sticky blocks say about one request's conversation."""

    blocks: dict[int, Shown]
    """Block of each earlier user turn that had one, by user-turn number (0-based)."""
    current: Shown | None
    """The block already given to the turn being answered, when the request continues it
    (a tool step): it is reused, not recalled again."""

    @property
    def shown_ids(self) -> frozenset[str]:
        """Ids of the memories already in front of the model in this conversation."""
        return frozenset(i for shown in self.blocks.values() for i in shown.ids)


class StickyBlocks:
    """LRU of the blocks given to conversation turns, at most ``max_entries`` of them (a few KB
    each: about 2 KB for the default 512-token block).

    Not thread-safe; used from the event loop only.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._blocks: OrderedDict[Key, Shown] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def get(self, scope: Scope, digest: str) -> Shown | None:
        """The block given to the turn ``digest`` of ``scope``, or None."""
        key = (scope.user, scope.session or "", digest)
        shown = self._blocks.get(key)
        if shown is not None:
            self._blocks.move_to_end(key)
        return shown

    def put(self, scope: Scope, digest: str, block: MemoryBlock) -> None:
        """Remember that the turn ``digest`` of ``scope`` got ``block`` (evicting the least
        recently used entry beyond ``max_entries``)."""
        key = (scope.user, scope.session or "", digest)
        self._blocks[key] = Shown(block.text, block.ids, block.tokens)
        self._blocks.move_to_end(key)
        while len(self._blocks) > self.max_entries:
            self._blocks.popitem(last=False)

    def earlier(self, scope: Scope, conversation: Conversation) -> Earlier:
        """The blocks of ``conversation``'s earlier turns (and of its current turn when the
        request continues it)."""
        *before, last = conversation.digests or ("",)
        blocks = {i: s for i, d in enumerate(before) if (s := self.get(scope, d)) is not None}
        current = self.get(scope, last) if conversation.continued and last else None
        return Earlier(blocks, current)


@dataclass
class StickyTurn:
    """One request's use of the sticky blocks: what to re-insert, and what to remember."""

    adapter: Conversational
    blocks: StickyBlocks
    scope: Scope
    conversation: Conversation
    earlier: Earlier

    @classmethod
    def of(
        cls, adapter: Conversational, blocks: StickyBlocks, scope: Scope, body: dict[str, Any]
    ) -> StickyTurn:
        """The sticky view of ``body`` (the client's own, before any injection)."""
        conversation = adapter.conversation(body)
        return cls(adapter, blocks, scope, conversation, blocks.earlier(scope, conversation))

    def reinsert(self, body: dict[str, Any], placement: Placement) -> dict[str, Any]:
        """``body`` with each earlier turn's block back where it was."""
        for turn, shown in sorted(self.earlier.blocks.items()):
            body = self.adapter.inject_at(body, turn, shown.text, placement)
        return body

    def remember(self, block: MemoryBlock) -> None:
        """Keep ``block`` as the current turn's (nothing to keep when it is empty)."""
        if block.text and self.conversation.digests:
            self.blocks.put(self.scope, self.conversation.digests[-1], block)
