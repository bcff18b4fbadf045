"""Importers: other tools' chat histories and memory files into a user's memories.

:func:`detect` names the format of a path, :func:`read` parses it without touching the store:
chat histories and latent-memory summaries become :class:`memory.ingest.Message` lists (then
written through the ingest path: outbox, writer, scoring), the proxy's own JSONL export a
:class:`~memory.importers.canonical.Canonical` restore. Pickle is refused before the file is
read as anything but its first bytes: unpickling runs whatever code the file names.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memory.errors import ImportFormatError
from memory.importers.canonical import Canonical, is_canonical, read_canonical
from memory.importers.chats import read_chatgpt, read_openwebui
from memory.importers.latent import read_csv_pair, read_hdf5, read_npy_pair
from memory.ingest import Message, read_messages

FORMATS = (
    "auto",
    "chatgpt",
    "openwebui",
    "jsonl",
    "messages",
    "latent-csv",
    "latent-npy",
    "latent-hdf5",
)
"""``--format`` values: ``jsonl`` is ``memories export`` output, ``messages`` the ``ingest``
format; ``auto`` picks one by :func:`detect`."""
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib"})
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
PICKLE_REFUSED = (
    "is a Python pickle; it is refused because unpickling runs any code the file names. "
    "Export the same data as CSV + JSON, .npy + JSON or HDF5 instead"
)

UNKNOWN = (
    "not a format this imports (ChatGPT conversations.json or its zip, Open WebUI chat "
    "export, memories export JSONL, ingest messages, latent-memory CSV/.npy + metadata.json, "
    "HDF5); name one with --format"
)


@dataclass
class Parsed:
    """What :func:`read` found: messages (chat formats) or a canonical restore, and problems."""

    format: str
    messages: list[Message] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    canonical: Canonical | None = None


def is_pickle(head: bytes) -> bool:
    """Whether the first bytes are a pickle stream of protocol 2 or later (``PROTO`` opcode).

    >>> is_pickle(b"\\x80\\x04\\x95"), is_pickle(b'[{"a"')
    (True, False)
    """
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def refuse_pickle(path: Path) -> None:
    """Raise ImportFormatError if ``path`` (a file, or any file of a folder) is a pickle, by
    name or by its first two bytes; nothing else of it is read."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for file in files:
        with file.open("rb") as handle:
            head = handle.read(2)
        if file.suffix.lower() in PICKLE_SUFFIXES or is_pickle(head):
            raise ImportFormatError(f"{file} {PICKLE_REFUSED}")


def detect(path: Path) -> str:
    """The format of ``path`` (a file, or the folder of a two-file latent-memory format).

    Raises:
        ImportFormatError: a pickle, or nothing recognisable.
    """
    refuse_pickle(path)
    if path.is_dir():
        for name, fmt in (("embeddings.csv", "latent-csv"), ("embeddings.npy", "latent-npy")):
            if (path / name).is_file() and (path / "metadata.json").is_file():
                return fmt
        found = sorted(path.glob("*.h5")) + sorted(path.glob("*.hdf5"))
        if len(found) == 1:
            return "latent-hdf5"
        raise ImportFormatError(
            f"{path}: a folder must hold embeddings.csv or embeddings.npy with metadata.json, "
            "or one .h5 file"
        )
    with path.open("rb") as handle:
        head = handle.read(len(HDF5_MAGIC))
    if head == HDF5_MAGIC:
        return "latent-hdf5"
    if path.suffix.lower() in (".csv", ".npy"):
        return {".csv": "latent-csv", ".npy": "latent-npy"}[path.suffix.lower()]
    if zipfile.is_zipfile(path):
        return "chatgpt"
    return detect_json(path)


def detect_json(path: Path) -> str:
    """``chatgpt``, ``openwebui``, ``jsonl`` or ``messages`` from a JSON or JSONL file's first
    record."""
    first = _first_record(path)
    if isinstance(first, dict) and "mapping" in first:
        return "chatgpt"
    if isinstance(first, dict) and ("chat" in first or "history" in first):
        return "openwebui"
    if is_canonical(first):
        return "jsonl"
    if isinstance(first, dict) and "role" in first and "content" in first:
        return "messages"
    raise ImportFormatError(f"{path}: {UNKNOWN}")


def _first_record(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportFormatError(f"{path}: cannot read it as UTF-8 text: {exc}") from exc
    if not text.strip():
        raise ImportFormatError(f"{path}: the file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        line = next((raw for raw in text.splitlines() if raw.strip()), "")
        try:
            return json.loads(line)
        except json.JSONDecodeError as exc:
            raise ImportFormatError(f"{path}: neither JSON nor JSONL, so {UNKNOWN}") from exc
    return data[0] if isinstance(data, list) and data else data


def read(path: Path, fmt: str, user: str, now: float) -> Parsed:
    """Parse ``path`` as ``fmt`` (``auto``: :func:`detect`) for ``user``; ``now`` (Unix s) is
    the time of records without one.

    Raises:
        ImportFormatError: a pickle, a file that is not ``fmt``, or one that cannot be read.
    """
    refuse_pickle(path)
    fmt = detect(path) if fmt == "auto" else fmt
    if fmt in ("latent-csv", "latent-npy"):
        folder = path if path.is_dir() else path.parent
        reader = read_csv_pair if fmt == "latent-csv" else read_npy_pair
        return Parsed(fmt, *reader(folder, now))
    if fmt == "latent-hdf5":
        file = path if path.is_file() else next(iter(sorted(path.glob("*.h*5"))), path)
        return Parsed(fmt, *read_hdf5(file, now))
    text = _text(path)
    if fmt == "jsonl":
        canonical = read_canonical(text.splitlines(), user)
        return Parsed(fmt, canonical=canonical, problems=canonical.problems)
    if fmt == "messages":
        return Parsed(fmt, *read_messages(text.splitlines(keepends=True), now))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ImportFormatError(f"{path}: invalid JSON: {exc}") from exc
    chats = read_chatgpt if fmt == "chatgpt" else read_openwebui
    return Parsed(fmt, *chats(data, str(path)))


def _conversations(archive: zipfile.ZipFile) -> str:
    """The member name of the zip's ``conversations.json``: the shallowest one.

    Raises:
        ImportFormatError: the zip holds none.
    """
    names = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == "conversations.json"]
    if not names:
        raise ImportFormatError(f"{archive.filename}: the zip holds no conversations.json")
    return min(names, key=lambda n: (n.count("/"), n))


def _text(path: Path) -> str:
    """The file's text; for a ChatGPT export zip, its ``conversations.json`` (at the top, or
    in one folder when the export was unpacked and zipped again)."""
    try:
        if path.is_file() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return archive.read(_conversations(archive)).decode("utf-8")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
        raise ImportFormatError(f"{path}: cannot read it: {exc}") from exc
