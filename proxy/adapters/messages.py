"""Chat formats whose body carries a ``messages`` list (Ollama ``/api/chat``, OpenAI
``/v1/chat/completions``): finding the user turn and injecting the memory block.

The memory block goes where ``memory.placement`` says (:data:`~proxy.adapters.base.Placement`):
into the turn being answered, just before it, or merged into the client's own leading system
(or ``developer``) message.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from proxy.adapters.base import Conversation, Placement

SYSTEM_ROLES = ("system", "developer")

_CONTEXT_WORDS = "it its that this these those they them their she her he him his there then one"
CONTEXT_WORDS = frozenset(f"{_CONTEXT_WORDS} ones same else more again".split())
"""Pronouns and deictic words that make a short turn depend on the turn before it."""
CONTINUATIONS = ("and ", "but ", "so ", "also ", "what about", "how about")
"""Openings of a turn that continues the previous one."""
CONTEXT_MAX_WORDS = 12
"""Turns of at most this many words are checked for dependence on the previous turn."""


def content_text(content: Any) -> str:
    """Plain text of a message's content: a string, or the text parts of an OpenAI parts list.

    >>> content_text([{"type": "text", "text": "a"}, {"type": "image_url"}])
    'a'
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(p["text"] for p in parts if isinstance(p.get("text"), str))
    return ""


def depends_on_previous(text: str) -> bool:
    """Whether a user turn needs the previous one to be understood: short, and with a pronoun
    or deictic word (``CONTEXT_WORDS``) or a continuation opening (``CONTINUATIONS``).

    >>> depends_on_previous("What did she say about it?"), depends_on_previous("And Paris?")
    (True, True)
    >>> depends_on_previous("What is the capital of France?")
    False
    """
    words = re.findall(r"[a-z']+", text.lower())
    if not words or len(words) > CONTEXT_MAX_WORDS:
        return False
    opening = text.strip().lower()
    return bool(CONTEXT_WORDS.intersection(words)) or opening.startswith(CONTINUATIONS)


def merge_into(content: Any, block: str) -> Any:
    """``content`` (a string or a parts list) with ``block`` appended as its last paragraph.

    >>> merge_into("Be brief.", "B"), merge_into("", "B"), merge_into([], "B")
    ('Be brief.\\n\\nB', 'B', [{'type': 'text', 'text': 'B'}])
    """
    if isinstance(content, list):
        return [*content, {"type": "text", "text": block}]
    if isinstance(content, str) and content.strip():
        return f"{content}\n\n{block}"
    return block


def prepend_to(content: Any, block: str) -> Any:
    """``content`` (a string or a parts list) with ``block`` as its first paragraph.

    >>> prepend_to("q", "B"), prepend_to([{"type": "text", "text": "q"}], "B")[0]["text"]
    ('B\\n\\nq', 'B')
    """
    if isinstance(content, list):
        return [{"type": "text", "text": block}, *content]
    if isinstance(content, str) and content:
        return f"{block}\n\n{content}"
    return block


def running_digests(
    preamble: Any, messages: Sequence[dict[str, Any]], is_turn: Callable[[dict[str, Any]], bool]
) -> tuple[str, ...]:
    """SHA-256 (hex) of ``preamble`` (a format's system field, or None) and ``messages`` up to
    and including each message for which ``is_turn`` holds, in order: one running hash over
    their canonical JSON, so O(body size).

    >>> len(running_digests(None, [{"role": "user"}, {"role": "user"}], lambda m: True))
    2
    """
    running = hashlib.sha256(json.dumps(preamble, sort_keys=True).encode("utf-8") + b"\n")
    digests: list[str] = []
    for message in messages:
        canonical = json.dumps(message, sort_keys=True, separators=(",", ":"))
        running.update(canonical.encode("utf-8") + b"\n")
        if is_turn(message):
            digests.append(running.copy().hexdigest())
    return tuple(digests)


def _tool_step(message: dict[str, Any]) -> bool:
    role = message.get("role")
    return role == "tool" or (role == "assistant" and bool(message.get("tool_calls")))


def _users(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body.get("messages") or [] if m.get("role") == "user"]


