"""rnnlab report: rebuild the compare report from a saved results.json, without rerunning."""

from __future__ import annotations

from pathlib import Path

from . import CommandError, output_folder

HELP = "rebuild report.md/report.html and the plots from a results.json"

# What a results.json of the wrong shape raises inside an experiment's claims/tables/plots.
_SHAPE_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError)


def add_arguments(parser):
    parser.add_argument("results", help="a results.json written by rnnlab compare")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder (default: beside results.json)")
    parser.add_argument("--screenshots", action="store_true",
                        help="also save report-1400px.png and report-390px.png, the first screen in headless "
                             "Chromium (needs /usr/bin/chromium and the playwright package)")


def check_results(results: dict, path) -> None:
    """A CommandError unless every experiment in ``results`` is known and its entry gives
    the report its claims and tables (as rnnlab compare writes them)."""
    from ..compare import available_experiments
    from ..report.builder import experiment_module

    experiments = results["experiments"]
    if not experiments:
        raise CommandError(f"{path}: holds no experiments, so there is nothing to report")
    known = available_experiments()
    for name, result in experiments.items():
        if name not in known:
            raise CommandError(f"{path}: unknown experiment {name!r}; known: {', '.join(known)}")
        if not isinstance(result, dict):
            raise CommandError(f"{path}: experiment {name!r}: expected an object, "
                               f"got {type(result).__name__}")
        module = experiment_module(name)
        try:
            module.claims(result)
            module.tables(result)
        except _SHAPE_ERRORS as exc:
            raise CommandError(f"{path}: experiment {name!r} is not as rnnlab compare writes it "
                               f"({type(exc).__name__}: {exc})") from None


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
    check_results(results, args.results)
    out_dir = output_folder(args.out if args.out else Path(args.results).parent)
    try:
        paths = build_report(results, out_dir, console=Console(stderr=True))
    except _SHAPE_ERRORS as exc:
        raise CommandError(f"{args.results}: cannot build the report from it "
                           f"({type(exc).__name__}: {exc})") from None
    except OSError as exc:  # e.g. the disk filled up while writing
        raise CommandError(f"{exc.filename or out_dir}: {exc.strerror or exc}") from None
    print(f"report: {paths['html']}")
    print(f"        {paths['markdown']}")
    if args.screenshots:
        for path in browser.screenshots(paths["html"], out_dir):
            print(f"        {path}")
    return 0
