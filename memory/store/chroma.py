"""The vector store: Chroma, one collection per user (hard isolation by construction).

A user's memories live in the collection ``{prefix}-u-{sha256(user)[:40]}``, so a query, get or
delete for one user cannot reach another user's records, and a query needs no ``where`` filter
(measured here at 20k vectors: ~7 ms unfiltered vs ~50 ms filtered). Chroma's client is
synchronous; every call runs in a worker thread. Any Chroma failure becomes :class:`StoreError`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import numpy as np

from memory.config import StoreConfig
from memory.embedders import Vectors
from memory.errors import DimensionMismatchError, StoreError
from memory.record import SCHEMA_VERSION
from memory.store import changes as change_log
from memory.store.changes import Change, Kind
from memory.types import MemoryHit

T = TypeVar("T")
Metadata = dict[str, str | int | float | bool]


class Store(Protocol):
    """Where memories are kept; every method is scoped to one user."""

    async def open(self) -> None:
        """Connect (or open the directory); raises StoreError."""
        ...

    async def close(self) -> None:
        """Release the client."""
        ...

    async def check_dimension(self, embedder: str, dim: int) -> None:
        """Raise DimensionMismatchError if any existing collection holds other-sized vectors."""
        ...

    async def upsert(
        self, user: str, memory_id: str, vector: Vectors, text: str, metadata: dict[str, Any]
    ) -> None:
        """Insert or replace one memory of ``user``; ``vector`` has shape ``(dim,)``.

        The stored metadata always carries ``schema_version``.
        """
        ...

    async def upsert_many(
        self,
        user: str,
        ids: list[str],
        vectors: Vectors,
        texts: list[str],
        metadatas: list[dict[str, Any]],
    ) -> None:
        """Insert or replace several memories of ``user`` in one call; ``vectors`` has shape
        ``(len(ids), dim)``; a repeated id keeps its last record."""
        ...

    async def query(self, user: str, vector: Vectors, k: int) -> list[MemoryHit]:
        """The ``k`` memories of ``user`` nearest to ``vector``, most similar first."""
        ...

    async def get(self, user: str, memory_id: str) -> MemoryHit | None:
        """One memory of ``user`` by id, or None (also when it belongs to someone else)."""
        ...

    async def delete(self, user: str, memory_id: str) -> bool:
        """Hard-delete one memory of ``user``; False when ``user`` has no such memory."""
        ...

    async def heartbeat(self) -> None:
        """Raise StoreError when the store is unusable."""
        ...

    async def all(self, user: str, batch: int = 500) -> list[MemoryHit]:
        """Every memory of ``user`` (for export), in store order."""
        ...

    async def snapshot(self, user: str, batch: int = 500) -> tuple[list[MemoryHit], Vectors]:
        """Every memory of ``user`` and its vector: ``(hits, vectors)`` with ``vectors`` of
        shape ``(len(hits), dim)`` (``(0, 0)`` when there are none), in store order."""
        ...

    async def update_metadata(self, user: str, updates: dict[str, dict[str, Any]]) -> None:
        """Merge ``updates`` (memory id -> metadata keys to set) into stored records of
        ``user``; ids that no longer exist are ignored."""
        ...

    async def users(self) -> list[str]:
        """Every user with at least one stored memory (read from the records' ``user``)."""
        ...

    async def fetch(self, user: str, ids: list[str]) -> tuple[list[MemoryHit], Vectors]:
        """The memories ``ids`` of ``user`` that exist, with their vectors: ``(hits, vectors)``
        as :meth:`snapshot` returns them."""
        ...

    @property
    def logs_changes(self) -> bool:
        """Whether writes are noted in a change log other replicas read (a shared server)."""
        ...

    async def changes(self, since: float) -> list[Change]:
        """Change-log entries of other replicas stamped at or after ``since`` (Unix seconds),
        oldest first; empty when the store keeps no log."""
        ...

    async def prune_changes(self, before: float) -> None:
        """Drop change-log entries stamped before ``before``."""
        ...


SHARED = "\x00shared"
"""The owner of the shared tier's collection: no client can be this user (an HTTP header
value cannot hold a NUL byte), so no user-scoped call can read, change or delete it."""


def collection_name(prefix: str, user: str) -> str:
    """Chroma collection of ``user``: valid for Chroma (3-512 chars of ``[a-zA-Z0-9._-]``);
    ``{prefix}-shared`` for :data:`SHARED`.

    >>> collection_name("slm", "alice")
    'slm-u-2bd806c97f0e00af1a1fc3328fa763a9269723c8'
    """
    if user == SHARED:
        return f"{prefix}-shared"
    return f"{prefix}-u-{hashlib.sha256(user.encode('utf-8')).hexdigest()[:40]}"


def to_chroma_metadata(metadata: dict[str, Any]) -> Metadata:
    """Chroma accepts only str/int/float/bool values: drop None, unwrap numpy scalars,
    JSON-encode the rest.

    >>> to_chroma_metadata({"a": 1, "b": None, "c": {"x": 1}})
    {'a': 1, 'c': '{"x": 1}'}
    """
    out: Metadata = {}
    for key, value in metadata.items():
        if isinstance(value, np.generic):  # numpy scalars (np.bool_ is no bool) as Python ones
            value = value.item()
        if value is None:
            continue
        if isinstance(value, str | int | float | bool):
            out[key] = value
        else:
            out[key] = json.dumps(value, ensure_ascii=False)
    return out


class ChromaStore:
    """:class:`Store` on chromadb: embedded ``PersistentClient`` or ``HttpClient`` for a server.

    Against a server (``url``), every write, metadata update and delete is also noted in the
    change log (:mod:`memory.store.changes`) under this instance's ``replica`` id; an embedded
    store has one process, which sees its own writes, and keeps no log."""

    def __init__(self, config: StoreConfig) -> None:
        self._config = config
        self._client: Any = None
        self._collections: OrderedDict[str, Any] = OrderedDict()  # least recently used first
        self._lock = threading.Lock()
        self._log: Any = None
        self.replica = uuid.uuid4().hex
        """This process's name in the change log (its own entries are not read back)."""

    @property
    def logs_changes(self) -> bool:
        """See :meth:`Store.logs_changes`: against a server."""
        return self._config.url is not None

    def _change_log(self) -> Any:
        if self._log is None:
            name = f"{self._config.collection_prefix}-changes"
            self._log = change_log.open_log(self._require_client(), name)
        return self._log

    def _note_sync(self, user: str, kind: Kind, ids: list[str]) -> None:
        change_log.note(self._change_log(), user, kind, ids, self.replica)

    async def _note(self, user: str, kind: Kind, ids: list[str]) -> None:
        """Note a change of ``user``'s memories in the log (not for the shared tier, which
        replicas reload on their own: :class:`memory.recall.cache.SharedTier`)."""
        if self.logs_changes and user != SHARED and ids:
            await self._run(self._note_sync, user, kind, ids)

    async def changes(self, since: float) -> list[Change]:
        """See :meth:`Store.changes`."""
        if not self.logs_changes:
            return []
        log = await self._run(self._change_log)
        return await self._run(change_log.read, log, since, self.replica)

    async def prune_changes(self, before: float) -> None:
        """See :meth:`Store.prune_changes`."""
        if self.logs_changes:
            log = await self._run(self._change_log)
            await self._run(change_log.prune, log, before)

    @property
    def where(self) -> str:
        """Where the data lives, for messages."""
        return self._config.url or str(self._config.path)

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))
        except (StoreError, DimensionMismatchError):
            raise
        except Exception as exc:  # chromadb raises many unrelated types; translate them all here
            raise StoreError(f"chroma at {self.where}: {type(exc).__name__}: {exc}") from exc

    def _connect(self) -> Any:
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        if self._config.url:
            parts = urlsplit(self._config.url)
            return chromadb.HttpClient(
                host=parts.hostname or "127.0.0.1",
                port=parts.port or (443 if parts.scheme == "https" else 8000),
                ssl=parts.scheme == "https",
                settings=settings,
            )
        self._config.path.mkdir(parents=True, exist_ok=True)
        # chromadb's own pool of open HNSW indexes, left at its size: shrinking it
        # (``RustBindingsAPI.hnsw_cache_size``) made chroma evict indexes it then failed to
        # reopen ("Error creating hnsw segment reader: Nothing found on disk"; 8 of 12 runs of
        # tests/test_shared_tier.py at a capacity of 64, 0 of 8 at chroma's default)
        return chromadb.PersistentClient(path=str(self._config.path), settings=settings)

    async def open(self) -> None:
        """Connect to the server or open the directory; raises StoreError."""
        self._client = await self._run(self._connect)

    async def close(self) -> None:
        """Close the client (its HTTP pool or SQLite handles) and forget cached collections."""
        self._collections.clear()
        self._log = None
        client, self._client = self._client, None
        if client is None:
            return
        await self._run(client.close)
        # chromadb's HTTP client does not close its httpx pool on close(); do it here so no
        # socket is left for the garbage collector.
        session = getattr(getattr(client, "_server", None), "_session", None)
        if session is not None and hasattr(session, "close"):
            await self._run(session.close)

    def _require_client(self) -> Any:
        if self._client is None:
            raise StoreError("store is not open")
        return self._client

    def _collection(self, user: str, create_dim: int | None = None, embedder: str = "") -> Any:
        """The user's collection; created (with its dimension recorded) when ``create_dim`` set."""
        name = collection_name(self._config.collection_prefix, user)
        with self._lock:  # worker threads share the handles
            if (cached := self._collections.get(name)) is not None:
                self._collections.move_to_end(name)
                return cached
        client = self._require_client()
        if create_dim is None:
            from chromadb.errors import NotFoundError

            try:
                collection = client.get_collection(name, embedding_function=None)
            except NotFoundError:
                return None
        else:
            collection = client.get_or_create_collection(
                name,
                embedding_function=None,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={
                    "schema_version": SCHEMA_VERSION,
                    "dim": create_dim,
                    "embedder": embedder,
                },
            )
        with self._lock:
            self._collections[name] = collection
            if len(self._collections) > self._config.cache_collections:
                self._collections.popitem(last=False)
        return collection

    async def check_dimension(self, embedder: str, dim: int) -> None:
        """See :meth:`Store.check_dimension`."""
        client = self._require_client()
        collections = await self._run(client.list_collections)
        prefix = f"{self._config.collection_prefix}-u-"
        shared = collection_name(self._config.collection_prefix, SHARED)
        for collection in collections:
            stored = (collection.metadata or {}).get("dim")
            ours = collection.name.startswith(prefix) or collection.name == shared
            if ours and stored is not None and int(stored) != dim:
                raise DimensionMismatchError(embedder, dim, collection.name, int(stored))

    async def upsert(
        self, user: str, memory_id: str, vector: Vectors, text: str, metadata: dict[str, Any]
    ) -> None:
        """See :meth:`Store.upsert`; raises DimensionMismatchError or StoreError."""
        await self.upsert_many(user, [memory_id], vector.reshape(1, -1), [text], [metadata])

    async def upsert_many(
        self,
        user: str,
        ids: list[str],
        vectors: Vectors,
        texts: list[str],
        metadatas: list[dict[str, Any]],
    ) -> None:
        """See :meth:`Store.upsert_many`; raises DimensionMismatchError or StoreError."""
        dim = int(vectors.shape[-1])
        embedder = str(metadatas[0].get("embedder", "")) if metadatas else ""
        collection = await self._run(self._collection, user, dim, embedder)
        stored = int((collection.metadata or {}).get("dim", dim))
        if stored != dim:
            raise DimensionMismatchError(embedder, dim, collection.name, stored)
        last = {mid: i for i, mid in enumerate(ids)}  # Chroma refuses duplicate ids in a batch
        rows = sorted(last.values())
        await self._run(
            collection.upsert,
            ids=[ids[i] for i in rows],
            embeddings=np.asarray(vectors, dtype=np.float32)[rows].tolist(),
            documents=[texts[i] for i in rows],
            metadatas=[
                to_chroma_metadata({"schema_version": SCHEMA_VERSION, **metadatas[i]}) for i in rows
            ],
        )
        await self._note(user, "upsert", [ids[i] for i in rows])

    async def query(self, user: str, vector: Vectors, k: int) -> list[MemoryHit]:
        """See :meth:`Store.query`; similarity = 1 - cosine distance."""
        collection = await self._run(self._collection, user)
        if collection is None:
            return []
        result = await self._run(
            collection.query,
            query_embeddings=[np.asarray(vector, dtype=np.float32).tolist()],
            n_results=k,
            include=["documents", "metadatas", "distances"],
        )
        ids = result["ids"][0]
        dists = (result.get("distances") or [[]])[0]
        docs = (result.get("documents") or [[""] * len(ids)])[0]
        metas = (result.get("metadatas") or [[{}] * len(ids)])[0]
        return [
            MemoryHit(id=i, text=d or "", metadata=dict(m or {}), similarity=1.0 - float(dist))
            for i, d, m, dist in zip(ids, docs, metas, dists, strict=True)
        ]

    async def get(self, user: str, memory_id: str) -> MemoryHit | None:
        """See :meth:`Store.get`."""
        collection = await self._run(self._collection, user)
        if collection is None:
            return None
        result = await self._run(
            collection.get, ids=[memory_id], include=["documents", "metadatas"]
        )
        if not result["ids"]:
            return None
        docs = result.get("documents") or [""]
        metas = result.get("metadatas") or [{}]
        return MemoryHit(id=result["ids"][0], text=docs[0] or "", metadata=dict(metas[0] or {}))

    async def delete(self, user: str, memory_id: str) -> bool:
        """See :meth:`Store.delete`."""
        if await self.get(user, memory_id) is None:
            return False
        collection = await self._run(self._collection, user)
        await self._note(user, "delete", [memory_id])  # first: erasure must reach replicas
        await self._run(collection.delete, ids=[memory_id])
        return True

    async def all(self, user: str, batch: int = 500) -> list[MemoryHit]:
        """See :meth:`Store.all`; pages through the collection ``batch`` records at a time."""
        hits, _ = await self._pages(user, batch, vectors=False)
        return hits

    async def snapshot(self, user: str, batch: int = 500) -> tuple[list[MemoryHit], Vectors]:
        """See :meth:`Store.snapshot`."""
        return await self._pages(user, batch, vectors=True)

    async def _pages(self, user: str, batch: int, vectors: bool) -> tuple[list[MemoryHit], Vectors]:
        """Every record of ``user``, ``batch`` at a time, and (with ``vectors``) their vectors
        (shape ``(n, dim)``, or ``(0, 0)`` without them)."""
        collection = await self._run(self._collection, user)
        include = ["documents", "metadatas", *(["embeddings"] if vectors else [])]
        hits: list[MemoryHit] = []
        rows: list[Any] = []
        while collection is not None:
            page = await self._run(collection.get, limit=batch, offset=len(hits), include=include)
            docs = page.get("documents") or [""] * len(page["ids"])
            metas = page.get("metadatas") or [{}] * len(page["ids"])
            hits.extend(
                MemoryHit(id=i, text=d or "", metadata=dict(m or {}))
                for i, d, m in zip(page["ids"], docs, metas, strict=True)
            )
            embeddings = page.get("embeddings")
            if embeddings is not None and len(embeddings):
                rows.append(np.asarray(embeddings, dtype=np.float32))
            if len(page["ids"]) < batch:
                break
        if not hits or not rows:
            return hits, np.zeros((0, 0), dtype=np.float32)
        return hits, np.vstack(rows)

    async def update_metadata(self, user: str, updates: dict[str, dict[str, Any]]) -> None:
        """See :meth:`Store.update_metadata`."""
        collection = await self._run(self._collection, user)
        if collection is None or not updates:
            return
        found = await self._run(collection.get, ids=list(updates), include=[])
        ids = [i for i in found["ids"] if i in updates]
        if ids:
            await self._run(
                collection.update, ids=ids, metadatas=[to_chroma_metadata(updates[i]) for i in ids]
            )
            await self._note(user, "update", ids)

    async def fetch(self, user: str, ids: list[str]) -> tuple[list[MemoryHit], Vectors]:
        """See :meth:`Store.fetch`."""
        collection = await self._run(self._collection, user)
        if collection is None or not ids:
            return [], np.zeros((0, 0), dtype=np.float32)
        page = await self._run(
            collection.get, ids=ids, include=["documents", "metadatas", "embeddings"]
        )
        docs = page.get("documents") or [""] * len(page["ids"])
        metas = page.get("metadatas") or [{}] * len(page["ids"])
        hits = [
            MemoryHit(id=i, text=d or "", metadata=dict(m or {}))
            for i, d, m in zip(page["ids"], docs, metas, strict=True)
        ]
        embeddings = page.get("embeddings")
        if not hits or embeddings is None or not len(embeddings):
            return hits, np.zeros((0, 0), dtype=np.float32)
        return hits, np.asarray(embeddings, dtype=np.float32)

    async def users(self) -> list[str]:
        """See :meth:`Store.users`."""
        client = self._require_client()
        prefix = f"{self._config.collection_prefix}-u-"
        out = []
        for collection in await self._run(client.list_collections):
            if not collection.name.startswith(prefix):
                continue
            page = await self._run(collection.get, limit=1, include=["metadatas"])
            metas = page.get("metadatas") or []
            user = (metas[0] or {}).get("user") if metas else None
            if isinstance(user, str):
                out.append(user)
        return sorted(out)

    async def heartbeat(self) -> None:
        """See :meth:`Store.heartbeat`."""
        client = self._require_client()
        await self._run(client.heartbeat)
