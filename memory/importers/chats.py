"""Chat-history exports: ChatGPT's ``conversations.json`` and Open WebUI's chat export.

Both keep every branch of a conversation (edited messages, regenerated replies) as a tree; only
the branch the user last saw is the conversation, so each reader walks from the live leaf up
through the parents and drops the rest. What comes out is :class:`memory.ingest.Message` lists,
one session per conversation, which the ingest path pairs into exchanges.

Formats as observed in the samples of ``../shared/data/exports/`` (its README describes them):

- ChatGPT: a list of conversations ``{id|conversation_id, create_time, mapping: {node id:
  {message, parent, children}}, current_node}``; ``message`` is ``{author: {role},
  create_time, content: {content_type, parts}, recipient, metadata}``.
- Open WebUI: a list of chat rows ``{id, chat: {history: {messages: {id: {parentId, role,
  content, timestamp}}, currentId}, messages: [...]}}`` (one row alone is accepted too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from memory.errors import ImportFormatError
from memory.ingest import Message

CHAT_ROLES = frozenset({"user", "assistant"})
"""Roles that become memories; system prompts and tool output are not the user's history."""
MS_THRESHOLD = 1e11
"""A timestamp above this is in milliseconds (1e11 s is the year 5138)."""


def seconds(value: Any, fallback: float) -> float:
    """Unix seconds from a number in seconds or milliseconds; ``fallback`` for anything else.

    >>> seconds(1743242441, 0.0), seconds(1743242441000, 0.0), seconds(None, 7.0)
    (1743242441.0, 1743242441.0, 7.0)
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return fallback
    return float(value) / 1000.0 if value > MS_THRESHOLD else float(value)


def live_branch(
    nodes: dict[str, Any], leaf: str | None, parent_of: Callable[[Any], Any]
) -> list[Any]:
    """The nodes from the root down to ``leaf``, following ``parent_of(node)`` ids upward.

    A missing leaf gives ``[]``; a parent id that is absent ends the walk; a cycle is cut
    where it closes (an export is untrusted input).
    """
    path: list[Any] = []
    seen: set[str] = set()
    current = leaf
    while isinstance(current, str) and current in nodes and current not in seen:
        seen.add(current)
        node = nodes[current]
        path.append(node)
        current = parent_of(node)
    path.reverse()
    return path


def conversations(data: Any, source: str) -> list[Any]:
    """The list of conversations of a decoded export (one object alone counts as a list)."""
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list):
        return data
    raise ImportFormatError(f"{source}: expected a JSON list of conversations")


def chatgpt_text(message: dict[str, Any]) -> str:
    """The visible text of a ChatGPT message, or ``""`` for what is not conversation: hidden
    system turns, tool calls (``recipient`` other than ``all``), code cells, execution output,
    and the non-text parts (image pointers) of a multimodal message."""
    content = message.get("content")
    if not isinstance(content, dict) or message.get("recipient", "all") != "all":
        return ""
    if (message.get("metadata") or {}).get("is_visually_hidden_from_conversation"):
        return ""
    if content.get("content_type") not in ("text", "multimodal_text"):
        return ""
    parts = content.get("parts") or []
    return "\n".join(p for p in parts if isinstance(p, str) and p.strip()).strip()


def chatgpt_leaf(conversation: dict[str, Any]) -> str | None:
    """``current_node``, else the latest message without children (an export that lost it)."""
    mapping = conversation.get("mapping") or {}
    current = conversation.get("current_node")
    if isinstance(current, str) and current in mapping:
        return current
    leaves = [
        (seconds((n.get("message") or {}).get("create_time"), 0.0), key)
        for key, n in mapping.items()
        if isinstance(n, dict) and not n.get("children")
    ]
    return max(leaves)[1] if leaves else None


def read_chatgpt(data: Any, source: str) -> tuple[list[Message], list[str]]:
    """Messages of the live branch of every conversation in a ChatGPT export, with one
    problem line per conversation that could not be read (the rest is still imported)."""
    messages: list[Message] = []
    problems: list[str] = []
    for number, conversation in enumerate(conversations(data, source), start=1):
        if not isinstance(conversation, dict) or not isinstance(conversation.get("mapping"), dict):
            problems.append(f"conversation {number}: no 'mapping' (not a ChatGPT conversation)")
            continue
        session = str(conversation.get("conversation_id") or conversation.get("id") or number)
        start = seconds(conversation.get("create_time"), 0.0)
        nodes = live_branch(
            conversation["mapping"], chatgpt_leaf(conversation), lambda n: n.get("parent")
        )
        for node in nodes:
            message = node.get("message") if isinstance(node, dict) else None
            if not isinstance(message, dict):
                continue
            role = (message.get("author") or {}).get("role")
            text = chatgpt_text(message)
            if role in CHAT_ROLES and text:
                stamp = seconds(message.get("create_time"), start)
                messages.append(Message(len(messages) + 1, role, text, stamp, session))
    return messages, problems


def openwebui_chain(chat: dict[str, Any]) -> Iterator[Any]:
    """The live branch of an Open WebUI chat: ``history.currentId`` up through ``parentId``;
    the linear ``messages`` list when the export has no history tree."""
    history = chat.get("history")
    if isinstance(history, dict) and isinstance(history.get("messages"), dict):
        nodes = history["messages"]
        yield from live_branch(nodes, history.get("currentId"), lambda m: m.get("parentId"))
    elif isinstance(chat.get("messages"), list):
        yield from chat["messages"]


def read_openwebui(data: Any, source: str) -> tuple[list[Message], list[str]]:
    """Messages of the live branch of every chat in an Open WebUI export (``Export All Chats``
    or one chat), with one problem line per chat that could not be read."""
    messages: list[Message] = []
    problems: list[str] = []
    for number, row in enumerate(conversations(data, source), start=1):
        chat = row.get("chat", row) if isinstance(row, dict) else None
        if not isinstance(chat, dict) or not ("history" in chat or "messages" in chat):
            problems.append(f"chat {number}: no 'chat.history' (not an Open WebUI chat)")
            continue
        session = str(row.get("id") or chat.get("id") or number)
        start = seconds(row.get("created_at") or chat.get("timestamp"), 0.0)
        for message in openwebui_chain(chat):
            if not isinstance(message, dict):
                continue
            role, content = message.get("role"), message.get("content")
            if role in CHAT_ROLES and isinstance(content, str) and content.strip():
                stamp = seconds(message.get("timestamp"), start)
                messages.append(Message(len(messages) + 1, role, content.strip(), stamp, session))
    return messages, problems
