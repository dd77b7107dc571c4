"""Build the compare report (Markdown, self-contained HTML, PNG plots) from results.json alone."""

from .builder import build_report, collect_claims

__all__ = ["build_report", "collect_claims"]
