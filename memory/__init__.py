"""The memory side of symbiotic-latent-memory: embedders, store, recall and write-back.

The proxy talks to this package through :class:`~memory.service.MemoryService` (built by
:func:`~memory.service.build_memory_service`); the names below are the surface it may import.
Submodules never import from the package itself (``from memory import ...``), so importing
this surface cannot form a cycle.

Layout: ``store/`` (Chroma store, outbox, raw archive, score log), ``recall/`` (index, index
and shared-tier caches, query analysis, ranking, rendering, recaller), ``write/`` (writer
loop, gate, reinforcement plan, access statistics, judge worker), ``score/`` (symbiosis
scorer, judge, score keeper), ``metabolism/`` (decay, sleep-cycle stages and their I/O
driver, resonance); ``guarded.py`` wraps the embedder and the store in circuit breakers.
"""

from __future__ import annotations

from memory.affect import Affect, resolve_ranges, text_signals
from memory.config import (
    AffectConfig,
    EmbedderConfig,
    Frozen,
    KnobsConfig,
    MemoryConfig,
    MetabolismConfig,
    ResilienceConfig,
    StoreConfig,
    SymbiosisConfig,
)
from memory.errors import BreakerOpenError, MemoryLayerError
from memory.export import export_user
from memory.ingest import drain, queue, read_messages
from memory.resilience import CircuitBreaker
from memory.score.symbiosis import Turn, make_scorer
from memory.service import MemoryService, build_memory_service
from memory.store.score_log import verify
from memory.structured import Dialect, refuses_json_schema, response_format
from memory.types import Exchange, ExchangeStatus, MemoryBlock, MemoryHit, Scope

__all__ = [
    "Affect",
    "AffectConfig",
    "BreakerOpenError",
    "CircuitBreaker",
    "Dialect",
    "EmbedderConfig",
    "Exchange",
    "ExchangeStatus",
    "Frozen",
    "KnobsConfig",
    "MemoryBlock",
    "MemoryConfig",
    "MemoryHit",
    "MemoryLayerError",
    "MemoryService",
    "MetabolismConfig",
    "ResilienceConfig",
    "Scope",
    "StoreConfig",
    "SymbiosisConfig",
    "Turn",
    "build_memory_service",
    "drain",
    "export_user",
    "make_scorer",
    "queue",
    "read_messages",
    "refuses_json_schema",
    "resolve_ranges",
    "response_format",
    "text_signals",
    "verify",
]
