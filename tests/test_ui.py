"""The memory page ``/ui`` in a real browser (Debian's chromium driven by Playwright), and the
``/memory/list`` endpoint and HTTP Basic sign-in it relies on.

Chromium missing is a failure, never a skip: ``scripts/setup-browser`` installs it.
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from proxy.auth import token_hash
from proxy.ui import CSP
from tests.conftest import RunningProxy, StartProxy

CHROMIUM = os.environ.get("SLM_CHROMIUM", "/usr/bin/chromium")
XSS = "<img src=x onerror=\"document.title='pwned'\"><script>alert(1)</script>"
TOKENS = {"alice": "alice-token-0123456789", "bob": "bob-token-9876543210"}


def chromium() -> str:
    """The browser binary; fails the test (in CI and locally) when it or Playwright is absent."""
    path = shutil.which(CHROMIUM) or (CHROMIUM if Path(CHROMIUM).is_file() else None)
    if path is None:
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: run scripts/setup-browser (as root it runs "
            "apt-get install -y chromium) or set SLM_CHROMIUM to a Chromium binary"
        )
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.fail("Playwright is not installed: pip install -e '.[dev]'")
    return path


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Chromium (the Debian binary: Playwright's own download needs the network)."""
    path = chromium()
    from playwright.async_api import async_playwright

    args = ["--no-sandbox"] if os.geteuid() == 0 else []  # the sandbox refuses to run as root
    async with async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=path, headless=True, args=args)
        yield launched
        await launched.close()


async def remember(proxy: RunningProxy, user: str, text: str, **headers: str) -> str:
    """Say ``text`` as ``user`` through the proxy; returns the id of the memory it became."""
    client = proxy.ollama(None if headers else user, **headers)
    await client.chat(model="llama3.2", messages=[{"role": "user", "content": text}])
    await proxy.flush()
    (hit,) = [h for h in await proxy.memory.store.all(user) if text in h.text]
    return hit.id


def basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def api(
    proxy: RunningProxy, method: str, path: str, headers: dict[str, str] | None = None, **params
) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        async with http.request(method, proxy.url + path, params=params, headers=headers) as r:
            return r.status, await r.json()


def expect(locator: Any) -> Any:
    """Playwright's ``expect`` (its waits run outside the page, so the page's CSP, which
    forbids evaluating strings, holds in every test)."""
    from playwright.async_api import expect as playwright_expect

    return playwright_expect(locator)


async def rows(page: Any) -> list[str]:
    return await page.locator("#memories tbody td.text").all_inner_texts()


async def test_page_lists_searches_forgets_and_takes_feedback(proxy: RunningProxy, browser):
    dog = await remember(proxy, "alice", "my retired greyhound is called Biscoito")
    cat = await remember(proxy, "alice", "my cat Pimenta sleeps on the radiator")
    await remember(proxy, "alice", "I am allergic to hazelnuts")
    await remember(proxy, "bob", "bob keeps bees in Uppsala")
    page = await browser.new_page()
    problems: list[str] = []  # script errors and CSP violations: the page must cause none
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    response = await page.goto(f"{proxy.url}/ui?user=alice")
    assert response.status == 200 and response.headers["content-security-policy"] == CSP
    await page.wait_for_selector("#memories tbody tr")
    texts = await rows(page)
    assert len(texts) == 3 and not any("bees" in t for t in texts)
    assert any("Biscoito" in t for t in texts) and any("hazelnuts" in t for t in texts)
    assert await page.locator("#chart circle").count() == 3  # the picture: one dot each
    assert "3 of 3 memories of alice" in await page.inner_text("#status")

    await page.fill("#q", "greyhound Biscoito")
    await page.click("#search-form button[type=submit]")
    await expect(page.locator("#status")).to_contain_text("nearest")
    assert "Biscoito" in (await rows(page))[0]
    await page.click("#clear")
    await expect(page.locator("#memories tbody tr")).to_have_count(3)

    forget = page.locator(f"tr[data-id='{cat}'] button.forget")
    await forget.click()
    assert await forget.inner_text() == "Erase?"  # armed, nothing erased yet
    assert (await api(proxy, "GET", f"/memory/{cat}", user="alice"))[0] == 200
    await forget.click()
    await page.wait_for_selector(f"tr[data-id='{cat}']", state="detached")
    assert (await api(proxy, "GET", f"/memory/{cat}", user="alice"))[0] == 404
    assert len(await rows(page)) == 2

    score_cell = page.locator(f"tr[data-id='{dog}'] td.symbiosis")
    before = await score_cell.inner_text()
    await page.click(f"tr[data-id='{dog}'] button.feedback.down")
    await expect(score_cell).not_to_have_text(before)
    status, listed = await api(proxy, "GET", "/memory/list", user="alice")
    (row,) = [m for m in listed["memories"] if m["id"] == dog]
    assert status == 200 and row["scored"] and row["symbiosis"] < float(before)
    assert await score_cell.inner_text() == f"{row['symbiosis']:.2f}"
    assert await page.inner_text(f"tr[data-id='{dog}'] .polarity") == row["polarity"]
    assert await page.inner_text("#error") == "" and problems == []


