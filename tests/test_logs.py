"""``log_format: json``: one JSON object per line, carrying the exchange id of the response."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from proxy.chat import EXCHANGE_HEADER
from proxy.config import load_config
from proxy.errors import ConfigError
from proxy.logs import JsonFormatter, handler_for
from testing.fake_upstream import FakeOllama
from testing.net import free_port, wait_listening
from tests.conftest import RunningProxy

CHAT = {"model": "m", "messages": [{"role": "user", "content": "tell me a story"}]}


def test_log_format_is_a_config_key_and_an_environment_variable(tmp_path: Path):
    assert load_config(None, env={}).log_format == "text"
    assert load_config(None, env={"SYMBIOTIC_MEMORY__LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError, match="SYMBIOTIC_MEMORY__LOG_FORMAT: invalid value"):
        load_config(None, env={"SYMBIOTIC_MEMORY__LOG_FORMAT": "xml"})


def test_json_lines_have_the_fields_and_a_traceback():
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("proxy.x", logging.ERROR, __file__, 1, "a %s", ("b",), None)
        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "ERROR" and line["logger"] == "proxy.x" and line["message"] == "a b"
    assert line["ts"].endswith("Z") and len(line["ts"]) == len("2026-12-04T03:10:00.123Z")
    assert "ValueError: boom" in line["exc"] and "exchange_id" not in line


async def read_broken(url: str, **headers: str) -> str:
    """POST a streamed chat the fake cuts short; the response's exchange id."""
    async with aiohttp.ClientSession(headers={"X-Memory-User": "alice", **headers}) as http:
        async with http.post(f"{url}/api/chat", json=CHAT) as r:
            assert r.status == 200
            with contextlib.suppress(aiohttp.ClientPayloadError):
                await r.read()
            return r.headers[EXCHANGE_HEADER]


async def test_a_line_logged_in_a_request_carries_its_exchange_id(
    proxy: RunningProxy, fake: FakeOllama
):
    stream = io.StringIO()
    handler = handler_for("json", stream)
    logging.getLogger("proxy").addHandler(handler)
    try:
        fake.fault = "disconnect"  # the proxy warns: upstream failed mid-stream
        exchange_id = await read_broken(proxy.url)
        logging.getLogger("proxy.test").warning("outside any request")
    finally:
        logging.getLogger("proxy").removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    mid_stream = [line for line in lines if "mid-stream" in line["message"]]
    assert len(mid_stream) == 1 and mid_stream[0]["logger"] == "proxy.chat"
    assert mid_stream[0]["exchange_id"] == exchange_id
    assert mid_stream[0]["route"] == "/api/chat" and "alice" not in json.dumps(mid_stream[0])
    assert "exchange_id" not in lines[-1] and lines[-1]["message"] == "outside any request"


async def test_serve_writes_json_lines(fake: FakeOllama, tmp_path: Path):
    port = free_port()
    config = tmp_path / "proxy.yaml"
    config.write_text(
        f"listen:\n  port: {port}\nupstream:\n  url: {fake.url}\n"
        f"store:\n  path: {tmp_path / 'store'}\nlog_level: INFO\n"
    )
    exe = Path(sys.executable).parent / "symbiotic-memory"
    env = {**os.environ, "SYMBIOTIC_MEMORY__LOG_FORMAT": "json"}
    proc = await asyncio.create_subprocess_exec(
        *(str(exe), "serve", "--config", str(config)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        await wait_listening(port, proc)
        fake.fault = "disconnect"
        exchange_id = await read_broken(f"http://127.0.0.1:{port}")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    logged = [line for line in err.decode().splitlines() if line.startswith("{")]
    lines = [json.loads(line) for line in logged]
    assert any(line["message"].startswith("memory: embedder") for line in lines)
    assert [line["exchange_id"] for line in lines if "mid-stream" in line["message"]] == [
        exchange_id
    ]
