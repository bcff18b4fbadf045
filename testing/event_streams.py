"""Replies of the fake upstream in the two named-event formats: OpenAI Responses
(``POST /v1/responses``) and Anthropic Messages (``POST /v1/messages``), whole or as the event
sequence each API streams.

Shapes follow the official SDKs' types (``openai.types.responses``, ``anthropic.types``), whose
stream helpers (``client.responses.stream``, ``client.messages.stream``) check the sequence:
items are added before their deltas, ``*.done`` repeats the whole item, the final event carries
the whole reply.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

Event = tuple[str, dict[str, Any]]
"""An SSE event: its name and its data (whose ``type`` repeats the name)."""


@dataclass
class Answer:
    """What the fake model says: text split into streamed pieces, optional reasoning and an
    optional tool call (name, JSON arguments)."""

    pieces: list[str]
    thinking: str = ""
    tool: tuple[str, str] | None = None
    input_tokens: int = 0
    output_tokens: int = field(init=False)

    def __post_init__(self) -> None:
        self.output_tokens = len("".join(self.pieces).split()) + len(self.thinking.split())

    @property
    def text(self) -> str:
        return "".join(self.pieces)


def sse(events: list[Event]) -> list[bytes]:
    """Each event as ``event:`` and ``data:`` lines."""
    return [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events]


# --- OpenAI Responses --------------------------------------------------------------------------
def responses_output(answer: Answer) -> list[dict[str, Any]]:
    """The ``output`` items of a finished response."""
    items: list[dict[str, Any]] = []
    if answer.thinking:
        content = [{"type": "reasoning_text", "text": answer.thinking}]
        items.append({"id": "rs_1", "type": "reasoning", "summary": [], "content": content})
    if answer.tool is not None:
        name, arguments = answer.tool
        items.append(
            {
                "id": "fc_1",
                "type": "function_call",
                "call_id": "call_1",
                "name": name,
                "arguments": arguments,
                "status": "completed",
            }
        )
    else:
        part = {"type": "output_text", "text": answer.text, "annotations": [], "logprobs": []}
        items.append(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [part],
            }
        )
    return items


def response_object(model: str, answer: Answer | None, status: str = "completed") -> dict[str, Any]:
    """A response object (``answer`` None: the in-progress one of ``response.created``)."""
    done = answer is not None and status == "completed"
    usage = None
    if answer is not None:
        usage = {
            "input_tokens": answer.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": answer.output_tokens,
            "output_tokens_details": {"reasoning_tokens": len(answer.thinking.split())},
            "total_tokens": answer.input_tokens + answer.output_tokens,
        }
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": responses_output(answer) if done and answer is not None else [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "error": None,
        "incomplete_details": None,
        "usage": usage if done else None,
    }


def _item_events(index: int, item: dict[str, Any], answer: Answer) -> list[Event]:
    """``output_item.added``, the item's deltas, ``output_item.done``."""
    kind = item["type"]
    added = {**item, "status": "in_progress"}
    where = {"item_id": item["id"], "output_index": index}
    events: list[Event] = []
    if kind == "message":
        added["content"] = []
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        events.append(("response.content_part.added", {**where, "content_index": 0, "part": part}))
        for piece in answer.pieces:
            delta = {**where, "content_index": 0, "delta": piece, "logprobs": []}
            events.append(("response.output_text.delta", delta))
        done = {**where, "content_index": 0, "text": answer.text, "logprobs": []}
        events.append(("response.output_text.done", done))
        events.append(
            (
                "response.content_part.done",
                {**where, "content_index": 0, "part": item["content"][0]},
            )
        )
    elif kind == "reasoning":
        added["content"] = []
        delta = {**where, "content_index": 0, "delta": answer.thinking}
        events.append(("response.reasoning_text.delta", delta))
    else:
        added["arguments"] = ""
        arguments = item["arguments"]
        half = len(arguments) // 2
        for piece in (arguments[:half], arguments[half:]):
            events.append(("response.function_call_arguments.delta", {**where, "delta": piece}))
        events.append(("response.function_call_arguments.done", {**where, "arguments": arguments}))
    opened: Event = ("response.output_item.added", {"output_index": index, "item": added})
    closed: Event = ("response.output_item.done", {"output_index": index, "item": item})
    return [opened, *events, closed]


def responses_events(model: str, answer: Answer) -> list[Event]:
    """The whole event sequence of a streamed response, numbered."""
    start = response_object(model, None, "in_progress")
    events: list[Event] = [("response.created", {"response": start})]
    events.append(("response.in_progress", {"response": start}))
    for index, item in enumerate(responses_output(answer)):
        events.extend(_item_events(index, item, answer))
    events.append(("response.completed", {"response": response_object(model, answer)}))
    return [(n, {"type": n, "sequence_number": i, **d}) for i, (n, d) in enumerate(events)]


def responses_error(message: str) -> Event:
    """The ``error`` event of a stream that broke."""
    data = {"type": "error", "code": "server_error", "message": message, "param": None}
    return ("error", {**data, "sequence_number": 99})


# --- Anthropic Messages ------------------------------------------------------------------------
def anthropic_content(answer: Answer) -> list[dict[str, Any]]:
    """The ``content`` blocks of a finished message."""
    blocks: list[dict[str, Any]] = []
    if answer.thinking:
        blocks.append({"type": "thinking", "thinking": answer.thinking, "signature": "sig"})
    if answer.tool is not None:
        name, arguments = answer.tool
        blocks.append(
            {"type": "tool_use", "id": "toolu_1", "name": name, "input": json.loads(arguments)}
        )
    else:
        blocks.append({"type": "text", "text": answer.text})
    return blocks


def anthropic_message(model: str, answer: Answer) -> dict[str, Any]:
    """A whole (non-streamed) message."""
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": anthropic_content(answer),
        "stop_reason": "tool_use" if answer.tool else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens},
    }


def _block_events(index: int, block: dict[str, Any], answer: Answer) -> list[Event]:
    kind = block["type"]
    deltas: list[dict[str, Any]] = []
    if kind == "text":
        opened = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in answer.pieces]
    elif kind == "thinking":
        opened = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [
            {"type": "thinking_delta", "thinking": answer.thinking},
            {"type": "signature_delta", "signature": "sig"},
        ]
    else:
        opened = {**block, "input": {}}
        arguments = json.dumps(block["input"])
        half = len(arguments) // 2
        pieces = (arguments[:half], arguments[half:])
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in pieces]
    events: list[Event] = [("content_block_start", {"index": index, "content_block": opened})]
    events.extend(("content_block_delta", {"index": index, "delta": d}) for d in deltas)
    events.append(("content_block_stop", {"index": index}))
    return events


def anthropic_events(model: str, answer: Answer) -> list[Event]:
    """The whole event sequence of a streamed message."""
    whole = anthropic_message(model, answer)
    start = {**whole, "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": answer.input_tokens, "output_tokens": 1}
    events: list[Event] = [("message_start", {"message": start}), ("ping", {})]
    for index, block in enumerate(whole["content"]):
        events.extend(_block_events(index, block, answer))
    delta = {"stop_reason": whole["stop_reason"], "stop_sequence": None}
    events.append(
        ("message_delta", {"delta": delta, "usage": {"output_tokens": answer.output_tokens}})
    )
    events.append(("message_stop", {}))
    return [(name, {"type": name, **data}) for name, data in events]


def anthropic_error(message: str) -> Event:
    """The ``error`` event of a stream that broke."""
    return ("error", {"type": "error", "error": {"type": "overloaded_error", "message": message}})
