"""The memory package's exception types. Library errors are translated into these with ``from``."""


class MemoryLayerError(Exception):
    """Base class for every error the memory package raises on purpose."""


class EmbedderError(MemoryLayerError):
    """The embedder could not produce vectors (unreachable, bad reply, wrong shape)."""


class StoreError(MemoryLayerError):
    """The vector store failed (unreachable, corrupt, refused a write)."""


class DimensionMismatchError(MemoryLayerError):
    """The embedder's vector size differs from what a stored collection holds.

    This is a configuration error: mixing dimensions would make every stored memory unrecallable.
    """

    def __init__(self, embedder: str, embedder_dim: int, collection: str, stored_dim: int) -> None:
        super().__init__(
            f"embedder {embedder} produces {embedder_dim}-dimensional vectors but collection "
            f"{collection!r} holds {stored_dim}-dimensional vectors; use the embedder the store "
            f"was built with, or point store.path (or store.collection_prefix) at a new store"
        )
        self.embedder_dim = embedder_dim
        self.stored_dim = stored_dim


class OutboxBusyError(MemoryLayerError):
    """Another process owns the outbox (two proxies must not share one)."""


class BreakerOpenError(MemoryLayerError):
    """A dependency's circuit breaker is open: the call was not attempted."""


class ImportFormatError(MemoryLayerError):
    """An import file cannot be read as the format asked for (or detected); the message names
    the file and what is wrong, in one line."""
