"""Loopback helpers shared by the tests and the scripts that start servers as processes."""

from __future__ import annotations

import asyncio
import socket
import time

from aiohttp import web


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_listening(
    port: int, proc: asyncio.subprocess.Process | None = None, timeout_s: float = 60
) -> None:
    """Return once something accepts connections on ``port``; raise if ``proc`` exits first
    or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.returncode is not None:
            raise RuntimeError(f"the process meant to listen on {port} exited early")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"nothing listens on {port} after {timeout_s} s")


async def serve_app(app: web.Application) -> tuple[web.AppRunner, str]:
    """``app`` running in this event loop on a free loopback port: its runner (call
    ``cleanup()`` to stop it) and its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"
