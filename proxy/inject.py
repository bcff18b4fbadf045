"""Reading the query from a request body and injecting the memory block into it.

Bodies are plain JSON objects (already validated by ``proxy.wire``); functions return a new
object and never mutate or alter the user's messages. The memory block goes into one system
message: merged into the client's own leading system message, or inserted just before the first
user message. ``/api/generate`` receives it through ``system``.
"""

from __future__ import annotations

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
