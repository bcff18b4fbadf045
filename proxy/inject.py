"""Reading the query from a request body and injecting the memory block into it.

Bodies are plain JSON objects (already validated by ``proxy.wire``); functions return a new
object and never mutate or alter the user's messages. The memory block goes into one system
message: merged into the client's own leading system message, or inserted just before the first
user message. ``/api/generate`` receives it through ``system``.
"""

from __future__ import annotations

import re
from typing import Any

from proxy.wire import ApiKind

SYSTEM_ROLES = ("system", "developer")


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


def last_user_turn(api: ApiKind, body: dict[str, Any]) -> str | None:
    """The text this request asks about, or None when it should not touch memory.

    None for a model load/unload (no user message, or no prompt), for ``raw`` generation, and
    for a chat whose last user message is followed by anything other than a tool-calling loop
    (assistant messages with ``tool_calls`` and ``tool`` results).
    """
    if api == "ollama_generate":
        prompt = body.get("prompt")
        if body.get("raw") or not isinstance(prompt, str) or not prompt.strip():
            return None
        return prompt
    messages = body.get("messages") or []
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message.get("role") == "user":
            if not all(_tool_step(m) for m in messages[index + 1 :]):
                return None
            text = content_text(message.get("content"))
            return text if text.strip() else None
    return None


_CONTEXT_WORDS = "it its that this these those they them their she her he him his there then one"
CONTEXT_WORDS = frozenset(f"{_CONTEXT_WORDS} ones same else more again".split())
"""Pronouns and deictic words that make a short turn depend on the turn before it."""
CONTINUATIONS = ("and ", "but ", "so ", "also ", "what about", "how about")
"""Openings of a turn that continues the previous one."""
CONTEXT_MAX_WORDS = 12
"""Turns of at most this many words are checked for dependence on the previous turn."""


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


def recall_query(api: ApiKind, body: dict[str, Any], turn: str) -> str:
    """The text recall searches with for the user turn ``turn``: the turn itself, or, when it
    depends on the previous turn (:func:`depends_on_previous`), the previous user message and
    this one (so "what did she say about it?" finds what "it" and "she" were).

    >>> body = {"messages": [{"role": "user", "content": "Tell me about Ann's trip"},
    ...                      {"role": "assistant", "content": "Which part?"},
    ...                      {"role": "user", "content": "Where did she go?"}]}
    >>> recall_query("ollama_chat", body, "Where did she go?")
    "Tell me about Ann's trip\\nWhere did she go?"
    """
    if api == "ollama_generate" or not depends_on_previous(turn):
        return turn
    users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    if len(users) < 2:
        return turn
    previous = content_text(users[-2].get("content")).strip()
    return f"{previous}\n{turn}" if previous else turn


def earlier_user_turns(api: ApiKind, body: dict[str, Any]) -> frozenset[str]:
    """Texts of the user messages before the last one (stripped): what the model already sees.

    >>> body = {"messages": [{"role": "user", "content": "a "}, {"role": "user", "content": "b"}]}
    >>> sorted(earlier_user_turns("ollama_chat", body))
    ['a']
    """
    if api == "ollama_generate":
        return frozenset()
    users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    texts = (content_text(m.get("content")).strip() for m in users[:-1])
    return frozenset(t for t in texts if t)


def speaker_name(api: ApiKind, body: dict[str, Any]) -> str | None:
    """The ``name`` of the last user message (OpenAI chat messages may carry one), or None.

    >>> speaker_name("openai_chat", {"messages": [{"role": "user", "content": "hi", "name": "A"}]})
    'A'
    """
    if api == "ollama_generate":
        return None
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            name = message.get("name")
            return name.strip() if isinstance(name, str) and name.strip() else None
    return None


def _tool_step(message: dict[str, Any]) -> bool:
    role = message.get("role")
    return role == "tool" or (role == "assistant" and bool(message.get("tool_calls")))


def _merge_content(content: Any, block: str) -> Any:
    if isinstance(content, list):
        return [*content, {"type": "text", "text": block}]
    if isinstance(content, str) and content.strip():
        return f"{content}\n\n{block}"
    return block


def inject(api: ApiKind, body: dict[str, Any], block: str) -> dict[str, Any]:
    """A copy of ``body`` with ``block`` injected; ``body`` itself is left as it was."""
    out = dict(body)
    if api == "ollama_generate":
        out["system"] = _merge_content(body.get("system"), block)
        return out
    messages = list(body.get("messages") or [])
    for index, message in enumerate(messages):
        role = message.get("role")
        if role in SYSTEM_ROLES:
            messages[index] = {**message, "content": _merge_content(message.get("content"), block)}
            break
        if role == "user":
            messages.insert(index, {"role": "system", "content": block})
            break
    else:
        messages.insert(0, {"role": "system", "content": block})
    out["messages"] = messages
    return out
