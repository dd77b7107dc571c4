"""Open report.html in headless Chromium: measure what a reader sees, and take screenshots.

Uses Playwright's Python package to drive the system's Chromium
(``/usr/bin/chromium``, Debian's package); Playwright's own browser download is
never used. Both the test suite (tests/test_report_browser.py) and
``rnnlab report --screenshots`` go through :func:`open_report`.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CHROMIUM = os.environ.get("RNNLAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
WIDTHS = (1400, 390)  # a desktop window and a phone
HEIGHTS = {1400: 900, 390: 844}  # their first screen


def missing() -> str | None:
    """Why the browser cannot run here (None when it can): no Chromium binary or no Playwright."""
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed (pip install playwright)"
    return None


@contextlib.contextmanager
def open_report(html_path, width: int, height: int = 900):
    """A Playwright page showing ``html_path`` at ``width`` CSS px, network blocked; yields the page."""
    from playwright.sync_api import sync_playwright

    url = Path(html_path).resolve().as_uri()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
            requests = []
            # The report must need nothing but itself: every other request is recorded and refused.
            page.route("**/*", lambda route: (route.continue_() if route.request.url == url
                                              else (requests.append(route.request.url), route.abort())))
            page.goto(url, wait_until="load")
            page.external_requests = requests
            yield page
        finally:
            browser.close()


# What the tests assert, measured in the page by one script.
MEASURE_JS = """() => {
  const luminance = (rgb) => {
    const [r, g, b] = rgb.match(/[\\d.]+/g).slice(0, 3).map(Number).map(v => {
      v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const contrast = (a, b) => { const [x, y] = [luminance(a), luminance(b)].sort((p, q) => q - p);
                               return (x + 0.05) / (y + 0.05); };
  const background = (el) => { for (; el; el = el.parentElement) { const c = getComputedStyle(el).backgroundColor;
                               if (c && !c.startsWith('rgba(0, 0, 0, 0)') && c !== 'transparent') return c; }
                               return 'rgb(255, 255, 255)'; };
  const images = [...document.images].map(i => ({alt: i.alt, complete: i.complete, naturalWidth: i.naturalWidth,
                                                 shownWidth: i.getBoundingClientRect().width}));
  const links = [...document.querySelectorAll('#summary a[href^="#"]')].map(a => a.getAttribute('href').slice(1));
  const badges = [...document.querySelectorAll('.badge')].filter(b => b.offsetParent !== null).map(b => {
    const r = b.getBoundingClientRect();
    return {text: b.textContent.trim(), width: r.width, height: r.height,
            contrast: contrast(getComputedStyle(b).color, background(b))};
  });
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
          images, links, badges, viewport: !!document.querySelector('meta[name=viewport]'),
          text: document.body.innerText};
}"""


def measure(page) -> dict:
    """Page width against the window, images, summary links, visible badges (text, size, contrast)."""
    return page.evaluate(MEASURE_JS)


def landing(page, anchor: str) -> dict:
    """Click the summary link to ``anchor``; where its target then sits relative to the window."""
    page.click(f'#summary a[href="#{anchor}"]')
    page.wait_for_timeout(50)
    return page.evaluate("""(id) => { const el = document.getElementById(id);
        if (!el) return null;
        const r = el.getBoundingClientRect();
        return {top: r.top, bottom: r.bottom, height: window.innerHeight, hash: location.hash}; }""", anchor)


def screenshots(html_path, out_dir, widths=WIDTHS, full_page: bool = False) -> list[Path]:
    """Save ``report-<width>px.png`` for each width into ``out_dir``: the first screen a reader
    sees (the whole page with ``full_page``); return the paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for width in widths:
        with open_report(html_path, width, HEIGHTS.get(width, 900)) as page:
            path = out_dir / f"report-{width}px.png"
            page.screenshot(path=str(path), full_page=full_page)
            paths.append(path)
    return paths
