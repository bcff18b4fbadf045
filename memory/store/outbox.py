"""The outbox: a durable queue (SQLite in WAL mode) between the response path and the writer.

An exchange is appended before the final chunk of its answer is written to the client, so
whatever a client saw answered survives a crash of the proxy; the writer deletes a row only after
the memory is in the store, and rows left by a crash are replayed on the next start. One process
owns an outbox at a time (an advisory ``flock`` on ``<path>.lock``).

``synchronous=NORMAL`` in WAL mode makes each append durable against a process crash (not against
power loss) at a fraction of the cost of ``FULL`` (SQLite docs, "Write-Ahead Logging").
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from memory.errors import OutboxBusyError, StoreError
from memory.record import READABLE_VERSIONS, SCHEMA_VERSION
from memory.types import Exchange, Scope

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    payload TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    enqueued_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_user ON outbox (user);
"""


@dataclass(frozen=True)
class OutboxRow:
    """One queued exchange; ``seq`` is its position in the outbox."""

    seq: int
    exchange: Exchange
    attempts: int
    last_error: str | None


def sql_text(text: str) -> str:
    """``text`` as SQLite can store it (UTF-8): every lone surrogate (a ``\\ud800`` from a JSON
    escape, or a non-UTF-8 header byte decoded with ``surrogateescape``) becomes U+FFFD, the
    rest is kept as it was; valid text is returned unchanged.

    >>> sql_text("ok \\ud800 \\U0001f600")
    'ok \\ufffd \\U0001f600'
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # UTF-16 with surrogatepass re-pairs split surrogate pairs; "replace" marks lone ones
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def exchange_to_json(exchange: Exchange) -> str:
    """Serialise an exchange (with ``schema_version``) for the outbox; text SQLite cannot store
    (lone surrogates) is kept with U+FFFD in their place (:func:`sql_text`), never refused."""
    data = {"schema_version": SCHEMA_VERSION, **asdict(exchange)}
    return sql_text(json.dumps(data, ensure_ascii=False))


def exchange_from_json(raw: str) -> Exchange:
    """Inverse of :func:`exchange_to_json`; raises ValueError on an unknown schema version."""
    data: dict[str, Any] = json.loads(raw)
    version = data.pop("schema_version", None)
    if version not in READABLE_VERSIONS:
        raise ValueError(
            f"outbox record has schema_version {version}, this version reads "
            f"{sorted(READABLE_VERSIONS)}"
        )
    data["scope"] = Scope(**data["scope"])
    return Exchange(**data)


class Outbox:
    """The durable queue. All methods are synchronous and take well under a millisecond."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None

    def open(self, exclusive: bool = True) -> None:
        """Open (creating) the database; with ``exclusive``, take the owner lock.

        Raises:
            OutboxBusyError: another process owns this outbox.
            StoreError: the file cannot be opened.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if exclusive:
                self._take_lock()
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(f"outbox {self.path}: {exc}") from exc
        except OSError as exc:
            self.close()
            raise StoreError(f"outbox {self.path}: {exc.strerror or exc}") from exc

    def _take_lock(self) -> None:
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise OutboxBusyError(
                f"another symbiotic-memory process owns the outbox {self.path}; give each "
                f"replica its own memory.outbox_path"
            ) from exc
        self._lock_fd = fd

    def close(self) -> None:
        """Close the database and release the owner lock."""
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection; raises StoreError when closed."""
        if self._db is None:
            raise StoreError(f"outbox {self.path} is not open")
        return self._db

    def append(self, exchange: Exchange) -> int:
        """Durably queue ``exchange``; returns its ``seq``.

        Raises:
            StoreError: SQLite could not take it ("database or disk is full", a disk I/O
                error, a read-only file, ...); the exchange is not queued.
        """
        now = time.time()
        try:
            cursor = self.db.execute(
                "INSERT INTO outbox (user, payload, schema_version, enqueued_at, next_attempt_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (
                    sql_text(exchange.scope.user),
                    exchange_to_json(exchange),
                    SCHEMA_VERSION,
                    now,
                    now,
                ),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"outbox append failed: {exc}") from exc
        return int(cursor.lastrowid or 0)

    def due(self, now: float, limit: int = 32) -> list[OutboxRow]:
        """Rows whose next attempt is due, oldest first."""
        rows = self.db.execute(
            "SELECT seq, payload, attempts, last_error FROM outbox WHERE next_attempt_at <= ?"
            " ORDER BY seq LIMIT ?",
            (now, limit),
        ).fetchall()
        return [OutboxRow(s, exchange_from_json(p), a, e) for s, p, a, e in rows]

    def next_due_at(self) -> float | None:
        """When the earliest row becomes due (Unix seconds), or None when empty."""
        row = self.db.execute("SELECT MIN(next_attempt_at) FROM outbox").fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def done(self, seq: int) -> None:
        """Remove a row whose memory is safely in the store."""
        self.db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def drop(self, user: str, exchange_ids: set[str]) -> int:
        """Remove the queued rows of ``user`` whose exchange is in ``exchange_ids`` (erasure
        before they were written); returns how many."""
        rows = [row.seq for row in self.for_user(user) if row.exchange.id in exchange_ids]
        for seq in rows:
            self.done(seq)
        return len(rows)

    def retry_later(self, seq: int, error: str, delay_s: float) -> None:
        """Record a failed attempt and when to try again."""
        self.db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?"
            " WHERE seq = ?",
            (error[:2000], time.time() + delay_s, seq),
        )

    def retry_all_now(self) -> None:
        """Make every row due at once (used by ``flush`` and on start-up)."""
        self.db.execute("UPDATE outbox SET next_attempt_at = ?", (time.time(),))

    def count(self) -> int:
        """Rows waiting."""
        return int(self.db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def count_due(self, now: float) -> int:
        """Rows whose next attempt is due at ``now`` (not waiting out a back-off)."""
        sql = "SELECT COUNT(*) FROM outbox WHERE next_attempt_at <= ?"
        return int(self.db.execute(sql, (now,)).fetchone()[0])

    def for_user(self, user: str) -> list[OutboxRow]:
        """Every waiting row of ``user``, oldest first (for export)."""
        rows = self.db.execute(
            "SELECT seq, payload, attempts, last_error FROM outbox WHERE user = ? ORDER BY seq",
            (sql_text(user),),
        ).fetchall()
        return [OutboxRow(s, exchange_from_json(p), a, e) for s, p, a, e in rows]
