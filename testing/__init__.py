"""Test doubles and helpers shared by the test suite and the benchmark scripts.

Not part of the installed package: a fake Ollama/OpenAI upstream over a real socket
(:mod:`testing.fake_upstream`), a recording tap, a llama.cpp server starter and port helpers.
"""
