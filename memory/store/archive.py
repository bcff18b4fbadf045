"""The raw archive: every exchange as it happened, good or bad (the "fossil record").

Append-only SQLite (WAL): an exchange is added under its content address (``Exchange.id``,
SHA-256 of scope, texts and start time) before it is scored, gated or stored as a memory, so
what was said is never lost when its memory is repelled, consolidated or decays. There is no
update; the only removal is :meth:`RawArchive.delete`, which the admin API and CLI call on the
user's request. Each row carries ``schema_version``.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from memory.errors import StoreError
from memory.record import SCHEMA_VERSION
from memory.store.outbox import exchange_from_json, exchange_to_json
from memory.types import Exchange

SCHEMA = """
CREATE TABLE IF NOT EXISTS archive (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    archived_at REAL NOT NULL,
    schema_version INTEGER NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS archive_user ON archive (user);
"""


class RawArchive:
    """Append-only archive of exchanges in one SQLite file; all methods raise StoreError."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        """Create or open the file."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"raw archive at {self.path}: {exc}") from exc
        self._db = db

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise StoreError("raw archive is not open")
        return self._db

    def add(self, exchanges: list[Exchange]) -> int:
        """Archive ``exchanges`` (one transaction); one already archived is left as it was.
        Returns how many were new."""
        rows = [
            (e.id, e.scope.user, time.time(), SCHEMA_VERSION, exchange_to_json(e))
            for e in exchanges
        ]
        try:
            db = self._conn()
            before = db.total_changes
            with db:
                db.executemany("INSERT OR IGNORE INTO archive VALUES (?, ?, ?, ?, ?)", rows)
            return db.total_changes - before
        except sqlite3.Error as exc:
            raise StoreError(f"raw archive: {exc}") from exc

    def get(self, exchange_id: str) -> Exchange | None:
        """One archived exchange by id, or None."""
        try:
            row = (
                self._conn()
                .execute("SELECT payload FROM archive WHERE id = ?", (exchange_id,))
                .fetchone()
            )
        except sqlite3.Error as exc:
            raise StoreError(f"raw archive: {exc}") from exc
        return None if row is None else exchange_from_json(row[0])

    def for_user(self, user: str) -> list[dict[str, Any]]:
        """``{"id", "archived_at", "exchange"}`` for every archived exchange of ``user``, in
        archive order."""
        try:
            rows = (
                self._conn()
                .execute(
                    "SELECT id, archived_at, payload FROM archive WHERE user = ? ORDER BY rowid",
                    (user,),
                )
                .fetchall()
            )
        except sqlite3.Error as exc:
            raise StoreError(f"raw archive: {exc}") from exc
        return [
            {"id": i, "archived_at": at, "exchange": exchange_from_json(p)} for i, at, p in rows
        ]

    def count(self) -> int:
        """Archived exchanges."""
        try:
            return int(self._conn().execute("SELECT COUNT(*) FROM archive").fetchone()[0])
        except sqlite3.Error as exc:
            raise StoreError(f"raw archive: {exc}") from exc

    def delete(self, user: str, exchange_ids: list[str]) -> int:
        """Hard-delete archived exchanges of ``user`` (only on the user's request); returns how
        many were removed."""
        try:
            db = self._conn()
            before = db.total_changes
            with db:
                db.executemany(
                    "DELETE FROM archive WHERE user = ? AND id = ?",
                    [(user, i) for i in exchange_ids],
                )
            return db.total_changes - before
        except sqlite3.Error as exc:
            raise StoreError(f"raw archive: {exc}") from exc
