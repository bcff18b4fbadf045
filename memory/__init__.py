"""The memory side of symbiotic-latent-memory: embedders, store, recall and write-back.

The proxy talks to this package only through :class:`memory.service.MemoryService`.
"""
