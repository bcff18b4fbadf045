"""The proxy side of symbiotic-latent-memory: wire models, routes, relay and the app factory."""

__version__ = "0.1.0"
