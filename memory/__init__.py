"""The memory side of symbiotic-latent-memory: embedders, store, recall and write-back.

The proxy talks to this package only through :class:`memory.service.MemoryService`.
"""

SCHEMA_VERSION = 3
"""Version of the records this package writes (Chroma metadata, outbox rows). Bump with a
migration.

- 1: first release.
- 2: memories carry ``speaker``, ``strength``, ``access_count``, ``last_access_at``,
  ``valence`` and ``provenance``; outbox exchanges carry ``speaker``. Every added field is
  optional and read with its default, so version-1 records need no rewrite: readers accept
  both (:data:`READABLE_VERSIONS`).
- 3: memories carry the symbiosis score (``symbiosis``, ``symbiosis_signals``,
  ``symbiosis_definition``, ``symbiosis_provisional``, ``polarity``), ``importance``,
  ``reinforcements``, ``last_reinforced_at``, ``phase``, ``dormant``, and after a sleep cycle
  ``quadrant``, ``uses_at_cycle`` and possibly ``consolidated_into``. Readers default every
  one of them (an unscored memory counts as a neutral attractor); the sleep cycle
  (``symbiotic-memory metabolize``) migrates older records by scoring them and stamping
  version 3. The raw archive and the score log are new in this version.
"""
READABLE_VERSIONS = frozenset({1, 2, 3})
"""Record versions this package reads."""
