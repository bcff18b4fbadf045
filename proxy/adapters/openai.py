"""OpenAI's chat completions endpoint: ``POST /v1/chat/completions`` (SSE when streamed).

Reference: OpenAI's chat completions API (request, chunk and completion objects); llama.cpp,
vLLM and Ollama's ``/v1`` speak the same format, with reasoning in ``reasoning_content`` or
``reasoning``.
"""

from __future__ import annotations

from typing import Any

from proxy.adapters.base import SAMPLING, Reply, parse_chunk
from proxy.adapters.messages import MessagesFormat
from proxy.sse import merge_tool_call
from proxy.wire import ApiKind, Framing, OpenAIChatChunk, OpenAIChatRequest, OpenAIDelta, Wire


class OpenAIChat(MessagesFormat):
    """``POST /v1/chat/completions``: messages in, ``choices`` chunks (or a completion) out."""

    kind: ApiKind = "openai_chat"
    path = "/v1/chat/completions"
    request_model: type[Wire] = OpenAIChatRequest
    framing: Framing = "sse"

    def with_sampling(self, body: dict[str, Any], knobs: dict[str, float]) -> dict[str, Any]:
        """``body`` with top-level ``temperature`` / ``top_p`` where the client set none."""
        return {**{k: round(knobs[k], 3) for k in SAMPLING if body.get(k) is None}, **body}

    def absorb(self, reply: Reply, frame: dict[str, Any]) -> None:
        """Fold choice 0 (its ``delta`` or ``message``; a legacy completion's ``text``) and
        ``usage`` into ``reply``: tool-call fragments are merged, a ``finish_reason`` ends the
        reply (as ``done_reason``), usage becomes ``prompt_eval_count`` / ``eval_count``."""
        chunk = parse_chunk(OpenAIChatChunk, frame, reply)
        if chunk is None:
            return
        if (choice := chunk.first_choice()) is not None:
            part = choice.delta or choice.message or OpenAIDelta()
            reply.content += part.content or choice.text or ""
            reply.thinking += part.reasoning_content or part.reasoning or ""
            for call in part.tool_calls or []:
                merge_tool_call(reply.tool_calls, call)
            if choice.finish_reason:
                reply.metrics["done_reason"] = choice.finish_reason
                reply.done = True
        if (usage := chunk.usage) is not None:
            if usage.prompt_tokens is not None:
                reply.metrics["prompt_eval_count"] = usage.prompt_tokens
            if usage.completion_tokens is not None:
                reply.metrics["eval_count"] = usage.completion_tokens
