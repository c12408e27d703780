"""Headless Chromium for the browser tests and the screenshot script, launched one way.

Playwright's own browser download needs the internet, so we drive Debian's Chromium
(`apt-get install -y chromium`; scripts/run-tests.sh installs it). The flags keep it headless and
quiet: as root it needs --no-sandbox, and without the background-networking flags it keeps
trying to reach Google's servers, which this offline setup refuses.
"""

from __future__ import annotations

from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]


def launch_chromium(playwright):
    """Launch Debian's headless Chromium through Playwright.

    Args:
        playwright: the object `playwright.sync_api.sync_playwright()` gives.

    Returns:
        A Playwright `Browser`; close it when done.

    Raises:
        FileNotFoundError: Chromium is not installed (the message says how to install it).
    """
    if not CHROMIUM.exists():
        raise FileNotFoundError(
            f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` (run-tests.sh does)"
        )
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
