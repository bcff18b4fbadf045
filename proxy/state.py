"""Typed application state (``web.AppKey``) shared by the handlers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from memory.affect import Affect
from memory.resilience import CircuitBreaker
from memory.service import MemoryService
from memory.structured import Dialect
from proxy.config import Config
from proxy.sticky import StickyBlocks


@dataclass
class Counters:
    """Process-wide counters reported by ``/healthz``."""

    requests: int = 0
    recalled: int = 0
    fail_open: int = 0
    upstream_errors: int = 0


@dataclass
class UpstreamTraits:
    """What the proxy has learnt about the upstream while running."""

    schema_dialect: Dialect = "json_schema"
    """How an OpenAI-kind upstream takes a JSON schema (``memory.structured``); switched to
    ``json_object`` the first time it refuses ``json_schema``."""


CONFIG = web.AppKey("config", Config)
UPSTREAM = web.AppKey("upstream", aiohttp.ClientSession)
MEMORY = web.AppKey("memory", MemoryService)
COUNTERS = web.AppKey("counters", Counters)
TRAITS = web.AppKey("traits", UpstreamTraits)
UPSTREAM_BREAKER = web.AppKey("upstream_breaker", CircuitBreaker)
AFFECT = web.AppKey("affect", Affect)
STICKY = web.AppKey("sticky", StickyBlocks)
"""The blocks given to conversation turns (``proxy.sticky``); absent when they are not sticky."""
PLAN_LISTENERS = web.AppKey("plan_listeners", list[Callable[[Any], None]])
"""Callbacks given each request's ``proxy.chat.Plan`` (what was recalled and injected) before
it goes upstream; used by ``symbiotic-memory demo``. Must not block."""
