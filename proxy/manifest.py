"""``symbiotic_manifest.json``: the declaration every derivative of latent-memory must carry.

latent-memory's README asks every fork to include it, declaring adherence to the project's
principles, the purpose (research / commercial) and essential details. :class:`Manifest` is the
schema; the file sits at the repository root and is served at ``GET /symbiotic_manifest.json``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FILENAME = "symbiotic_manifest.json"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Lineage(_Strict):
    """A project this one derives from."""

    name: str
    author: str
    url: str = Field(pattern=r"^https://")
    license: str
    relation: str


class Adherence(_Strict):
    """The declaration of adherence the source documents require."""

    principles_and_guidelines: Literal[True]
    """Adherence to all principles and guidelines of latent-memory and its sequel."""
    signal_meaning_propagation: Literal[True]
    """Propagation of the correct signal-meaning of the protocol."""
    statement: str = Field(min_length=20)


class StoredData(_Strict):
    """One kind of data the software keeps about users."""

    what: str
    where: str
    retention: str
    deletion: str


class Manifest(_Strict):
    """Schema of ``symbiotic_manifest.json`` (``manifest_version`` 1)."""

    manifest_version: Literal[1]
    name: str
    version: str
    purpose: Literal["research", "commercial", "research and commercial"]
    description: str
    license: str
    repository_layout: str
    lineage: list[Lineage] = Field(min_length=1)
    adherence: Adherence
    data_stored_about_users: list[StoredData] = Field(min_length=1)
    data_leaves_the_machine: str
    telemetry: Literal[False]
    user_isolation: str


def manifest_path() -> Path | None:
    """The manifest file: the source tree's copy, else the installed data file; None if absent."""
    candidates = (
        Path(__file__).resolve().parent.parent / FILENAME,
        Path(sys.prefix) / "share" / "symbiotic-memory" / FILENAME,
    )
    return next((path for path in candidates if path.is_file()), None)
