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
the turn), each with the turns whose blocks were in its prompt, so the next turn rebuilds exactly
that prompt. A turn answered by another replica, or evicted, falls back to the blocks this
replica has (or the client's own text): the prompt is still correct, only its cached prefix is
shorter. When a conversation's earlier blocks add up to more than ``memory.sticky_max_tokens``
they are dropped at once and the conversation starts over from the current turn: one re-read of
the prompt instead of a context window that fills with memories.
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
    """What went into one turn's prompt: the turn's block (its exact text, possibly empty, and
    the memories in it) and which earlier turns had their blocks re-inserted."""

    text: str
    ids: tuple[str, ...]
    tokens: int
    earlier: tuple[int, ...] = ()
    """User-turn numbers (0-based) whose blocks were in the same prompt."""

    def block(self) -> MemoryBlock:
        """The turn's block as a :class:`~memory.types.MemoryBlock` (no timings)."""
        return MemoryBlock(self.text, self.ids, self.tokens)


@dataclass(frozen=True)
class Earlier:
    """What the sticky blocks say about one request's conversation."""

    blocks: dict[int, Shown]
    """Block of each earlier user turn to re-insert, by user-turn number (0-based)."""
    current: Shown | None
    """The block already given to the turn being answered, when the request continues it
    (a tool step): it is reused, not recalled again."""

    @property
    def shown_ids(self) -> frozenset[str]:
        """Ids of the memories already in front of the model in this conversation."""
        return frozenset(i for shown in self.blocks.values() for i in shown.ids)


class StickyBlocks:
    """LRU of what went into conversation turns, at most ``max_entries`` of them (a few KB
    each: about 2 KB for the default 512-token block).

    Not thread-safe; used from the event loop only.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._shown: OrderedDict[Key, Shown] = OrderedDict()

    def __len__(self) -> int:
        return len(self._shown)

    def get(self, scope: Scope, digest: str) -> Shown | None:
        """What the turn ``digest`` of ``scope`` got, or None."""
        key = (scope.user, scope.session or "", digest)
        shown = self._shown.get(key)
        if shown is not None:
            self._shown.move_to_end(key)
        return shown

    def put(self, scope: Scope, digest: str, shown: Shown) -> None:
        """Remember what the turn ``digest`` of ``scope`` got (evicting the least recently used
        entry beyond ``max_entries``)."""
        key = (scope.user, scope.session or "", digest)
        self._shown[key] = shown
        self._shown.move_to_end(key)
        while len(self._shown) > self.max_entries:
            self._shown.popitem(last=False)

    def earlier(self, scope: Scope, conversation: Conversation, max_tokens: int) -> Earlier:
        """The blocks to re-insert into ``conversation``'s earlier turns: those of the previous
        turn's prompt plus its own block (every block this replica has, when it does not know
        that prompt), none when they add up to more than ``max_tokens``; and the current turn's
        block when the request continues it."""
        if not conversation.digests:
            return Earlier({}, None)
        *before, last = conversation.digests
        if conversation.continued and (current := self.get(scope, last)) is not None:
            return Earlier(self._blocks(scope, before, current.earlier), current)
        previous = self.get(scope, before[-1]) if before else None
        if previous is None:
            turns: tuple[int, ...] = tuple(range(len(before)))
        else:
            turns = (*previous.earlier, len(before) - 1)
        blocks = self._blocks(scope, before, turns)
        if sum(shown.tokens for shown in blocks.values()) > max_tokens:
            blocks = {}  # start over: one re-read instead of a context full of memories
        return Earlier(blocks, None)

    def _blocks(self, scope: Scope, digests: list[str], turns: tuple[int, ...]) -> dict[int, Shown]:
        found = {t: self.get(scope, digests[t]) for t in turns if 0 <= t < len(digests)}
        return {t: shown for t, shown in found.items() if shown is not None and shown.text}


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
        cls,
        adapter: Conversational,
        blocks: StickyBlocks,
        scope: Scope,
        body: dict[str, Any],
        max_tokens: int,
    ) -> StickyTurn:
        """The sticky view of ``body`` (the client's own, before any injection); the earlier
        blocks re-inserted add up to at most ``max_tokens`` (``memory.sticky_max_tokens``)."""
        conversation = adapter.conversation(body)
        earlier = blocks.earlier(scope, conversation, max_tokens)
        return cls(adapter, blocks, scope, conversation, earlier)

    def reinsert(self, body: dict[str, Any], placement: Placement) -> dict[str, Any]:
        """``body`` with each earlier turn's block back where it was."""
        for turn, shown in sorted(self.earlier.blocks.items()):
            body = self.adapter.inject_at(body, turn, shown.text, placement)
        return body

    def remember(self, block: MemoryBlock) -> None:
        """Keep what this turn's prompt got: ``block`` (possibly empty) and the earlier turns
        whose blocks it re-inserted."""
        if self.conversation.digests and self.earlier.current is None:
            earlier = tuple(sorted(self.earlier.blocks))
            shown = Shown(block.text, block.ids, block.tokens, earlier)
            self.blocks.put(self.scope, self.conversation.digests[-1], shown)
