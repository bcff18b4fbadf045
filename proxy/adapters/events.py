"""What the two named-event stream formats (OpenAI Responses, Anthropic Messages) add to an
adapter.

Their SSE streams put an ``event:`` line before each ``data:`` line and repeat the event's name
in the data's ``type`` field, so the tee reads the data alone. They end with a closing event of
their own (``response.completed``, ``message_stop``) instead of OpenAI chat's ``[DONE]``, and an
in-band error is an event of the format (``proxy.chat`` writes it when the upstream breaks).
"""

from __future__ import annotations

import json
from typing import Any, Protocol, runtime_checkable

from proxy.adapters.base import Adapter


@runtime_checkable
class EventStreamAdapter(Adapter, Protocol):
    """An adapter whose ``absorb`` sets ``reply.done`` only at the stream's closing event, and
    which writes its own in-band error event."""

    def error_event(self, message: str) -> bytes:
        """One complete SSE event telling the client the reply broke with ``message``."""
        ...


def sse_event(name: str, payload: dict[str, Any]) -> bytes:
    """One named SSE event.

    >>> sse_event("error", {"type": "error"})
    b'event: error\\ndata: {"type": "error"}\\n\\n'
    """
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode()
