"""The vector store: Chroma, ``store.shards`` collections shared by many users each
(:mod:`memory.store.layout`), plus one for the shared tier.

A user's memories live in one shard, with ids tagged with their owner and a ``user`` metadata
field that every read filters on, so a query, get or delete for one user cannot reach another
user's records. The shard count bounds Chroma's memory: each collection's HNSW index costs a
fixed ~2.6 MB (see :mod:`memory.store.layout`). Collections of the older one-per-user layout are
copied into the shards when the store opens (:mod:`memory.store.migrate`). Chroma's client is
synchronous; every call runs in a worker thread. Any Chroma failure becomes :class:`StoreError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import numpy as np

from memory.config import StoreConfig
from memory.embedders import Vectors
from memory.errors import DimensionMismatchError, StoreError
from memory.record import SCHEMA_VERSION
from memory.store import changes as change_log
from memory.store import layout
from memory.store import migrate as migration
from memory.store.changes import Change, Kind
from memory.store.layout import SHARED, Placement, collection_name
from memory.store.protocol import Store
from memory.types import MemoryHit

T = TypeVar("T")
Metadata = dict[str, str | int | float | bool]


__all__ = ["SHARED", "ChromaStore", "Store", "collection_name", "to_chroma_metadata"]

log = logging.getLogger(__name__)


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


EXACT_MAX = 500
"""Most memories of a user in a shard that :meth:`ChromaStore.query` scores itself."""
UPSERT_BATCH = 4096
"""Records per Chroma ``upsert`` call at most; less when the client's ``get_max_batch_size()``
is lower (5461 for the embedded client in chromadb 1.x). Chroma refuses a whole call over
that limit, so a restore of a large export must be cut."""
REOPEN_EVERY = 50
"""The embedded client is reopened after this many migrated collections (see
:meth:`ChromaStore._reopen`): measured, reading 200 one-per-user collections took the process
from 99 to 622 MB without, to 321 MB reopening every 50."""


def nearest(hits: list[MemoryHit], rows: Any, vector: Vectors, k: int) -> list[MemoryHit]:
    """The ``k`` of ``hits`` whose rows (shape ``(len(hits), dim)``) have the highest cosine
    similarity to ``vector``, most similar first, with it as ``similarity``.

    >>> a, b = MemoryHit("a", "", {}), MemoryHit("b", "", {})
    >>> [(h.id, round(h.similarity, 3)) for h in nearest([a, b], [[1, 0], [1, 1]], [0, 1], 5)]
    [('b', 0.707), ('a', 0.0)]
    """
    if not hits:
        return []
    matrix = np.asarray(rows, dtype=np.float32)
    query = np.asarray(vector, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1) * max(float(np.linalg.norm(query)), 1e-12)
    cosine = matrix @ query / np.maximum(norms, 1e-12)
    order = np.argsort(-cosine, kind="stable")[:k]
    return [hits[i].with_similarity(float(cosine[i])) for i in order]


class ChromaStore:
    """:class:`Store` on chromadb: embedded ``PersistentClient`` or ``HttpClient`` for a server.

    Against a server (``url``), every write, metadata update and delete is also noted in the
    change log (:mod:`memory.store.changes`) under this instance's ``replica`` id; an embedded
    store has one process, which sees its own writes, and keeps no log."""

    def __init__(self, config: StoreConfig) -> None:
        self._config = config
        self._client: Any = None
        self._upsert_batch = UPSERT_BATCH
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
        """Connect to the server or open the directory, then :meth:`migrate`; raises
        StoreError (or DimensionMismatchError from the migration)."""
        self._client = await self._run(self._connect)
        limit = await self._run(self._client.get_max_batch_size)
        self._upsert_batch = max(1, min(UPSERT_BATCH, int(limit)))
        report = await self.migrate()
        if report.collections:
            log.warning(
                "store at %s: moved %d memories of %d users from %d collections of an older "
                "layout into %d shards",
                self.where,
                report.memories,
                report.users,
                report.collections,
                self._config.shards,
            )
        for name, why in report.left.items():
            log.warning("store at %s: collection %s left unmigrated: %s", self.where, name, why)

    async def migrate(self) -> migration.MigrationReport:
        """Copy every collection of another layout (one per user, or another shard count) into
        the configured shards, verify the copies, then delete it (:mod:`memory.store.migrate`);
        idempotent. Collections whose owners cannot be told are left and reported."""
        prefix, shards = self._config.collection_prefix, self._config.shards
        report = migration.MigrationReport()
        old = [
            c.name
            for c in await self._run(self._require_client().list_collections)
            if layout.is_legacy(prefix, shards, c.name)
        ]
        for done, name in enumerate(old, start=1):
            try:
                await self._migrate_one(name, report)
            except migration.UnmigratableError as exc:
                report.left[name] = str(exc)
            if self._config.url is None and done % REOPEN_EVERY == 0:
                await self._run(self._reopen)
        return report

    def _reopen(self) -> None:
        """Close and reopen the embedded client: chromadb frees the HNSW indexes it loaded only
        when its last client on the directory closes (deleting a collection does not)."""
        with self._lock:
            self._collections.clear()
        self._log = None
        self._require_client().close()
        self._client = self._connect()

    async def _migrate_one(self, name: str, report: migration.MigrationReport) -> None:
        rows = await self._run(self._read_old, name)
        if rows is None:  # another replica migrated it meanwhile
            return
        owned = migration.owners(self._config.collection_prefix, name, rows)
        for user, mine in owned.items():
            texts = [rows.texts[r] for r in mine.rows]
            metas = [rows.metadatas[r] for r in mine.rows]
            await self._put(user, mine.memory_ids, rows.vectors[mine.rows], texts, metas)
        for user, mine in owned.items():
            hits, vectors = await self.fetch(user, mine.memory_ids)
            if (why := migration.mismatch(rows, mine, user, hits, vectors)) is not None:
                raise migration.UnmigratableError(f"copy not verified, kept: {why}")
        await self._run(self._drop, name)
        report.collections += 1
        report.users += len(owned)
        report.memories += len(rows.ids)

    def _read_old(self, name: str) -> migration.Rows | None:
        from chromadb.errors import NotFoundError

        try:
            return migration.read_rows(self._require_client().get_collection(name))
        except NotFoundError:
            return None

    def _drop(self, name: str) -> None:
        from chromadb.errors import NotFoundError

        self._forget(name)
        with contextlib.suppress(NotFoundError):
            self._require_client().delete_collection(name)

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

    def _place(self, user: str) -> Placement:
        return layout.placement(self._config.collection_prefix, self._config.shards, user)

    def _named(self, name: str, create_dim: int | None = None, embedder: str = "") -> Any:
        """Collection ``name``; created (with its dimension recorded) when ``create_dim`` set,
        else None when missing."""
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
                    "layout": layout.LAYOUT_VERSION,
                    "dim": create_dim,
                    "embedder": embedder,
                },
            )
        with self._lock:
            self._collections[name] = collection
            if len(self._collections) > self._config.cache_collections:
                self._collections.popitem(last=False)
        return collection

    def _forget(self, name: str) -> None:
        with self._lock:
            self._collections.pop(name, None)

    async def check_dimension(self, embedder: str, dim: int) -> None:
        """See :meth:`Store.check_dimension`."""
        client = self._require_client()
        collections = await self._run(client.list_collections)
        for collection in collections:
            stored = (collection.metadata or {}).get("dim")
            ours = layout.is_ours(self._config.collection_prefix, collection.name)
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
        """See :meth:`Store.upsert_many`; the stored metadata also carries ``user`` (the
        owner, whatever ``metadatas`` say). Raises DimensionMismatchError or StoreError."""
        last = {mid: i for i, mid in enumerate(ids)}  # Chroma refuses duplicate ids in a batch
        rows = sorted(last.values())
        metas = [{"schema_version": SCHEMA_VERSION, **metadatas[i]} for i in rows]
        kept, texts = [ids[i] for i in rows], [texts[i] for i in rows]
        await self._put(user, kept, np.asarray(vectors)[rows], texts, metas)
        await self._note(user, "upsert", [ids[i] for i in rows])

    async def _put(
        self,
        user: str,
        ids: list[str],
        vectors: Vectors,
        texts: list[str],
        metadatas: list[dict[str, Any]],
    ) -> None:
        """Write records of ``user`` as given (distinct ``ids``), with ``user`` set; not logged."""
        place = self._place(user)
        dim = int(vectors.shape[-1])
        embedder = str(metadatas[0].get("embedder", "")) if metadatas else ""
        collection = await self._run(self._named, place.collection, dim, embedder)
        stored = int((collection.metadata or {}).get("dim", dim))
        if stored != dim:
            raise DimensionMismatchError(embedder, dim, collection.name, stored)
        owner = {} if place.where is None else {"user": user}
        rows = np.asarray(vectors, dtype=np.float32)
        step = self._upsert_batch  # Chroma refuses a whole call over its max_batch_size
        for start in range(0, len(ids), step):
            part = slice(start, start + step)
            await self._run(
                collection.upsert,
                ids=[place.record_id(i) for i in ids[part]],
                embeddings=rows[part].tolist(),
                documents=texts[part],
                metadatas=[to_chroma_metadata({**m, **owner}) for m in metadatas[part]],
            )

    async def query(self, user: str, vector: Vectors, k: int) -> list[MemoryHit]:
        """See :meth:`Store.query`; similarity = 1 - cosine distance. A user with at most
        :data:`EXACT_MAX` memories in a shard is scored exactly here from their vectors: Chroma's
        filtered HNSW query takes time in proportion to the whole shard (measured, one user's
        100 of a shard's 50,000: 69 ms filtered, 17 ms reading the user's records and scoring
        them here)."""
        place = self._place(user)
        collection = await self._run(self._named, place.collection)
        if collection is None:
            return []
        if place.where is not None:
            include = ["documents", "metadatas", "embeddings"]
            hits, rows = await self._get(user, include, limit=EXACT_MAX + 1)
            if len(hits) <= EXACT_MAX:
                return nearest(hits, rows, vector, k)
        result = await self._run(
            collection.query,
            query_embeddings=[np.asarray(vector, dtype=np.float32).tolist()],
            n_results=k,
            where=place.where,
            include=["documents", "metadatas", "distances"],
        )
        ids = result["ids"][0]
        dists = (result.get("distances") or [[]])[0]
        docs = (result.get("documents") or [[""] * len(ids)])[0]
        metas = (result.get("metadatas") or [[{}] * len(ids)])[0]
        return [
            MemoryHit(
                id=place.memory_id(i),
                text=d or "",
                metadata=dict(m or {}),
                similarity=1.0 - float(dist),
            )
            for i, d, m, dist in zip(ids, docs, metas, dists, strict=True)
        ]

    async def _get(
        self, user: str, include: list[str], ids: list[str] | None = None, **page: int
    ) -> tuple[list[MemoryHit], Any]:
        """Records of ``user`` (``ids`` of them, or a ``limit``/``offset`` page of all) and their
        embeddings as Chroma returned them (None without)."""
        place = self._place(user)
        collection = await self._run(self._named, place.collection)
        if collection is None or (ids is not None and not ids):
            return [], None
        result = await self._run(
            collection.get,
            ids=None if ids is None else [place.record_id(i) for i in ids],
            where=place.where,
            include=include,
            **page,
        )
        docs = result.get("documents") or [""] * len(result["ids"])
        metas = result.get("metadatas") or [{}] * len(result["ids"])
        hits = [
            MemoryHit(id=place.memory_id(i), text=d or "", metadata=dict(m or {}))
            for i, d, m in zip(result["ids"], docs, metas, strict=True)
        ]
        return hits, result.get("embeddings")

    async def get(self, user: str, memory_id: str) -> MemoryHit | None:
        """See :meth:`Store.get`."""
        hits, _ = await self._get(user, ["documents", "metadatas"], [memory_id])
        return hits[0] if hits else None

    async def delete(self, user: str, memory_id: str) -> bool:
        """See :meth:`Store.delete`."""
        if await self.get(user, memory_id) is None:
            return False
        place = self._place(user)
        collection = await self._run(self._named, place.collection)
        await self._note(user, "delete", [memory_id])  # first: erasure must reach replicas
        await self._run(collection.delete, ids=[place.record_id(memory_id)])
        return True

    async def all(self, user: str, batch: int = 500) -> list[MemoryHit]:
        """See :meth:`Store.all`; pages through the user's records ``batch`` at a time."""
        hits, _ = await self._pages(user, batch, vectors=False)
        return hits

    async def snapshot(self, user: str, batch: int = 500) -> tuple[list[MemoryHit], Vectors]:
        """See :meth:`Store.snapshot`."""
        return await self._pages(user, batch, vectors=True)

    async def _pages(self, user: str, batch: int, vectors: bool) -> tuple[list[MemoryHit], Vectors]:
        """Every record of ``user``, ``batch`` at a time, and (with ``vectors``) their vectors
        (shape ``(n, dim)``, or ``(0, 0)`` without them)."""
        include = ["documents", "metadatas", *(["embeddings"] if vectors else [])]
        hits: list[MemoryHit] = []
        rows: list[Any] = []
        while True:
            page, embeddings = await self._get(user, include, limit=batch, offset=len(hits))
            hits.extend(page)
            if embeddings is not None and len(embeddings):
                rows.append(np.asarray(embeddings, dtype=np.float32))
            if len(page) < batch:
                break
        if not hits or not rows:
            return hits, np.zeros((0, 0), dtype=np.float32)
        return hits, np.vstack(rows)

    async def update_metadata(self, user: str, updates: dict[str, dict[str, Any]]) -> None:
        """See :meth:`Store.update_metadata`; the owner (``user``) cannot be changed."""
        found, _ = await self._get(user, [], list(updates))
        ids = [h.id for h in found if h.id in updates]
        if not ids:
            return
        place = self._place(user)
        owner = {} if place.where is None else {"user": user}
        collection = await self._run(self._named, place.collection)
        await self._run(
            collection.update,
            ids=[place.record_id(i) for i in ids],
            metadatas=[to_chroma_metadata({**updates[i], **owner}) for i in ids],
        )
        await self._note(user, "update", ids)

    async def fetch(self, user: str, ids: list[str]) -> tuple[list[MemoryHit], Vectors]:
        """See :meth:`Store.fetch`."""
        hits, embeddings = await self._get(user, ["documents", "metadatas", "embeddings"], ids)
        if not hits or embeddings is None or not len(embeddings):
            return hits, np.zeros((0, 0), dtype=np.float32)
        return hits, np.asarray(embeddings, dtype=np.float32)

    async def users(self, batch: int = 1000) -> list[str]:
        """See :meth:`Store.users`: the distinct ``user`` of every shard's records."""
        prefix, shards = self._config.collection_prefix, self._config.shards
        out: set[str] = set()
        for index in range(shards):
            collection = await self._run(self._named, layout.shard_name(prefix, index, shards))
            seen = 0
            while collection is not None:
                page = await self._run(
                    collection.get, limit=batch, offset=seen, include=["metadatas"]
                )
                seen += len(page["ids"])
                for meta in page.get("metadatas") or []:
                    if isinstance(user := (meta or {}).get("user"), str):
                        out.add(user)
                if len(page["ids"]) < batch:
                    break
        return sorted(out)

    async def heartbeat(self) -> None:
        """See :meth:`Store.heartbeat`."""
        client = self._require_client()
        await self._run(client.heartbeat)
