"""OpenAI's Responses API: ``POST /v1/responses`` (named SSE events when streamed).

Reference: the ``openai`` package's ``types/responses`` (request items, the response object and
every stream event) and ``../shared/reference/ollama/openai-compatibility.mdx`` (Ollama's
subset, since 0.13.3: no ``previous_response_id``). Codex and new OpenAI SDK apps use it.
"""

from __future__ import annotations

from typing import Any

from proxy.adapters.base import SAMPLING, Conversation, Placement, Reply, parse_chunk
from proxy.adapters.events import sse_event
from proxy.adapters.messages import depends_on_previous, merge_into, running_digests
from proxy.wire import ApiKind, Framing, ResponsesEvent, ResponsesRequest, Wire

TEXT_PARTS = ("input_text", "output_text", "text")
"""Content part types that carry text in a Responses message."""
TOOL_STEPS = ("function_call", "function_call_output", "reasoning")
"""Input items of a tool-calling loop: they may follow the user turn being answered."""
THINKING_DELTAS = ("response.reasoning_text.delta", "response.reasoning_summary_text.delta")
FINAL_EVENTS = ("response.completed", "response.incomplete")
"""Events that close a successful stream (``response.failed`` closes a failed one)."""


def item_text(item: dict[str, Any]) -> str:
    """Plain text of a message item's ``content``: a string, or its text parts.

    >>> item_text({"role": "user", "content": [{"type": "input_text", "text": "a"},
    ...                                        {"type": "input_image"}]})
    'a'
    """
    content = item.get("content")
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = [p for p in content if isinstance(p, dict) and p.get("type") in TEXT_PARTS]
    return "\n".join(p["text"] for p in parts if isinstance(p.get("text"), str))


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``input`` as a list of items (a string is one user message)."""
    given = body.get("input")
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    return [i for i in given or [] if isinstance(i, dict)]


def _is_message(item: dict[str, Any], role: str | tuple[str, ...]) -> bool:
    roles = (role,) if isinstance(role, str) else role
    return item.get("type", "message") == "message" and item.get("role") in roles


def _is_user_message(item: dict[str, Any]) -> bool:
    return _is_message(item, "user")


def _turn_index(items: list[dict[str, Any]]) -> int | None:
    """Index of the user message being answered: the last one, when only tool steps follow."""
    for index in range(len(items) - 1, -1, -1):
        if _is_message(items[index], "user"):
            later = items[index + 1 :]
            return index if all(i.get("type") in TOOL_STEPS for i in later) else None
    return None


def _user_texts(items: list[dict[str, Any]]) -> list[str]:
    return [item_text(i).strip() for i in items if _is_message(i, "user")]


def _prefixed(item: dict[str, Any], block: str) -> dict[str, Any]:
    """``item`` with ``block`` as its first paragraph (string) or first ``input_text`` part."""
    content = item.get("content")
    if isinstance(content, list):
        return {**item, "content": [{"type": "input_text", "text": block}, *content]}
    text = content if isinstance(content, str) else ""
    return {**item, "content": f"{block}\n\n{text}" if text else block}


def _tool_call(item: dict[str, Any]) -> dict[str, Any]:
    """A ``function_call`` output item as an OpenAI-shaped tool call."""
    function = {"name": item.get("name", ""), "arguments": item.get("arguments", "")}
    return {"id": item.get("call_id") or item.get("id"), "type": "function", "function": function}


class OpenAIResponses:
    """``POST /v1/responses``: ``instructions`` and ``input`` items in, a response object or
    its stream of events out."""

    kind: ApiKind = "openai_responses"
    path = "/v1/responses"
    request_model: type[Wire] = ResponsesRequest
    framing: Framing = "sse"

    def user_turn(self, body: dict[str, Any]) -> str | None:
        """The user message being answered (the last one, when only ``function_call`` /
        ``function_call_output`` / ``reasoning`` items follow it); None when there is none or
        it is blank. With ``previous_response_id`` the server holds the history, and the turn
        is still in ``input``."""
        items = _items(body)
        index = _turn_index(items)
        if index is None:
            return None
        text = item_text(items[index])
        return text if text.strip() else None

    def is_completion(self, body: dict[str, Any]) -> bool:
        """False: a Responses body is a conversation (``input``)."""
        return False

    def recall_query(self, body: dict[str, Any], turn: str) -> str:
        """The turn, or the previous user message and the turn when it depends on it
        (:func:`~proxy.adapters.messages.depends_on_previous`)."""
        users = [t for t in _user_texts(_items(body)) if t]
        if not depends_on_previous(turn) or len(users) < 2:
            return turn
        return f"{users[-2]}\n{turn}"

    def earlier_user_turns(self, body: dict[str, Any]) -> frozenset[str]:
        """Texts of the user messages before the last one (stripped)."""
        return frozenset(t for t in _user_texts(_items(body))[:-1] if t)

    def speaker(self, body: dict[str, Any]) -> str | None:
        """None: Responses messages carry no name."""
        return None

    def inject(
        self, body: dict[str, Any], block: str, placement: Placement = "system"
    ) -> dict[str, Any]:
        """A copy of ``body`` with ``block`` merged into ``instructions`` (``system``), as a
        system message item just before the turn (``before_user``) or as the turn's leading
        text (``user``); with no turn to place it by, into ``instructions``.

        >>> body = {"instructions": "Be brief.", "input": "q"}
        >>> OpenAIResponses().inject(body, "B")["instructions"]
        'Be brief.\\n\\nB'
        >>> [i["role"] for i in OpenAIResponses().inject(body, "B", "before_user")["input"]]
        ['system', 'user']
        >>> OpenAIResponses().inject(body, "B", "user")["input"]
        'B\\n\\nq'
        """
        items = _items(body)
        turn = _turn_index(items)
        if placement == "system" or turn is None:
            return {**body, "instructions": merge_into(body.get("instructions"), block)}
        if placement == "user" and isinstance(body.get("input"), str):
            return {**body, "input": f"{block}\n\n{body['input']}"}
        items = list(items)
        if placement == "before_user":
            items.insert(turn, {"type": "message", "role": "system", "content": block})
        else:
            items[turn] = _prefixed(items[turn], block)
        return {**body, "input": items}

    def conversation(self, body: dict[str, Any]) -> Conversation:
        """Digests at each user message, ``instructions`` included; continued when tool steps
        follow the turn being answered (see :class:`~proxy.adapters.base.Conversation`). None
        with ``previous_response_id``: the server holds the history, with its blocks."""
        if body.get("previous_response_id"):
            return Conversation((), False)
        items = _items(body)
        digests = running_digests(body.get("instructions"), items, _is_user_message)
        index = _turn_index(items)
        return Conversation(digests, index is not None and index < len(items) - 1)

    def inject_at(
        self, body: dict[str, Any], turn: int, block: str, placement: Placement
    ) -> dict[str, Any]:
        """A copy of ``body`` with ``block`` as a system message item just before user message
        number ``turn`` (0-based, negative from the end; ``before_user``) or as its leading text
        (``user``); raises IndexError when there is no such message."""
        items = list(_items(body))
        index = [i for i, item in enumerate(items) if _is_user_message(item)][turn]
        if placement == "before_user":
            items.insert(index, {"type": "message", "role": "system", "content": block})
        else:
            items[index] = _prefixed(items[index], block)
        return {**body, "input": items}

    def with_sampling(self, body: dict[str, Any], knobs: dict[str, float]) -> dict[str, Any]:
        """``body`` with top-level ``temperature`` / ``top_p`` where the client set none."""
        return {**{k: round(knobs[k], 3) for k in SAMPLING if body.get(k) is None}, **body}

    def absorb(self, reply: Reply, frame: dict[str, Any]) -> None:
        """Fold one stream event or a whole response object into ``reply``: text deltas into
        ``content``, reasoning (text or summary) deltas into ``thinking``, finished
        ``function_call`` items into ``tool_calls``; ``response.completed`` ends the reply with
        its usage, ``response.failed`` and ``error`` are errors. Other events (created, item
        added, ``*.done`` duplicates of the deltas) carry nothing new."""
        event = parse_chunk(ResponsesEvent, frame, reply)
        if event is None:
            return
        kind = event.type
        if kind == "response.output_text.delta":
            reply.content += event.delta or ""
        elif kind in THINKING_DELTAS:
            reply.thinking += event.delta or ""
        elif kind == "response.output_item.done" and event.item is not None:
            if event.item.get("type") == "function_call":
                reply.tool_calls.append(_tool_call(event.item))
        elif kind in FINAL_EVENTS or kind == "response.failed":
            _finish(reply, event.response or {}, streamed=True)
        elif kind == "error":
            reply.error = event.message or "error event without a message"
        elif kind is None and frame.get("object") == "response":
            _finish(reply, frame, streamed=False)

    def error_event(self, message: str) -> bytes:
        """An ``error`` event, as the Responses API streams one."""
        payload = {"type": "error", "code": "upstream_error", "message": message, "param": None}
        return sse_event("error", {**payload, "sequence_number": 0})


def _finish(reply: Reply, response: dict[str, Any], streamed: bool) -> None:
    """Fold a final response object: its status, usage and (whole reply, or a stream that sent
    no items) its output; ``failed`` becomes ``reply.error``."""
    status = response.get("status")
    if status == "failed":
        error = response.get("error") or {}
        reply.error = str(error.get("message") or "response failed")
        return
    if not streamed or not (reply.content or reply.thinking or reply.tool_calls):
        _absorb_output(reply, response.get("output") or [])
    reply.done = status != "in_progress"
    reason = (response.get("incomplete_details") or {}).get("reason")
    reply.metrics["done_reason"] = "length" if reason == "max_output_tokens" else reason or "stop"
    usage = response.get("usage") or {}
    if usage.get("input_tokens") is not None:
        reply.metrics["prompt_eval_count"] = usage["input_tokens"]
    if usage.get("output_tokens") is not None:
        reply.metrics["eval_count"] = usage["output_tokens"]


def _absorb_output(reply: Reply, output: list[dict[str, Any]]) -> None:
    """Fold a response's ``output`` items: messages, reasoning and function calls."""
    for item in output:
        kind = item.get("type")
        if kind == "message":
            reply.content += item_text(item)
        elif kind == "reasoning":
            parts = [*(item.get("content") or []), *(item.get("summary") or [])]
            reply.thinking += "".join(str(p.get("text", "")) for p in parts)
        elif kind == "function_call":
            reply.tool_calls.append(_tool_call(item))
