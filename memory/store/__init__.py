"""Persistence: the Chroma store (:mod:`memory.store.chroma`), the write-ahead outbox
(:mod:`memory.store.outbox`), the raw-exchange archive (:mod:`memory.store.archive`) and the
append-only score log (:mod:`memory.store.score_log`)."""
