"""Write ``docs/ui.png``: the memory page ``/ui`` over a demo store, in headless Chromium.

The demo store is temporary and invented: Marta's facts from the sample exports
(``../shared/data/exports/README.md``; fictional, CC0), said over four months to the proxy in
front of the fake Ollama in ``testing/`` (upstream and embedder), then rated with explicit
feedback (``POST /memory/feedback``, through the page's own API) so the picture shows
attractors and repulsors. Needs Debian's chromium (``scripts/setup-browser``) and Playwright.

    .venv/bin/python scripts/screenshot_ui.py [--out docs/ui.png] [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

from memory.types import Exchange, Scope
from proxy.app import create_app
from proxy.config import Config
from proxy.state import MEMORY
from testing.fake_upstream import FakeOllama

USER = "marta"
DAY = 86400.0
FACTS: list[tuple[float, str, str, float | None]] = [
    (118, "I live in Porto, Portugal, near the Ribeira.", "Noted: you live in Porto.", 1.0),
    (111, "I work as a hydrologist at Porto's municipal water utility.", "Interesting!", 0.9),
    (97, "My retired racing greyhound is called Biscoito.", "Biscoito is a lovely name.", 1.0),
    (90, "We also have a cat named Pimenta.", "Pimenta and Biscoito, got it.", None),
    (83, "Careful: I'm allergic to hazelnuts.", "I'll leave hazelnuts out.", 1.0),
    (76, "I'm allergic to penicillin too.", "Good to know for health questions.", 0.8),
    (64, "Suggest a salmon recipe?", "Here is a grilled salmon recipe.", 0.0),
    (57, "I'm vegetarian, no fish please.", "Vegetarian recipes only, then.", 1.0),
    (49, "I take Portuguese lessons every Tuesday evening.", "Boa sorte!", None),
    (40, "Dentist appointment on 29 April 2025 at 09:30.", "Reminder noted.", 0.6),
    (31, "Training for the Porto half marathon on 18 May 2025.", "Here is a plan.", 0.9),
    (22, "Maybe I'll go to Iceland instead?", "Iceland is cold in spring.", 0.1),
    (15, "My sister Ingrid gets married in Uppsala on 14 June 2025.", "Congratulations!", 0.7),
    (6, "Hiking in Madeira from 3 to 10 September 2025.", "The levadas are great.", None),
    (1, "Which trails fit a greyhound?", "Short, shaded ones suit Biscoito.", 0.2),
]
"""(days ago, user turn, reply, feedback in [0, 1] or None): the demo conversation."""


async def seed(app: web.Application) -> None:
    """Write :data:`FACTS` as ``USER``'s memories and give the rated ones their feedback."""
    service = app[MEMORY]
    now = time.time()
    for days, said, reply, rating in FACTS:
        started = now - days * DAY
        exchange = Exchange(
            Scope(USER), "/api/chat", "llama3.2", said, reply,
            started_at=started, finished_at=started + 2.0,
        )  # fmt: skip
        mid = await service.write(exchange)
        if rating is not None:
            await service.feedback(USER, mid, rating)
    await service.metabolize([USER])  # a sleep cycle: phases, quadrants, consolidation


async def shoot(url: str, out: Path, chromium: str) -> None:
    """Screenshot ``url`` (1280 px wide, the whole page) to ``out`` once its rows are shown."""
    from playwright.async_api import async_playwright

    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=chromium, headless=True, args=args)
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        await page.goto(url)
        await page.wait_for_selector("#memories tbody tr")
        await page.screenshot(path=str(out), full_page=True)
        await browser.close()


async def main(out: Path, chromium: str) -> None:
    fake = FakeOllama()
    await fake.start()
    with tempfile.TemporaryDirectory() as tmp:
        config = Config.model_validate(
            {"upstream": {"url": fake.url}, "store": {"path": str(Path(tmp) / "chroma")}}
        )
        runner = web.AppRunner(create_app(config))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        try:
            await seed(runner.app)
            port = runner.addresses[0][1]
            await shoot(f"http://127.0.0.1:{port}/ui?user={USER}", out, chromium)
        finally:
            await runner.cleanup()
            await fake.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/ui.png"))
    parser.add_argument("--chromium", default=os.environ.get("SLM_CHROMIUM", "/usr/bin/chromium"))
    args = parser.parse_args()
    if not Path(args.chromium).exists():
        sys.exit(f"symbiotic-memory: {args.chromium} not found: run scripts/setup-browser")
    asyncio.run(main(args.out, args.chromium))
    print(f"wrote {args.out}")
