"""The portfolio page (portfolio/index.html) in headless Chromium, at desktop and phone widths.

The page is served from the repository root by a local http.server on 127.0.0.1, so its
relative links (../README.md, ../docs/*.md) resolve exactly as they do in a clone. For each
width the test checks: no console errors or page errors, no request outside 127.0.0.1 (the page
must work offline), every <img> decoded (naturalWidth > 0), every relative link pointing at a
file that exists, every #anchor at an element that exists, nothing wider than the window. It
saves docs/screenshots/portfolio-desktop.png and portfolio-phone.png.
"""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from src.config import PROJECT_ROOT
from src.local_stack.browser import CHROMIUM, launch_chromium

pytestmark = pytest.mark.e2e

PORTFOLIO = PROJECT_ROOT / "portfolio"
SCREENSHOTS = PROJECT_ROOT / "docs" / "screenshots"
WIDTHS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}


class QuietHandler(SimpleHTTPRequestHandler):
    """Serves files without printing a line per request."""

    def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
        pass


@pytest.fixture(scope="module")
def site_url():
    """The repository root served on a free 127.0.0.1 port; yields the page's URL."""
    handler = functools.partial(QuietHandler, directory=str(PROJECT_ROOT))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/portfolio/index.html"
    server.shutdown()
    server.server_close()


def local_target(href: str) -> Path:
    """The file a relative href points at, resolved from the portfolio folder."""
    return (PORTFOLIO / unquote(urlsplit(href).path)).resolve()


@pytest.mark.parametrize("device", list(WIDTHS))
def test_portfolio_page_renders_offline_without_errors(site_url, device):
    # Fail, not skip: scripts/run-tests.sh installs Chromium, so a missing one is a set-up bug.
    assert Path(CHROMIUM).exists(), "needs Debian's Chromium: apt-get install -y chromium"
    from playwright.sync_api import sync_playwright

    origin = site_url.split("/portfolio/")[0]
    problems: list[str] = []
    outside_requests: list[str] = []
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page(viewport=WIDTHS[device])
            page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on(
                "request",
                lambda request: (
                    None if request.url.startswith((origin, "data:")) else outside_requests.append(request.url)
                ),
            )
            page.on(
                "response",
                lambda response: (
                    problems.append(f"HTTP {response.status} {response.url}") if response.status >= 400 else None
                ),
            )
            page.goto(site_url, wait_until="load", timeout=30_000)

            # Lazy images load when they come near the window: bring each into view, then check it.
            images = page.locator("img")
            assert images.count() >= 6
            for index in range(images.count()):
                image = images.nth(index)
                image.scroll_into_view_if_needed()
                image.evaluate("img => img.decode()")  # waits for the image; rejects if it is broken
                src = image.get_attribute("src")
                assert image.evaluate("img => img.naturalWidth") > 0, f"image {src} did not load"
                assert (PORTFOLIO / src).is_file(), src

            hrefs = page.eval_on_selector_all("a[href]", "links => links.map(a => a.getAttribute('href'))")
            assert len(hrefs) >= 20
            for href in hrefs:
                assert not href.startswith(("http:", "https:", "//")), (
                    f"external link {href}: the page must work offline"
                )
                if href.startswith("#"):
                    assert page.locator(href).count() == 1, f"anchor {href} has no target"
                else:
                    assert local_target(href).is_file(), f"link {href} points at a missing file"
            for attribute in ("video[poster]", "video source[src]"):
                for value in page.eval_on_selector_all(
                    attribute, "nodes => nodes.map(n => n.getAttribute('poster') || n.getAttribute('src'))"
                ):
                    assert (PORTFOLIO / value).is_file(), value

            # Responsive: nothing sticks out sideways at this width.
            page.evaluate("window.scrollTo(0, 0)")
            page.wait_for_timeout(300)
            assert page.evaluate("document.documentElement.scrollWidth") <= WIDTHS[device]["width"]
            assert page.get_by_role("heading", level=1).is_visible()
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOTS / f"portfolio-{device}.png"))
        finally:
            browser.close()

    assert problems == []
    assert outside_requests == []
