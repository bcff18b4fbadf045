"""The storage formats of the original latent-memory (github.com/ronniross/latent-memory, MIT):
a matrix of conversation embeddings (one row per conversation) and a metadata list
``[{"conversation_id", "summary", "timestamp"}]`` whose entry i describes row i, as

- ``embeddings.csv`` (``pandas.DataFrame(emb).to_csv(index=False)``: a header row of column
  numbers, then one row of floats per conversation) + ``metadata.json``;
- ``embeddings.npy`` (``np.save``; read with ``allow_pickle=False``) + ``metadata.json``;
- one HDF5 file with datasets ``embeddings`` and ``metadata`` (compound: ``conversation_id``,
  ``summary``, ``timestamp`` as UTF-8 bytes), read with h5py (the optional ``hdf5`` extra).

Each summary becomes one memory of the user, in its own session, at its timestamp. The vectors
are checked (one finite row per metadata entry) but not stored: the summary is embedded again
by the configured embedder, because a store holds one model's vectors and upstream's are
all-MiniLM-L6-v2's, whatever the proxy runs.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from memory.errors import ImportFormatError
from memory.ingest import Message, parse_timestamp

LATENT_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
"""How upstream writes timestamps (``"2025-04-1 10:00:00"``: strptime accepts the unpadded day)."""


def latent_time(value: Any) -> float:
    """Unix seconds of a latent-memory timestamp (naive = UTC), else of ISO 8601 or a number.

    >>> latent_time("2025-04-1 10:00:00")
    1743501600.0

    Raises:
        ValueError: none of those.
    """
    if isinstance(value, str):
        try:
            return datetime.strptime(value, LATENT_TIME_FORMAT).replace(tzinfo=UTC).timestamp()
        except ValueError:
            pass
    return parse_timestamp(value)


def summaries(
    entries: list[Any], vectors: np.ndarray, source: str, now: float
) -> tuple[list[Message], list[str]]:
    """One message per metadata entry with a summary; raises ImportFormatError when the
    vectors do not match the entries (the pair of files is not one export)."""
    if vectors.ndim != 2 or vectors.shape[0] != len(entries):
        raise ImportFormatError(
            f"{source}: {vectors.shape[0] if vectors.ndim else 0} embedding rows for "
            f"{len(entries)} metadata entries; row i must belong to entry i"
        )
    if not np.isfinite(vectors).all():
        raise ImportFormatError(f"{source}: the embeddings hold NaN or infinite values")
    messages: list[Message] = []
    problems: list[str] = []
    for number, entry in enumerate(entries, start=1):
        summary = entry.get("summary") if isinstance(entry, dict) else None
        if not isinstance(summary, str) or not summary.strip():
            problems.append(f"entry {number}: no 'summary'")
            continue
        try:
            stamp = latent_time(entry["timestamp"]) if entry.get("timestamp") else now
        except ValueError:
            problems.append(f"entry {number}: unreadable timestamp {entry['timestamp']!r}; now")
            stamp = now
        session = str(entry.get("conversation_id") or f"latent-{number}")
        messages.append(Message(number, "user", summary.strip(), stamp, session))
    return messages, problems


def read_metadata(path: Path) -> list[Any]:
    """The metadata list of ``metadata.json``; raises ImportFormatError."""
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ImportFormatError(f"{path}: cannot read the metadata: {exc}") from exc
    if not isinstance(entries, list):
        raise ImportFormatError(f"{path}: expected a JSON list of metadata entries")
    return entries


def read_csv_pair(folder: Path, now: float) -> tuple[list[Message], list[str]]:
    """``embeddings.csv`` + ``metadata.json`` in ``folder``."""
    entries = read_metadata(folder / "metadata.json")
    try:
        vectors = np.loadtxt(folder / "embeddings.csv", delimiter=",", skiprows=1, ndmin=2)
    except (OSError, ValueError) as exc:
        name = folder / "embeddings.csv"
        raise ImportFormatError(f"{name}: not a matrix of floats: {exc}") from exc
    return summaries(entries, vectors, str(folder), now)


def read_npy_pair(folder: Path, now: float) -> tuple[list[Message], list[str]]:
    """``embeddings.npy`` + ``metadata.json`` in ``folder``; an object array (which only
    unpickling could read) is refused."""
    entries = read_metadata(folder / "metadata.json")
    try:
        vectors = np.load(folder / "embeddings.npy", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ImportFormatError(
            f"{folder / 'embeddings.npy'}: not a plain NumPy array (pickled object arrays "
            f"are refused: unpickling can run code): {exc}"
        ) from exc
    return summaries(entries, np.asarray(vectors, dtype=np.float64), str(folder), now)


def read_hdf5(path: Path, now: float) -> tuple[list[Message], list[str]]:
    """An HDF5 file with ``embeddings`` and ``metadata`` datasets (needs h5py)."""
    try:
        import h5py  # optional extra, imported only for this format
    except ImportError as exc:
        raise ImportFormatError(
            f"{path}: reading HDF5 needs h5py: pip install 'symbiotic-latent-memory[hdf5]'"
        ) from exc
    try:
        with h5py.File(path, "r") as handle:
            vectors = np.asarray(handle["embeddings"][()], dtype=np.float64)
            rows = handle["metadata"][()]
            names = rows.dtype.names or ()
            entries = [{name: _text(row[name]) for name in names} for row in rows]
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise ImportFormatError(f"{path}: not a latent-memory HDF5 file: {exc}") from exc
    return summaries(entries, vectors, str(path), now)


def _text(value: Any) -> Any:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value
