"""The report as one self-contained HTML page: summary, contents, conditions, sections.

Nothing is fetched: the CSS is inline and the figures are PNG data URIs. The
verdict badges are CSS boxes with words on them (no emoji font needed); their
colours come from a colour-blind-safe palette and carry no meaning the word
does not. Wide tables scroll inside their own box, the page has a viewport tag
and a print stylesheet.
"""

from __future__ import annotations

import base64
from html import escape

from . import style
from .format import format_rows, numeric_columns

LONG_CELL = 36  # characters: a longer text cell wraps
# Each verdict differs by fill, border style and word, not by hue alone: solid blue, red outline,
# amber with a dashed border, light grey with a dotted border.
BADGE_CLASS = {"supported": "badge-yes", "not supported": "badge-no", "nuanced": "badge-mixed",
               "undecided": "badge-open"}


def badge(verdict: str) -> str:
    """A verdict as a CSS badge: ``<span class="badge badge-yes">supported</span>``."""
    return f'<span class="badge {BADGE_CLASS[verdict]}">{escape(verdict)}</span>'


def table(tab, *, css_class: str = "") -> str:
    """A Table (title, columns, rows) as a captioned table in a scrolling box;
    numbers formatted by column (see :mod:`rnnlab.report.format`) and right-aligned."""
    rows = format_rows(tab.rows)
    numeric = numeric_columns(rows)
    numeric += [False] * (len(tab.columns) - len(numeric))

    def cls(j, text=""):
        # Cells stay on one line (the box scrolls); only long text wraps, at a readable width.
        return ' class="num"' if numeric[j] else (' class="long"' if len(text) > LONG_CELL else "")

    head = "".join(f"<th{cls(j)}>{escape(str(c))}</th>" for j, c in enumerate(tab.columns))
    body = "".join("<tr>" + "".join(f"<td{cls(j, c)}>{escape(c)}</td>" for j, c in enumerate(r)) + "</tr>"
                   for r in rows)
    klass = f' class="{css_class}"' if css_class else ""
    return (f'<p class="table-title">{escape(tab.title)}</p><div class="table-wrap"><table{klass}>'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


def figure(path, caption: str) -> str:
    """A PNG as an inline figure shown at its 1x size (the file is 2x), with its caption under it."""
    width, height = style.png_size(path)
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    w, h = width // style.SCALE, height // style.SCALE
    cap = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return (f'<figure><div class="fig-scroll"><img alt="{escape(caption or path.stem)}" width="{w}" '
            f'height="{h}" src="data:image/png;base64,{data}"></div>{cap}</figure>')


def summary(entries) -> str:
    """The claims table: number, claim (a link to its section), headline, verdict badge, and the
    deciding numbers folded under the claim. ``entries``: (anchor, Claim) pairs in report order."""
    rows = []
    for i, (anchor, c) in enumerate(entries, 1):
        headline = escape(getattr(c, "headline", "") or "")
        rows.append(
            f'<tr><td class="num idx">{i}</td><td class="verdict">{badge(c.verdict)}</td>'
            f'<td class="claim-cell"><a href="#{anchor}">{escape(c.claim)}</a></td>'
            f'<td class="headline">{headline}'
            f"<details><summary>deciding numbers</summary><p>{escape(c.evidence)}</p></details></td></tr>")
    return ('<p class="table-title">Each claim, the verdict its measurements give, and the number that '
            "decides it. Click a claim for its section; open “deciding numbers” for the full evidence.</p>"
            '<div class="table-wrap"><table class="claims" id="claims-table">'
            '<thead><tr><th class="num">#</th><th>verdict</th><th>claim</th><th>headline</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def verdict_counts(claims) -> str:
    """"12 claims: 5 supported, 4 nuanced, 2 not supported, 1 undecided" with a badge for each kind."""
    counts = {v: sum(c.verdict == v for c in claims)
              for v in ("supported", "nuanced", "not supported", "undecided")}
    parts = [f"{badge(v)} × {n}" for v, n in counts.items() if n]
    return f"<p class=\"tally\">{len(claims)} claims: {' '.join(parts)}</p>"


def toc(items) -> str:
    """A table of contents from (anchor, title) pairs."""
    links = "".join(f'<li><a href="#{a}">{escape(t)}</a></li>' for a, t in items)
    return f'<nav class="toc" aria-label="Contents"><h2>Contents</h2><ol>{links}</ol></nav>'


def conditions(lines) -> str:
    """The one banner for the run's conditions: a list of (label, text, warn) rows."""
    items = "".join(f'<li{" class=warn" if warn else ""}><b>{escape(k)}:</b> {escape(v)}</li>'
                    for k, v, warn in lines)
    return (f'<aside class="conditions" id="conditions" aria-label="Conditions of this run">'
            f"<h2>Conditions of this run</h2><ul>{items}</ul></aside>")


def claim_block(anchor: str, c) -> str:
    """One claim inside its section: badge, claim, headline and the deciding numbers in full."""
    head = escape(getattr(c, "headline", "") or "")
    return (f'<div class="claim" id="{anchor}"><p class="claim-line">{badge(c.verdict)} '
            f"<b>{escape(c.claim)}</b></p>"
            + (f'<p class="headline">{head}</p>' if head else "")
            + f'<p class="evidence">{escape(c.evidence)}</p></div>')


def page(title: str, body: str) -> str:
    """The whole HTML document around ``body``."""
    return _PAGE.replace("{title}", escape(title)).replace("{css}", CSS).replace("{body}", body)


CSS = """
:root { --fg: #1d1d1f; --muted: #5a5a60; --rule: #d8d8dc; --head: #f2f2f4; --link: #0a58a8; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       font-size: 16px; line-height: 1.5; color: var(--fg); max-width: 1180px; margin: 0 auto;
       padding: 1.2em 1em 3em; overflow-wrap: break-word; }
h1 { font-size: 1.7em; line-height: 1.2; margin: 0.2em 0 0.4em; }
h2 { font-size: 1.35em; border-bottom: 1px solid var(--rule); padding-bottom: 0.2em; margin-top: 2.2em; }
a { color: var(--link); }
code { font-size: 0.92em; background: var(--head); padding: 0 0.25em; border-radius: 3px; }
.lede { color: var(--muted); }
.table-wrap { overflow-x: auto; max-width: 100%; margin: 0 0 1.4em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid var(--rule); padding: 0.3em 0.55em; text-align: left; vertical-align: top; }
th { background: var(--head); font-weight: 600; }
td, th { white-space: nowrap; }
td.long { white-space: normal; min-width: 16em; max-width: 30em; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.claims td { white-space: normal; }
table.claims { width: 100%; font-size: 0.95em; }
.table-title { font-weight: 600; margin: 1.4em 0 0.3em; font-size: 0.95em; }
table.claims td.claim-cell { min-width: 14em; width: 50%; }
table.claims td { padding: 0.25em 0.55em; }
table.claims td.headline { font-variant-numeric: tabular-nums; white-space: normal; min-width: 12em; width: 42%; }
table.claims td.verdict { white-space: nowrap; }
table.claims details { margin-top: 0.1em; font-size: 0.85em; color: var(--muted); }
table.claims summary { cursor: pointer; }
.badge { display: inline-block; padding: 0.1em 0.55em; border-radius: 0.8em; font-weight: 700;
         font-size: 0.85em; line-height: 1.5; white-space: nowrap; border: 2px solid transparent; }
.badge-yes { background: #005a8c; color: #ffffff; }
.badge-no { background: #ffffff; color: #8a2c00; border-color: #8a2c00; }
.badge-mixed { background: #f5c15b; color: #1d1d1f; border-style: dashed; border-color: #1d1d1f; }
.badge-open { background: #e4e4e8; color: #1d1d1f; border-style: dotted; border-color: #1d1d1f; }
.tally .badge { margin-right: 0.15em; }
.conditions { background: #fff8e6; border: 1px solid #e6c46a; border-radius: 6px; padding: 0.2em 1em 0.6em;
              margin: 1.2em 0; }
.conditions h2 { font-size: 1.05em; border: 0; margin: 0.6em 0 0.3em; }
.conditions ul { margin: 0; padding-left: 1.2em; }
.conditions li.warn { font-weight: 600; }
.toc ol { columns: 2 20em; margin: 0.3em 0; }
.toc h2 { margin-top: 1.4em; }
.claim { border-left: 4px solid var(--rule); padding: 0.1em 0 0.1em 0.8em; margin: 1em 0; }
.claim .headline { font-weight: 600; margin: 0.2em 0; font-variant-numeric: tabular-nums; }
.claim .evidence { color: var(--muted); margin: 0.2em 0; font-size: 0.95em; }
.claim-line { margin: 0.2em 0; }
.meta { color: var(--muted); font-size: 0.9em; }
figure { margin: 1em 0 2em; }
.fig-scroll { overflow-x: auto; max-width: 100%; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 0.92em; margin-top: 0.3em; }
:target { scroll-margin-top: 0.5em; }
@media (max-width: 640px) {
  body { font-size: 15px; padding: 0.8em 0.7em 2em; }
  h1 { font-size: 1.35em; }
  table.claims, table.claims tbody, table.claims tr, table.claims td { display: block; width: 100%; }
  table.claims thead { display: none; }
  table.claims tr { border: 1px solid var(--rule); border-radius: 6px; margin-bottom: 0.6em; padding: 0.3em 0.5em; }
  table.claims td { border: 0; padding: 0.1em 0; text-align: left; }
  table.claims td.idx { display: none; }
  table.claims td.claim-cell { min-width: 0; width: 100%; font-weight: 600; }
  table.claims td.headline { min-width: 0; width: 100%; }
  .toc ol { columns: 1; }
  /* A figure keeps its 1x size, so that its text stays readable, and scrolls sideways in its box. */
  figure img { max-width: none; }
}
@media print {
  body { max-width: none; font-size: 10.5pt; padding: 0; }
  .toc, table.claims details { display: none; }  /* each section prints the numbers in full */
  .table-wrap { overflow: visible; }
  table { font-size: 8pt; width: 100%; }
  td, th { white-space: normal; overflow-wrap: anywhere; }
  td.num { overflow-wrap: normal; }
  td.long { min-width: 0; }
  a { color: inherit; text-decoration: none; }
  figure, table, .claim { break-inside: avoid; }
  h2 { break-after: avoid; }
  .badge { print-color-adjust: exact; -webkit-print-color-adjust: exact; }
}
"""

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style></head><body>
{body}
</body></html>
"""
