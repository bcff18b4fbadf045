"""Embedded Chroma with a bounded pool of open HNSW indexes.

chromadb's embedded client (``chromadb.api.rust.RustBindingsAPI``, chromadb 1.x) keeps the
HNSW index of every collection it has opened in an in-memory pool (a Foyer cache,
``LocalSegmentManager.hnsw_index_pool`` in chroma's Rust code, weight 1 per index) whose
capacity is the process's open-file limit divided by 5 (``api/rust.py``: "each HNSW index has
4 data files and 1 metadata file"): with a limit of 1,048,576 that is 209,715 indexes, in effect
unbounded. Each costs about 2.6 MB resident even when it holds one memory
(``scripts/bench_users.py``): that is what grew the proxy by 2.6 MB per user.

chromadb has no setting for that capacity, and accepts no API class of its own
(``SharedSystemClient`` only knows its own class names), but the capacity is an attribute the
API object reads when its system starts. :func:`persistent_client` therefore builds the system
itself, sets the capacity, starts it and hands it to chromadb's client (``Client.from_system``,
chromadb's public way to share a system). An index evicted from the pool is closed by chroma
and reopened from disk at its next use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import chromadb
from chromadb.api import ServerAPI
from chromadb.api.client import Client
from chromadb.api.rust import RustBindingsAPI
from chromadb.api.shared_system_client import SharedSystemClient
from chromadb.config import Settings, System
from chromadb.telemetry.product import ProductTelemetryClient


def persistent_client(path: Path, capacity: int) -> Any:
    """An embedded client on ``path`` that keeps at most ``capacity`` collections' HNSW
    indexes in memory; raises what chromadb raises.

    When a client on ``path`` is already open in this process, the new one shares its system
    (as ``chromadb.PersistentClient`` does) and the capacity it was started with."""
    if capacity < 1:
        raise ValueError(f"capacity must be at least 1, not {capacity}")
    settings = Settings(anonymized_telemetry=False)
    if str(path) in SharedSystemClient._identifier_to_system:  # chromadb's systems by path
        return chromadb.PersistentClient(path=str(path), settings=settings)
    settings.persist_directory = str(path)  # what PersistentClient sets
    settings.is_persistent = True
    system = System(settings)
    system.instance(ProductTelemetryClient)  # type: ignore[type-abstract]
    api = system.instance(ServerAPI)  # type: ignore[type-abstract]
    if isinstance(api, RustBindingsAPI):
        api.hnsw_cache_size = capacity  # read by start(), which builds the Rust bindings
    system.start()
    # register it as PersistentClient would, so a second store on this path (the shared tier,
    # another service in the process) shares it: two Rust bindings on one directory see each
    # other's unflushed HNSW segments as "nothing found on disk"
    SharedSystemClient._identifier_to_system[str(path)] = system
    return Client.from_system(system)
