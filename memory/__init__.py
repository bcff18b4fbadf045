"""The memory side of symbiotic-latent-memory: embedders, store, recall and write-back.

The proxy talks to this package only through :class:`memory.service.MemoryService`.
"""

SCHEMA_VERSION = 2
"""Version of the records this package writes (Chroma metadata, outbox rows). Bump with a
migration.

- 1: first release.
- 2: memories carry ``speaker``, ``strength``, ``access_count``, ``last_access_at``,
  ``valence`` and ``provenance``; outbox exchanges carry ``speaker``. Every added field is
  optional and read with its default, so version-1 records need no rewrite: readers accept
  both (:data:`READABLE_VERSIONS`).
"""
READABLE_VERSIONS = frozenset({1, 2})
"""Record versions this package reads."""
