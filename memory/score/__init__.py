"""Symbiosis scoring: the scorer and its trained classifiers (:mod:`memory.score.symbiosis`,
training data in :mod:`memory.score.symbiosis_train`) and the optional LLM judge
(:mod:`memory.score.judge`)."""
