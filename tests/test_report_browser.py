"""report.html in a real browser: headless Chromium at 1400 px and at 390 px wide.

Driven by Playwright's Python package on Debian's /usr/bin/chromium (installed
by .ci/run). Skipped, with the reason, only when the browser or Playwright is
missing and CI is not set; under CI=true a missing browser fails the test.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rnnlab.experiments.base import VERDICTS
from rnnlab.report import browser
from rnnlab.report.builder import build_report, claim_anchors, collect_claims

FIXTURE = Path(__file__).parent / "data" / "report_results.json"
MIN_CONTRAST = 4.5  # WCAG AA for normal text


def _require_browser():
    reason = browser.missing()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI is set but the browser test cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    _require_browser()
    results = json.loads(FIXTURE.read_text(encoding="utf-8"))
    paths = build_report(results, tmp_path_factory.mktemp("report"))
    return results, paths


@pytest.mark.parametrize("width", browser.WIDTHS)
def test_report_reads_well_in_chromium(report, width):
    results, paths = report
    anchors = claim_anchors(collect_claims(results))
    with browser.open_report(paths["html"], width) as page:
        m = browser.measure(page)
        assert m["viewport"]
        assert page.external_requests == [], "the report fetched something"
        # No horizontal overflow of the page itself (wide tables and figures scroll in their boxes).
        assert m["innerWidth"] == width
        assert m["scrollWidth"] <= m["innerWidth"], f"page is {m['scrollWidth']} px wide at {width} px"
        # Every figure decoded.
        assert len(m["images"]) == len(paths["plots"])
        for image in m["images"]:
            assert image["complete"] and image["naturalWidth"] > 0, image["alt"]
        # The summary links every claim, and each lands on its section.
        assert m["links"] == anchors
        for anchor in anchors:
            where = browser.landing(page, anchor)
            assert where is not None, f"#{anchor} has no target"
            assert where["hash"] == f"#{anchor}"
            assert 0 <= where["top"] < where["height"] and where["bottom"] > 0, (anchor, where)
        # The badges can be seen: a size, a verdict in words, readable contrast.
        claims = len(anchors)
        assert len(m["badges"]) >= 2 * claims
        for b in m["badges"]:
            assert b["text"] in VERDICTS
            assert b["width"] > 20 and b["height"] > 10, b
            assert b["contrast"] >= MIN_CONTRAST, b
        assert "Every verdict below is computed from the numbers in results.json" in m["text"]


def test_print_layout_drops_navigation_and_keeps_the_page_width(report):
    _, paths = report
    with browser.open_report(paths["html"], 800) as page:
        page.emulate_media(media="print")
        hidden = page.evaluate("getComputedStyle(document.querySelector('.toc')).display")
        width = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    assert hidden == "none" and width
