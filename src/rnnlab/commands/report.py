"""rnnlab report: rebuild the compare report from a saved results.json, without rerunning."""

from __future__ import annotations

from pathlib import Path

from . import CommandError

HELP = "rebuild report.md/report.html and the plots from a results.json"


def add_arguments(parser):
    parser.add_argument("results", help="a results.json written by rnnlab compare")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder (default: beside results.json)")
    parser.add_argument("--screenshots", action="store_true",
                        help="also save report-1400px.png and report-390px.png, the first screen in headless "
                             "Chromium (needs /usr/bin/chromium and the playwright package)")


def run(args) -> int:
    from rich.console import Console

    from ..report import browser
    from ..report.builder import build_report, load_results

    try:
        results = load_results(args.results)
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.screenshots and browser.missing():
        raise CommandError(f"--screenshots: {browser.missing()}")
    out_dir = Path(args.out) if args.out else Path(args.results).parent
    paths = build_report(results, out_dir, console=Console(stderr=True))
    print(f"report: {paths['html']}")
    print(f"        {paths['markdown']}")
    if args.screenshots:
        for path in browser.screenshots(paths["html"], out_dir):
            print(f"        {path}")
    return 0
