"""The web chat widget's own words in the visitor's language (README "Languages"), in a real
headless Chromium (as tests/e2e/test_widget_browser.py): the browser's language for a new visitor,
the conversation's once it is known (at once, by a ``texts`` frame, and after a reload); the queue
banner with the team's name in that language.
The app is tests/e2e/test_languages_teams_e2e.py's (team names by language, lexical matcher)."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest
from playwright.async_api import async_playwright, expect

from conftest import Running
from e2e.test_languages_teams_e2e import running  # noqa: F401 - the app with team names by language
from e2e.test_widget_browser import ARGS, CHROMIUM


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            yield b
        finally:
            await b.close()


async def _page(browser: Any, locale: str) -> tuple[Any, list[str]]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, locale=locale)
    pg = await context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    return pg, errors


async def _send(root: Any, text: str) -> None:
    await root.locator("#omnibot-input").fill(text)
    await root.locator("#omnibot-send").click()


@pytest.mark.parametrize(("locale", "online", "placeholder", "greeting", "said", "banner"), [
    ("es-ES", "en línea", "Escribe un mensaje…", "¡Hola! Pregúntanos lo que quieras",
     "Hola, quiero hablar con una persona por favor",
     "Esperando a un agente — eres el número 1 en la cola (Atención al cliente)"),
    ("id-ID", "daring", "Tulis pesan…", "Halo! Tanyakan apa saja",
     "Halo, saya mau bicara dengan petugas sekarang",
     "Menunggu petugas — Anda nomor 1 dalam antrean (Layanan Pelanggan)"),
])
async def test_widget_speaks_the_browsers_language(running: Running, browser: Any, locale: str,  # noqa: F811
                                                   online: str, placeholder: str, greeting: str, said: str,
                                                   banner: str) -> None:
    page, errors = await _page(browser, locale)
    await page.goto(running.url + "/?chat=open")
    root = page.locator("#omnibot-root")
    await expect(root.locator("#omnibot-status")).to_have_text(online, timeout=10_000)
    await expect(root.locator("#omnibot-input")).to_have_attribute("placeholder", placeholder)
    await expect(root.locator(".omnibot-empty")).to_contain_text(greeting)
    await _send(root, said)
    await expect(root.locator("#omnibot-banner")).to_have_text(banner, timeout=10_000)
    assert errors == []


async def test_widget_follows_the_conversations_language_after_a_reload(running: Running,  # noqa: F811
                                                                        browser: Any) -> None:
    page, errors = await _page(browser, "en-US")
    await page.goto(running.url + "/?chat=open")
    root = page.locator("#omnibot-root")
    await expect(root.locator("#omnibot-status")).to_have_text("online", timeout=10_000)
    await _send(root, "Hola, quiero hablar con una persona por favor")
    # the team's name is the conversation's (Spanish), and so are the words once the reload asks again
    await expect(root.locator("#omnibot-banner")).to_contain_text("(Atención al cliente)", timeout=10_000)
    await page.reload()
    await expect(root.locator("#omnibot-status")).to_have_text("en línea", timeout=10_000)
    await expect(root.locator("#omnibot-input")).to_have_attribute("placeholder", "Escribe un mensaje…")
    await expect(root.locator("#omnibot-banner")).to_have_text(
        "Esperando a un agente — eres el número 1 en la cola (Atención al cliente)")
    assert errors == []


async def test_widget_words_follow_a_language_switch_without_a_reload(running: Running,  # noqa: F811
                                                                      browser: Any) -> None:
    """The server sends a ``texts`` frame when the conversation's language changes (docs/protocols.md):
    the status line, the input's placeholder and the queue banner (with the team's name) change at
    once, both when the first message shows the language and when the customer asks for another."""
    page, errors = await _page(browser, "en-US")
    await page.goto(running.url + "/?chat=open")
    root = page.locator("#omnibot-root")
    await expect(root.locator("#omnibot-status")).to_have_text("online", timeout=10_000)
    await _send(root, "Hola, quiero hablar con una persona por favor")
    await expect(root.locator("#omnibot-banner")).to_have_text(
        "Esperando a un agente — eres el número 1 en la cola (Atención al cliente)", timeout=10_000)
    await expect(root.locator("#omnibot-status")).to_have_text("en línea")
    await expect(root.locator("#omnibot-input")).to_have_attribute("placeholder", "Escribe un mensaje…")
    await _send(root, "English please")      # while waiting for an agent: the bot is silent, the words change
    await expect(root.locator("#omnibot-banner")).to_have_text(
        "Waiting for an agent — you are number 1 in the queue (Customer Care)", timeout=10_000)
    await expect(root.locator("#omnibot-status")).to_have_text("online")
    await expect(root.locator("#omnibot-input")).to_have_attribute("placeholder", "Write a message…")
    await expect(root.locator("#omnibot-send")).to_have_attribute("aria-label", "Send message")
    assert errors == []