class MessagesFormat:
    """The request side of a chat adapter whose body has ``messages``; subclasses add the
    reply side (``absorb``) and sampling."""

    def user_turn(self, body: dict[str, Any]) -> str | None:
        """The last user message's text; None when there is none, when it is empty, or when it
        is followed by anything other than a tool-calling loop (assistant messages with
        ``tool_calls`` and ``tool`` results), e.g. an assistant prefill being continued."""
        messages = body.get("messages") or []
        for index in range(len(messages) - 1, -1, -1):
            message = messages[index]
            if message.get("role") == "user":
                if not all(_tool_step(m) for m in messages[index + 1 :]):
                    return None
                text = content_text(message.get("content"))
                return text if text.strip() else None
        return None

    def is_completion(self, body: dict[str, Any]) -> bool:
        """False: a ``messages`` body is a conversation."""
        return False

    def recall_query(self, body: dict[str, Any], turn: str) -> str:
        """The turn itself, or, when it depends on the previous turn (:func:`depends_on_previous`),
        the previous user message and this one (so "what did she say about it?" finds what "it"
        and "she" were).

        >>> body = {"messages": [{"role": "user", "content": "Tell me about Ann's trip"},
        ...                      {"role": "assistant", "content": "Which part?"},
        ...                      {"role": "user", "content": "Where did she go?"}]}
        >>> MessagesFormat().recall_query(body, "Where did she go?")
        "Tell me about Ann's trip\\nWhere did she go?"
        """
        users = _users(body)
        if not depends_on_previous(turn) or len(users) < 2:
            return turn
        previous = content_text(users[-2].get("content")).strip()
        return f"{previous}\n{turn}" if previous else turn

    def earlier_user_turns(self, body: dict[str, Any]) -> frozenset[str]:
        """Texts of the user messages before the last one (stripped).

        >>> body = {"messages": [{"role": "user", "content": "a "},
        ...                      {"role": "user", "content": "b"}]}
        >>> sorted(MessagesFormat().earlier_user_turns(body))
        ['a']
        """
        texts = (content_text(m.get("content")).strip() for m in _users(body)[:-1])
        return frozenset(t for t in texts if t)

    def speaker(self, body: dict[str, Any]) -> str | None:
        """The ``name`` of the last user message (OpenAI chat messages may carry one), or None.

        >>> MessagesFormat().speaker({"messages": [{"role": "user", "content": "hi", "name": "A"}]})
        'A'
        """
        users = _users(body)
        name = users[-1].get("name") if users else None
        return name.strip() if isinstance(name, str) and name.strip() else None

    def conversation(self, body: dict[str, Any]) -> Conversation:
        """Digests of the conversation at each user message (see
        :class:`~proxy.adapters.base.Conversation`); one running SHA-256, so O(body size).

        >>> body = {"messages": [{"role": "user", "content": "a"},
        ...                      {"role": "assistant", "content": "b"}]}
        >>> c = MessagesFormat().conversation(body)
        >>> len(c.digests), c.continued
        (1, True)
        """
        messages = body.get("messages") or []
        digests = running_digests(None, messages, lambda m: m.get("role") == "user")
        continued = bool(messages) and messages[-1].get("role") != "user"
        return Conversation(digests, continued)

    def inject(
        self, body: dict[str, Any], block: str, placement: Placement = "system"
    ) -> dict[str, Any]:
        """A copy of ``body`` with ``block`` placed as ``placement`` says (see
        :data:`~proxy.adapters.base.Placement`); with no user turn to place it by, it goes
        into the system instructions.

        >>> body = {"messages": [{"role": "system", "content": "S"},
        ...                      {"role": "user", "content": "q"}]}
        >>> MessagesFormat().inject(body, "B", "user")["messages"][1]["content"]
        'B\\n\\nq'
        >>> [m["role"] for m in MessagesFormat().inject(body, "B", "before_user")["messages"]]
        ['system', 'system', 'user']
        """
        if placement == "system" or not _users(body):
            return {**body, "messages": _into_system(list(body.get("messages") or []), block)}
        return self.inject_at(body, -1, block, placement)

    def inject_at(
        self, body: dict[str, Any], turn: int, block: str, placement: Placement
    ) -> dict[str, Any]:
        """A copy of ``body`` with ``block`` at user message number ``turn`` (0-based, negative
        from the end): a system message just before it (``before_user``) or its leading part
        (``user``); raises IndexError when there is no such user message.

        >>> body = {"messages": [{"role": "user", "content": "a"},
        ...                      {"role": "user", "content": "b"}]}
        >>> MessagesFormat().inject_at(body, 0, "B", "user")["messages"][0]["content"]
        'B\\n\\na'
        """
        messages = list(body.get("messages") or [])
        index = [i for i, m in enumerate(messages) if m.get("role") == "user"][turn]
        if placement == "before_user":
            messages.insert(index, {"role": "system", "content": block})
        else:
            message = messages[index]
            messages[index] = {**message, "content": prepend_to(message.get("content"), block)}
        return {**body, "messages": messages}


def _into_system(messages: list[dict[str, Any]], block: str) -> list[dict[str, Any]]:
    """``messages`` with ``block`` merged into the leading system (or developer) message, or
    a new system message just before the first user message."""
    messages = list(messages)
    for index, message in enumerate(messages):
        role = message.get("role")
        if role in SYSTEM_ROLES:
            messages[index] = {**message, "content": merge_into(message.get("content"), block)}
            return messages
        if role == "user":
            messages.insert(index, {"role": "system", "content": block})
            return messages
    messages.insert(0, {"role": "system", "content": block})
    return messages
