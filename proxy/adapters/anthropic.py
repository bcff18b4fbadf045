"""Anthropic's Messages API: ``POST /v1/messages`` (named SSE events when streamed).

Reference: the ``anthropic`` package's ``types`` (``MessageParam``, ``Message``, the
``RawMessageStreamEvent`` union) and ``../shared/reference/ollama/anthropic-compatibility.mdx``
(Ollama serves it since 0.14). Claude Code sends ``/v1/messages?beta=true``; the route matches
the path and the query string is forwarded upstream as it came.
"""

from __future__ import annotations

from typing import Any

from proxy.adapters.base import SAMPLING, Conversation, Placement, Reply, parse_chunk
from proxy.adapters.events import sse_event
from proxy.adapters.messages import depends_on_previous, merge_into, prepend_to, running_digests
from proxy.wire import AnthropicEvent, AnthropicMessagesRequest, ApiKind, Framing, Wire

STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}
"""Anthropic ``stop_reason`` -> Ollama's ``done_reason`` (others, e.g. ``tool_use``, kept)."""


def block_text(content: Any) -> str:
    """Plain text of a message's content: a string, or its ``text`` blocks.

    >>> block_text([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}])
    'a\\nb'
    """
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [b.get("text") for b in content if isinstance(b, dict) and b.get("type") == "text"]
    return "\n".join(t for t in texts if isinstance(t, str))


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    return [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []


def _is_tool_step(message: dict[str, Any]) -> bool:
    """A user message carrying only ``tool_result`` blocks, or an assistant message that
    calls a tool (``tool_use``)."""
    blocks = _blocks(message)
    if message.get("role") == "user":
        return bool(blocks) and all(b.get("type") == "tool_result" for b in blocks)
    return any(b.get("type") == "tool_use" for b in blocks)


def _is_user_turn(message: dict[str, Any]) -> bool:
    return message.get("role") == "user" and not _is_tool_step(message)


def _turn_index(messages: list[dict[str, Any]]) -> int | None:
    """Index of the user message being answered: the last one that is not a tool step, when
    only tool steps follow it (an assistant prefill being continued has no turn)."""
    for index in range(len(messages) - 1, -1, -1):
        if not _is_tool_step(messages[index]):
            return index if messages[index].get("role") == "user" else None
    return None


def _user_texts(messages: list[dict[str, Any]]) -> list[str]:
    """Stripped texts of the user messages that are not tool steps, in order."""
    users = [m for m in messages if m.get("role") == "user" and not _is_tool_step(m)]
    return [block_text(m.get("content")).strip() for m in users]


def _prefixed(content: Any, block: str) -> Any:
    """``content`` with ``block`` as its first text, after any leading ``tool_result`` blocks
    (the API wants those first in a user message)."""
    if not isinstance(content, list):
        return prepend_to(content, block)
    lead = 0
    while lead < len(content) and (content[lead] or {}).get("type") == "tool_result":
        lead += 1
    return [*content[:lead], {"type": "text", "text": block}, *content[lead:]]


class AnthropicMessages:
    """``POST /v1/messages``: ``system`` and messages in, a message or its event stream out."""

    kind: ApiKind = "anthropic_messages"
    path = "/v1/messages"
    request_model: type[Wire] = AnthropicMessagesRequest
    framing: Framing = "sse"

    def user_turn(self, body: dict[str, Any]) -> str | None:
        """The text blocks of the user message being answered: the last user message that does
        not only carry ``tool_result`` blocks, when only tool steps follow it; None when there
        is none or it has no text."""
        messages = body.get("messages") or []
        index = _turn_index(messages)
        if index is None:
            return None
        text = block_text(messages[index].get("content"))
        return text if text.strip() else None

    def is_completion(self, body: dict[str, Any]) -> bool:
        """False: a Messages body is a conversation."""
        return False

    def recall_query(self, body: dict[str, Any], turn: str) -> str:
        """The turn, or the previous user text and the turn when it depends on it
        (:func:`~proxy.adapters.messages.depends_on_previous`)."""
        users = [t for t in _user_texts(body.get("messages") or []) if t]
        if not depends_on_previous(turn) or len(users) < 2:
            return turn
        return f"{users[-2]}\n{turn}"

    def earlier_user_turns(self, body: dict[str, Any]) -> frozenset[str]:
        """Texts of the user messages (not tool results) before the last one (stripped)."""
        return frozenset(t for t in _user_texts(body.get("messages") or [])[:-1] if t)

    def speaker(self, body: dict[str, Any]) -> str | None:
        """None: Anthropic messages carry no name."""
        return None

    def inject(
        self, body: dict[str, Any], block: str, placement: Placement = "system"
    ) -> dict[str, Any]:
        """A copy of ``body`` with ``block`` appended to ``system`` (a paragraph of a string, a
        new text block after the client's own blocks, which stay as they are, ``cache_control``
        included), or, for ``before_user`` and ``user`` (messages have no system role), as the
        leading text of the turn being answered.

        >>> body = {"system": [{"type": "text", "text": "S"}], "messages": [
        ...     {"role": "user", "content": "q"}]}
        >>> AnthropicMessages().inject(body, "B")["system"][1]
        {'type': 'text', 'text': 'B'}
        >>> AnthropicMessages().inject(body, "B", "before_user")["messages"][0]["content"]
        'B\\n\\nq'
        """
        messages = list(body.get("messages") or [])
        turn = _turn_index(messages)
        if placement == "system" or turn is None:
            return {**body, "system": merge_into(body.get("system"), block)}
        message = messages[turn]
        messages[turn] = {**message, "content": _prefixed(message.get("content"), block)}
        return {**body, "messages": messages}

    def conversation(self, body: dict[str, Any]) -> Conversation:
        """Digests at each user turn (not the tool results), ``system`` included; continued
        when tool steps follow the turn being answered (see
        :class:`~proxy.adapters.base.Conversation`)."""
        messages = body.get("messages") or []
        digests = running_digests(body.get("system"), messages, _is_user_turn)
        index = _turn_index(messages)
        return Conversation(digests, index is not None and index < len(messages) - 1)

    def inject_at(
        self, body: dict[str, Any], turn: int, block: str, placement: Placement
    ) -> dict[str, Any]:
        """A copy of ``body`` with ``block`` leading user turn number ``turn`` (0-based,
        negative from the end; tool results are not turns) whatever ``placement`` (messages
        have no system role); raises IndexError when there is no such turn."""
        messages = list(body.get("messages") or [])
        index = [i for i, m in enumerate(messages) if _is_user_turn(m)][turn]
        message = messages[index]
        messages[index] = {**message, "content": _prefixed(message.get("content"), block)}
        return {**body, "messages": messages}

    def with_sampling(self, body: dict[str, Any], knobs: dict[str, float]) -> dict[str, Any]:
        """``body`` with top-level ``temperature`` / ``top_p`` where the client set none."""
        return {**{k: round(knobs[k], 3) for k in SAMPLING if body.get(k) is None}, **body}

    def absorb(self, reply: Reply, frame: dict[str, Any]) -> None:
        """Fold one stream event or a whole message into ``reply``: text and thinking deltas
        (and blocks), ``tool_use`` blocks with their ``input_json_delta`` pieces as tool calls,
        ``stop_reason`` as ``done_reason``, usage as token counts; ``message_stop`` (or a whole
        message) ends the reply. ``ping`` and block stops carry nothing."""
        event = parse_chunk(AnthropicEvent, frame, reply)
        if event is None:
            return
        kind = event.type
        if kind == "content_block_start" and event.content_block is not None:
            _absorb_block(reply, event.content_block, event.index, streamed=True)
        elif kind == "content_block_delta" and event.delta is not None:
            _absorb_delta(reply, event.delta, event.index)
        elif kind == "message_start" and event.message is not None:
            _usage(reply, event.message.get("usage") or {})
        elif kind == "message_delta":
            _stop(reply, (event.delta or {}).get("stop_reason"))
            _usage(reply, event.usage or {})
        elif kind == "message_stop":
            reply.done = True
        elif kind == "message":
            for index, block in enumerate(event.content or []):
                _absorb_block(reply, block, index, streamed=False)
            _stop(reply, event.stop_reason)
            _usage(reply, event.usage or {})
            reply.done = True

    def error_event(self, message: str) -> bytes:
        """An ``error`` event, as the Messages API streams one."""
        error = {"type": "api_error", "message": message}
        return sse_event("error", {"type": "error", "error": error})


def _absorb_block(reply: Reply, block: dict[str, Any], index: int | None, streamed: bool) -> None:
    """A content block opened in a stream (a ``tool_use`` block's input then arrives as JSON
    pieces), or one of a whole message."""
    kind = block.get("type")
    if kind == "text":
        reply.content += str(block.get("text") or "")
    elif kind == "thinking":
        reply.thinking += str(block.get("thinking") or "")
    elif kind == "tool_use":
        arguments: Any = "" if streamed else block.get("input", {})
        function = {"name": block.get("name", ""), "arguments": arguments}
        call = {"index": index, "id": block.get("id"), "type": "function", "function": function}
        reply.tool_calls.append(call)


def _absorb_delta(reply: Reply, delta: dict[str, Any], index: int | None) -> None:
    """One ``content_block_delta``: text, thinking, or a piece of a tool call's input JSON."""
    kind = delta.get("type")
    if kind == "text_delta":
        reply.content += str(delta.get("text") or "")
    elif kind == "thinking_delta":
        reply.thinking += str(delta.get("thinking") or "")
    elif kind == "input_json_delta":
        call = next((c for c in reply.tool_calls if c.get("index") == index), None)
        if call is not None and isinstance(call["function"]["arguments"], str):
            call["function"]["arguments"] += str(delta.get("partial_json") or "")


def _stop(reply: Reply, reason: str | None) -> None:
    if reason:
        reply.metrics["done_reason"] = STOP_REASONS.get(reason, reason)


def _usage(reply: Reply, usage: dict[str, Any]) -> None:
    if usage.get("input_tokens") is not None:
        reply.metrics["prompt_eval_count"] = usage["input_tokens"]
    if usage.get("output_tokens") is not None:
        reply.metrics["eval_count"] = usage["output_tokens"]
