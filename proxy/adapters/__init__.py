"""One adapter per wire format of the intercepted chat endpoints, registered in one table.

An adapter (:class:`~proxy.adapters.base.Adapter`) knows where a format keeps the user turn,
what to recall for, where the memory block and sampling knobs go, and how to fold a reply chunk
into the :class:`~proxy.adapters.base.Reply`; the handlers in ``proxy.chat`` and
``proxy.translated`` never look at the format themselves. A new format is one more class and
one more entry in :data:`ADAPTERS` (as OpenAI Responses and Anthropic Messages were).
"""

from __future__ import annotations

from proxy.adapters.anthropic import AnthropicMessages
from proxy.adapters.base import Adapter, Reply
from proxy.adapters.events import EventStreamAdapter
from proxy.adapters.ollama import OllamaAdapter, OllamaChat, OllamaGenerate
from proxy.adapters.openai import OpenAIChat
from proxy.adapters.responses import OpenAIResponses
from proxy.wire import ApiKind

OLLAMA_CHAT = OllamaChat()
OLLAMA_GENERATE = OllamaGenerate()
OPENAI_CHAT = OpenAIChat()
OPENAI_RESPONSES = OpenAIResponses()
ANTHROPIC_MESSAGES = AnthropicMessages()

ADAPTERS: dict[ApiKind, Adapter] = {
    a.kind: a
    for a in (OLLAMA_CHAT, OLLAMA_GENERATE, OPENAI_CHAT, OPENAI_RESPONSES, ANTHROPIC_MESSAGES)
}
"""Every intercepted chat format by name; ``proxy.app`` routes ``adapter.path`` to each."""

__all__ = [
    "ADAPTERS",
    "ANTHROPIC_MESSAGES",
    "OLLAMA_CHAT",
    "OLLAMA_GENERATE",
    "OPENAI_CHAT",
    "OPENAI_RESPONSES",
    "Adapter",
    "EventStreamAdapter",
    "OllamaAdapter",
    "Reply",
]
