"""The report of ``rnnlab compare``, built from a results dict (results.json) alone.

Layout, the same in report.md and report.html:

1. the claims table: one row per claim with one headline number and the
   verdict, each row linking to its section (the full deciding numbers are
   folded under the claim in the HTML);
2. one banner with the conditions of the run (machine, BLAS, the contention
   other processes caused while timing), instead of a caveat per claim;
3. a table of contents, then one section per experiment: its claims with
   their deciding numbers, its tables, its figures with a one-line caption.

``report.md`` links the PNG files beside it; ``report.html`` embeds them, so
that one file can be sent around and opened without a network.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

from ..experiments.base import Claim, Table, schedule_note
from . import html as H
from . import markdown as M
from .style import read_caption

TITLE = "rnnlab compare: MLP, vanilla RNN, LSTM and GRU, measured"
VERDICT_WORD = {"supported": "supported", "not supported": "not supported", "nuanced": "nuanced",
                "undecided": "undecided"}
SOURCE_SENTENCE = ("Every verdict below is computed from the numbers in results.json; rerun "
                   "`rnnlab report results.json` to rebuild this page from them.")


def experiment_module(name: str):
    return importlib.import_module(f"rnnlab.experiments.{name}")


def collect_claims(results: dict) -> list[tuple[str, Claim]]:
    """(experiment name, claim) for every experiment in the results, in run order."""
    out = []
    for name, result in results["experiments"].items():
        out.extend((name, c) for c in experiment_module(name).claims(result))
    return out


def claim_anchors(claims) -> list[str]:
    """A unique HTML id per claim, from its key: "claim-<key>" (a suffix when keys repeat)."""
    seen, out = {}, []
    for _, c in claims:
        base = "claim-" + "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in c.key)
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return out


def summary_table(claims) -> Table:
    """The claims as a plain Table (for the terminal): #, claim, headline, verdict."""
    return Table("Summary: each claim, its headline number and the verdict the measurements give it",
                 ["#", "claim", "headline", "verdict"],
                 [[i, c.claim, c.headline or "", VERDICT_WORD[c.verdict]]
                  for i, (_, c) in enumerate(claims, 1)])


def machine_line(results) -> str:
    """CPU, threads, NumPy and its BLAS, rnnlab's backend, in one line."""
    m = results.get("machine", {})
    blas = (m.get("blas") or [{}])[0]
    return (f"{m.get('cpu_model', '?')}, {m.get('usable_cpus', '?')} usable CPUs, "
            f"{m.get('threads', '?')} BLAS threads; Python {m.get('python', '?')}, "
            f"NumPy {m.get('numpy', '?')} on {blas.get('library', '?')} {blas.get('version', '')} "
            f"({blas.get('kernel', '?')} kernel); rnnlab backend {m.get('rnnlab_backend', '?')}")


def _other_loads(node) -> list[float]:
    """Every number found under an "other_load_cores" key anywhere in a result (lists, dicts)."""
    found = []

    def numbers(v):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            found.append(float(v))
        elif isinstance(v, dict):
            for x in v.values():
                numbers(x)
        elif isinstance(v, list):
            for x in v:
                numbers(x)

    def walk(n):
        if isinstance(n, dict):
            for k, v in n.items():
                numbers(v) if k == "other_load_cores" else walk(v)
        elif isinstance(n, list):
            for x in n:
                walk(x)

    walk(node)
    return found


def conditions(results) -> list[tuple[str, str, bool]]:
    """The banner's rows (label, text, warn): machine, run, and the contention measured while timing."""
    m = results.get("machine", {})
    config = results.get("config", {})
    rows = [("Machine", machine_line(results), False)]
    seconds = sum((results.get("seconds") or {}).values())
    seeds = config.get("seeds")
    seed_text = (f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({seeds[0]}..{seeds[-1]})"
                 if seeds else f"seed {config.get('seed', '?')}")
    run = f"preset {config.get('preset', '?')}, {seed_text}, finished {results.get('finished', '?')}"
    if seconds:
        run += f", {seconds:.0f} s of measuring"
    rows.append(("Run", run, False))
    note = schedule_note(results)
    if note:  # seeds, the interval, who ran the tasks and what ran alone
        rows.append(("Seeds and scheduling", note, False))
    if m.get("loadavg"):
        rows.append(("Load average at the start", ", ".join(f"{x:.2f}" for x in m["loadavg"])
                     + " (1, 5, 15 min)", False))
    cpus = m.get("usable_cpus") or 1
    timed = {name: _other_loads(r) for name, r in results["experiments"].items()}
    timed = {name: loads for name, loads in timed.items() if loads}
    if timed:
        worst = max(max(v) for v in timed.values())
        busy = {name: sum(x >= 0.5 for x in v) for name, v in timed.items()}
        n_busy, n_all = sum(busy.values()), sum(len(v) for v in timed.values())
        text = (f"other processes used up to {worst:.1f} of {cpus} cores while timings ran; "
                f"{n_busy} of {n_all} timed measurements saw at least half a core busy")
        warn = worst >= 0.5
        if warn:
            text += (". Timing claims measured under contention are capped at “nuanced” or left "
                     "“undecided” and say so in their deciding numbers; rerun on a quiet machine "
                     "to decide them")
        rows.append(("Contention", text + ".", warn))
    return rows