async def test_memory_text_is_shown_as_text_never_as_html(proxy: RunningProxy, browser):
    await remember(proxy, "alice", XSS)
    page = await browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: dialogs.append(dialog.message))
    await page.goto(f"{proxy.url}/ui?user=alice")
    await page.wait_for_selector("#memories tbody tr")
    (text,) = await rows(page)
    assert XSS in text
    assert await page.locator("body img, #memories script").count() == 0
    assert await page.title() != "pwned" and dialogs == []
    tooltip = await page.locator("#chart circle title").text_content() or ""
    assert "<img" in tooltip  # the chart's tooltip is text too


async def test_api_errors_show_in_the_page(start_proxy: StartProxy, browser):
    proxy = await start_proxy(memory={"enabled": False})
    page = await browser.new_page()
    await page.goto(f"{proxy.url}/ui?user=alice")
    await page.wait_for_selector("#error:not([hidden])")
    message = await page.inner_text("#error")
    assert "GET /memory/list failed (503)" in message and "memory is disabled" in message


def write_tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text("".join(f"{u} {token_hash(t)}\n" for u, t in TOKENS.items()))
    return path


async def test_with_auth_the_browser_signs_in_with_basic_and_sees_only_its_user(
    start_proxy: StartProxy, browser, tmp_path: Path
):
    proxy = await start_proxy(auth={"tokens_file": str(write_tokens(tmp_path))})
    mine = await remember(
        proxy,
        "alice",
        "alice runs the Porto half marathon",
        Authorization=f"Bearer {TOKENS['alice']}",
    )
    await remember(proxy, "bob", "bob keeps bees", Authorization=f"Bearer {TOKENS['bob']}")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/ui") as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"].startswith('Basic realm="symbiotic-memory"')
        async with http.get(f"{proxy.url}/memory/list") as r:
            assert r.status == 401 and r.headers["WWW-Authenticate"] == "Bearer"

    from playwright.async_api import Error as BrowserError

    anonymous = await browser.new_page()  # challenged, and headless it has nothing to answer
    with pytest.raises(BrowserError, match="ERR_INVALID_AUTH_CREDENTIALS"):
        await anonymous.goto(f"{proxy.url}/ui")

    context = await browser.new_context(
        http_credentials={"username": "alice", "password": TOKENS["alice"]}
    )
    page = await context.new_page()
    assert (await page.goto(f"{proxy.url}/ui?user=bob")).status == 200
    await expect(page.locator("#error")).to_contain_text("(403): ?user= names another user")
    assert await rows(page) == []
    await page.goto(f"{proxy.url}/ui")
    await page.wait_for_selector("#memories tbody tr")
    assert await rows(page) != [] and all("alice" in t for t in await rows(page))
    assert await page.input_value("#user") == "alice"  # the proven user
    assert await page.get_attribute("#user", "readonly") is not None
    forget = page.locator(f"tr[data-id='{mine}'] button.forget")
    await forget.click()
    await forget.click()  # a same-origin DELETE with the browser's Basic credentials
    await page.wait_for_selector(f"tr[data-id='{mine}']", state="detached")
    assert await proxy.memory.get("alice", mine) is None
    await context.close()

    assert (await api(proxy, "GET", "/memory/list", basic("alice", TOKENS["alice"])))[0] == 200
    assert (await api(proxy, "GET", "/memory/list", basic("bob", TOKENS["alice"])))[0] == 401
    assert (await api(proxy, "GET", "/memory/list", basic("alice", "wrong")))[0] == 401
    garbled = {"Authorization": "Basic not*base64"}
    status, body = await api(proxy, "GET", "/memory/list", garbled)
    assert status == 401 and "base64" in body["error"]
    status, body = await api(
        proxy, "GET", "/memory/list", basic("alice", TOKENS["alice"]), user="bob"
    )
    assert status == 403 and "another user" in body["error"]


