"""A report in a headless Chromium, driven by Playwright: its pages, and screenshots of
them. Playwright (``pip install playwright``) drives the Chromium installed on the
machine: ``$NNKIT_CHROMIUM``, or the first ``chromium`` on the ``PATH``."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError

#: Chromium's switches for a machine without a display or a network: no GPU, no
#: sandbox (containers), and none of the background requests a fresh profile makes
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


def chromium() -> str | None:
    """The Chromium executable to drive: ``$NNKIT_CHROMIUM`` when set, else the first
    ``chromium`` (or ``chromium-browser``, ``google-chrome``) on the ``PATH``; None
    when there is none."""
    named = os.environ.get("NNKIT_CHROMIUM")
    if named:
        return named if Path(named).is_file() else None
    return next((found for name in ("chromium", "chromium-browser", "google-chrome") if (found := shutil.which(name))),
                None)  # fmt: skip


@contextmanager
def page(width: int = 1280, height: int = 800, executable: str | None = None):
    """A fresh Playwright page of a headless Chromium with a ``width`` x ``height``
    viewport (``with page() as p: p.goto(url)``); :class:`UserError` when Playwright
    or Chromium is missing."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise UserError("a browser needs Playwright: pip install playwright") from None
    executable = executable or chromium()
    if executable is None:
        raise UserError("no Chromium found: install one, or name it in the environment variable NNKIT_CHROMIUM")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, args=list(CHROMIUM_ARGS))
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def screenshot(html_path, png_path, full_page: bool = False, width: int = 1280, height: int = 800) -> Path:
    """A PNG of the HTML file ``html_path`` as Chromium shows it in a ``width`` x
    ``height`` window: its first screen, or with ``full_page`` the whole page. Returns
    ``png_path``."""
    png_path = Path(png_path)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with page(width, height) as p:
        p.goto(Path(html_path).resolve().as_uri(), wait_until="load")
        p.screenshot(path=str(png_path), full_page=full_page)
    return png_path
