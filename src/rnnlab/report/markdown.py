"""The report as Markdown (report.md): the same order as the HTML, figures linked beside it.

Verdicts are words in bold, not emoji; each claim's row links to an
``<a id>`` anchor in its section, which GitHub and most viewers honour.
"""

from __future__ import annotations

from .format import format_rows, numeric_columns


def _cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(tab) -> str:
    """A Table as a Markdown table, numbers formatted by column and right-aligned."""
    rows = format_rows(tab.rows)
    numeric = numeric_columns(rows) + [False] * len(tab.columns)
    head = "| " + " | ".join(_cell(c) for c in tab.columns) + " |"
    rule = "|" + "|".join("---:" if numeric[j] else "---" for j in range(len(tab.columns))) + "|"
    body = ["| " + " | ".join(_cell(c) for c in r) + " |" for r in rows]
    return "\n".join([f"**{_cell(tab.title)}**", "", head, rule, *body])


def verdict(word: str) -> str:
    return f"**{word.upper()}**"


def document(title, source_sentence, claims, anchors, conditions, sections) -> str:
    """report.md from the same pieces as the HTML page (see :mod:`rnnlab.report.builder`)."""
    md = [f"# {title}", "", source_sentence, ""]
    md += ["| # | claim | headline | verdict |", "|---:|---|---|---|"]
    for i, ((_, c), anchor) in enumerate(zip(claims, anchors), 1):
        md.append(f"| {i} | [{_cell(c.claim)}](#{anchor}) | {_cell(c.headline or '')} | "
                  f"{verdict(c.verdict)} |")
    md += ["", "## Conditions of this run", ""]
    md += [f"- **{label}:** {text}" for label, text, _ in conditions]
    md.append("")
    it = iter(anchors)
    for s in sections:
        md += [f"## {s['title']}", ""]
        if s["seconds"] is not None:
            md += [f"_Measured in {s['seconds']:.1f} s._", ""]
        for c in s["claims"]:
            head = f" {c.headline}." if c.headline else ""
            md += [f'- <a id="{next(it)}"></a>{verdict(c.verdict)} **{c.claim}**{head} {c.evidence}']
        md.append("")
        for t in s["tables"]:
            md += [table(t), ""]
        for path, caption in s["figures"]:
            md += [f"![{caption or path.stem}]({path.name})", ""]
            if caption:
                md += [f"_{caption}_", ""]
    return "\n".join(md) + "\n"