async def test_admin_token_guards_the_page_with_basic(start_proxy: StartProxy):
    proxy = await start_proxy(admin={"token": "admin-s3cret"})
    await remember(proxy, "carol", "carol has a dentist appointment on Tuesday")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/ui") as r:
            assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Basic")
        async with http.get(f"{proxy.url}/ui", headers=basic("any", "admin-s3cret")) as r:
            assert r.status == 200 and "text/html" in r.headers["Content-Type"]
    status, body = await api(proxy, "GET", "/memory/list", basic("x", "admin-s3cret"), user="carol")
    assert status == 200 and body["total"] == 1 and not body["proven"]
    assert (await api(proxy, "GET", "/memory/list", basic("x", "nope"), user="carol"))[0] == 401


async def test_cross_site_writes_are_refused(proxy: RunningProxy):
    mid = await remember(proxy, "alice", "my passport number is X123")
    for headers in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"}):
        status, body = await api(proxy, "DELETE", f"/memory/{mid}", headers, user="alice")
        assert status == 403 and "refused" in body["error"]
    status, _ = await api(proxy, "GET", f"/memory/{mid}", {"Sec-Fetch-Site": "cross-site"})
    assert status == 404  # reads are not writes (404: no ?user=, so the default user)
    assert await proxy.memory.get("alice", mid) is not None
    same = {"Sec-Fetch-Site": "same-origin"}
    assert (await api(proxy, "DELETE", f"/memory/{mid}", same, user="alice"))[0] == 200


async def test_list_pages_newest_first_and_refuses_bad_parameters(proxy: RunningProxy):
    for fact in ("Marta lives in Porto", "Marta is vegetarian", "Marta has a cat"):
        await remember(proxy, "marta", fact)
    status, first = await api(proxy, "GET", "/memory/list", user="marta", limit="2")
    _, second = await api(proxy, "GET", "/memory/list", user="marta", limit="2", offset="2")
    assert status == 200 and first["total"] == 3 and len(first["memories"]) == 2
    listed = first["memories"] + second["memories"]
    assert len({m["id"] for m in listed}) == 3
    times = [m["time"] for m in listed]
    assert times == sorted(times, reverse=True)
    assert set(listed[0]) >= {"text", "strength", "strength_now", "symbiosis", "polarity", "tier"}
    assert all(0 < m["strength_now"] <= m["strength"] for m in listed)
    for bad in ({"limit": "0"}, {"limit": "501"}, {"offset": "-1"}, {"limit": "ten"}):
        status, body = await api(proxy, "GET", "/memory/list", user="marta", **bad)
        assert status == 400 and next(iter(bad)) in body["error"]


async def test_only_the_page_files_are_served(proxy: RunningProxy):
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{proxy.url}/ui/app.js") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/javascript")
            assert "textContent" in await r.text() and "innerHTML" not in await r.text()
        for name in ("../config.py", "nope.js", "%2e%2e%2fapp.py"):
            async with http.get(f"{proxy.url}/ui/{name}") as r:
                assert r.status == 404, name
        async with http.get(f"{proxy.url}/ui") as r:
            html = await r.text()
    assert '<script src="/ui/app.js"' in html and "<script>" not in html  # CSP: no inline
