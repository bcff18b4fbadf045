"""Persistence: the Chroma store (:mod:`memory.store.chroma`, the :class:`Store` protocol in
:mod:`memory.store.protocol`, its sharded layout in :mod:`memory.store.layout` and the migration
of older layouts in :mod:`memory.store.migrate`), the write-ahead outbox
(:mod:`memory.store.outbox`), the raw-exchange archive (:mod:`memory.store.archive`) and the
append-only score log (:mod:`memory.store.score_log`)."""