class _Steps:
    """Progress of the report build: a rich bar on a terminal, one plain line per step otherwise,
    nothing when ``console`` is None."""

    def __init__(self, console, total: int):
        self.console, self.total, self.done = console, total, 0
        self._bar = self._task = None
        if console is not None and getattr(console, "is_terminal", False):
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("report: {task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=console)
            self._bar.start()
            self._task = self._bar.add_task("", total=total)

    def begin(self, what: str):
        """Announce the next step before it runs (the wait is inside it)."""
        if self._bar is not None:
            self._bar.update(self._task, description=what)
        elif self.console is not None:
            print(f"report [{self.done + 1}/{self.total}] {what}", file=getattr(self.console, "file", sys.stderr),
                  flush=True)

    def end(self):
        self.done += 1
        if self._bar is not None:
            self._bar.advance(self._task)

    def close(self):
        if self._bar is not None:
            self._bar.stop()


def build_report(results: dict, out_dir, console=None) -> dict:
    """Write report.md, report.html and the plots into ``out_dir``; return their paths.

    Args:
        results: the dict saved as results.json by ``rnnlab compare``.
        out_dir: folder for the files (created if missing).
        console: a rich Console for progress (a bar on a terminal, plain lines
            otherwise), or None for silence.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(results["experiments"])
    steps = _Steps(console, len(names) + 1)
    try:
        sections, plot_paths = [], []
        for name in names:
            steps.begin(f"{name}: figures, tables and claims")
            module, result = experiment_module(name), results["experiments"][name]
            figures = [(Path(p), read_caption(p)) for p in module.plots(result, out_dir)]
            plot_paths += [p for p, _ in figures]
            sections.append({"name": name, "title": module.TITLE, "claims": module.claims(result),
                             "tables": module.tables(result), "figures": figures,
                             "seconds": results.get("seconds", {}).get(name)})
            steps.end()
        steps.begin("writing report.md and report.html")
        claims = [(s["name"], c) for s in sections for c in s["claims"]]
        anchors = claim_anchors(claims)
        cond = conditions(results)
        md_path, html_path = out_dir / "report.md", out_dir / "report.html"
        md_path.write_text(M.document(TITLE, SOURCE_SENTENCE, claims, anchors, cond, sections),
                           encoding="utf-8")
        html_path.write_text(_html_document(claims, anchors, cond, sections), encoding="utf-8")
        steps.end()
    finally:
        steps.close()
    return {"markdown": md_path, "html": html_path, "plots": plot_paths}


def _html_document(claims, anchors, cond, sections) -> str:
    """report.html: title, source sentence, tally, claims table, conditions, contents, sections."""
    body = [f"<h1>{H.escape(TITLE)}</h1>",
            f'<p class="lede">{H.escape(SOURCE_SENTENCE).replace("`", "<code>", 1).replace("`", "</code>", 1)}</p>',
            H.verdict_counts([c for _, c in claims]),
            '<section id="summary">', H.summary(list(zip(anchors, (c for _, c in claims)))), "</section>",
            H.conditions(cond),
            H.toc([("summary", "Claims"), ("conditions", "Conditions of this run")]
                  + [(f"exp-{s['name']}", s["title"]) for s in sections])]
    it = iter(anchors)
    for s in sections:
        body.append(f'<section id="exp-{s["name"]}"><h2>{H.escape(s["title"])}</h2>'
                    '<p class="meta"><a href="#summary">↑ all claims</a></p>')
        if s["seconds"] is not None:
            body.append(f'<p class="meta">Measured in {s["seconds"]:.1f} s.</p>')
        body += [H.claim_block(next(it), c) for c in s["claims"]]
        body += [H.table(t) for t in s["tables"]]
        body += [H.figure(p, cap) for p, cap in s["figures"]]
        body.append("</section>")
    return H.page(TITLE, "\n".join(body))


def load_results(path) -> dict:
    """Read a results.json written by ``rnnlab compare``; a clear ValueError if it is not one."""
    path = Path(path)
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read results from {path}: {exc}") from None
    if not isinstance(results, dict) or not isinstance(results.get("experiments"), dict):
        raise ValueError(f"{path} is not an rnnlab compare results.json (no 'experiments' object)")
    return results
