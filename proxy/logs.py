"""Log output: the request in progress as a context variable, and one JSON object per line.

``log_format: json`` (or ``SYMBIOTIC_MEMORY__LOG_FORMAT=json``) makes ``serve`` write lines like
``{"ts": "2026-12-04T03:10:00.123Z", "level": "WARNING", "logger": "proxy.chat", "message":
"...", "route": "/api/chat", "exchange_id": "9f..."}``. The user is never logged: a user name
is personal data; the exchange id ties a line to its memory for whoever may read it.
"""

from __future__ import annotations

import json
import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import IO, Any, Literal

LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@dataclass
class RequestContext:
    """What the logs and the metrics know of the request being served (set by
    :func:`proxy.metrics.observe`, filled in by ``proxy.chat``)."""

    route: str
    """The route's bounded label (:func:`proxy.metrics.route_label`), never a raw path."""
    started: float = field(default_factory=time.perf_counter)
    """``time.perf_counter()`` when the request arrived (seconds)."""
    exchange_id: str | None = None
    """The id of the exchange the request becomes (``X-Memory-Exchange-Id``), once chosen."""
    plan: Any = None
    """The request's ``proxy.chat.Plan``, once decided."""
    first_byte_s: float | None = None
    """Seconds from arrival until the response headers went out."""


CONTEXT: ContextVar[RequestContext | None] = ContextVar("symbiotic_request", default=None)
"""The request in progress in this task (None outside requests)."""


def current() -> RequestContext | None:
    """The :class:`RequestContext` of the request this code runs for, if any."""
    return CONTEXT.get()


class ContextFilter(logging.Filter):
    """Adds ``route`` and ``exchange_id`` (None outside a request) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = CONTEXT.get()
        record.route = ctx.route if ctx else None
        record.exchange_id = ctx.exchange_id if ctx else None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (ISO 8601 UTC, milliseconds), ``level``, ``logger``,
    ``message``, then ``route`` and ``exchange_id`` when set, ``exc`` with a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "ts": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("route", "exchange_id"):
            if (value := getattr(record, key, None)) is not None:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def handler_for(fmt: LogFormat, stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing ``fmt`` (``text``: the classic one-line layout) to ``stream``
    (default stderr), with the :class:`ContextFilter`."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    return handler


def configure(level: str, fmt: LogFormat) -> None:
    """Send the root logger's records at ``level`` and above to stderr in ``fmt``."""
    logging.basicConfig(level=level, handlers=[handler_for(fmt)], force=True)
