"""The report of ``rnnlab compare``, built from a results dict (results.json) alone.

Layout: a one-screen summary (one row per claim: the claim, its verdict and
the deciding numbers), then one section per experiment with its claims, its
tables and its plots. ``report.md`` links the PNG files beside it;
``report.html`` embeds them (base64), so that one file can be sent around.
"""

from __future__ import annotations

import base64
import html
import importlib
import json
from pathlib import Path

from ..experiments.base import Claim, Table, schedule_note

VERDICT_MARK = {"supported": "✅ supported", "not supported": "❌ not supported",
                "nuanced": "⚖️ nuanced", "undecided": "❔ undecided"}


def experiment_module(name: str):
    return importlib.import_module(f"rnnlab.experiments.{name}")


def collect_claims(results: dict) -> list[tuple[str, Claim]]:
    """(experiment name, claim) for every experiment in the results, in run order."""
    out = []
    for name, result in results["experiments"].items():
        out.extend((name, c) for c in experiment_module(name).claims(result))
    return out


def _md_table(table: Table) -> str:
    head = "| " + " | ".join(map(str, table.columns)) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    rows = ["| " + " | ".join(str(c) for c in row) + " |" for row in table.rows]
    return "\n".join([f"**{table.title}**", "", head, rule, *rows])


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in table.rows)
    return (f"<p><b>{html.escape(table.title)}</b></p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")


def summary_table(claims) -> Table:
    return Table("Summary: each claim, the verdict the measurements give it, and why",
                 ["#", "claim", "verdict", "deciding numbers"],
                 [[i, c.claim, VERDICT_MARK[c.verdict], c.evidence]
                  for i, (_, c) in enumerate(claims, 1)])


def _machine_line(results) -> str:
    m = results.get("machine", {})
    blas = m.get("blas") or [{}]
    return (f"{m.get('cpu_model', '?')}, {m.get('usable_cpus', '?')} usable CPUs, "
            f"{m.get('threads', '?')} threads, NumPy {m.get('numpy', '?')}, "
            f"BLAS {blas[0].get('library', '?')} {blas[0].get('version', '')} "
            f"({blas[0].get('kernel', '?')} kernel), rnnlab backend {m.get('rnnlab_backend', '?')}")


def build_report(results: dict, out_dir) -> dict:
    """Write report.md, report.html and the plots into ``out_dir``; return their paths.

    Args:
        results: the dict saved as results.json by ``rnnlab compare``.
        out_dir: folder for the files (created if missing).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    claims = collect_claims(results)
    config = results.get("config", {})
    md = ["# rnnlab compare: MLP, vanilla RNN and LSTM, measured", "",
          f"Preset `{config.get('preset', '?')}`, seed {config.get('seed', '?')}, "
          f"{results.get('finished', '')}. Machine: {_machine_line(results)}.", "",
          "Every verdict below is computed from the numbers in `results.json`; "
          "rerun `rnnlab report results.json` to rebuild this page from them.", "",
          schedule_note(results), "",
          _md_table(summary_table(claims)), ""]
    body = ["<h1>rnnlab compare: MLP, vanilla RNN and LSTM, measured</h1>",
            f"<p>Preset <code>{html.escape(str(config.get('preset', '?')))}</code>, seed "
            f"{html.escape(str(config.get('seed', '?')))}, {html.escape(results.get('finished', ''))}. "
            f"Machine: {html.escape(_machine_line(results))}.</p>",
            f"<p>{html.escape(schedule_note(results))}</p>",
            _html_table(summary_table(claims))]
    plot_paths = []
    for name, result in results["experiments"].items():
        module = experiment_module(name)
        seconds = results.get("seconds", {}).get(name)
        md += [f"## {module.TITLE}", ""]
        body.append(f"<h2>{html.escape(module.TITLE)}</h2>")
        if seconds is not None:
            md += [f"_Measured in {seconds:.1f} s._", ""]
        for claim in module.claims(result):
            md += [f"- **{claim.claim}** {VERDICT_MARK[claim.verdict]}. {claim.evidence}"]
            body.append(f"<p><b>{html.escape(claim.claim)}</b> {VERDICT_MARK[claim.verdict]}. "
                        f"{html.escape(claim.evidence)}</p>")
        md.append("")
        for table in module.tables(result):
            md += [_md_table(table), ""]
            body.append(_html_table(table))
        for path in module.plots(result, out_dir):
            path = Path(path)
            plot_paths.append(path)
            md += [f"![{path.stem}]({path.name})", ""]
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            body.append(f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">')
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    html_path.write_text(_HTML.format(body="\n".join(body)), encoding="utf-8")
    return {"markdown": md_path, "html": html_path, "plots": plot_paths}


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


_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rnnlab compare report</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       line-height: 1.45; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.92em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }}
th {{ background: #f3f3f3; }}
img {{ max-width: 100%; margin: 0.5em 0 1.5em; }}
h2 {{ border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }}
</style></head><body>
{body}
</body></html>
"""
