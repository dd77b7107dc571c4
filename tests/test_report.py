"""The report builder and its pieces: number formatting, figure style, the page's structure.

The page is built from tests/data/report_results.json (a trimmed `rnnlab compare
--preset quick` run; regenerate it with tests/data/make_report_fixture.py).
"""

from __future__ import annotations

import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from rnnlab.experiments.base import VERDICTS, Claim
from rnnlab.report import style
from rnnlab.report.builder import SOURCE_SENTENCE, build_report, claim_anchors, collect_claims, conditions
from rnnlab.report.format import format_column, format_rows, numeric_columns, parse_number, sig_figs
from rnnlab.report.html import badge

FIXTURE = Path(__file__).parent / "data" / "report_results.json"


# ----------------------------------------------------------------------------- numbers


@pytest.mark.parametrize("x,expected", [
    (0.6, "0.600"), (349.7, "350"), (33.718272, "33.7"), (9.996, "10.0"), (0.09996, "0.100"),
    (-0.012345, "-0.0123"), (1234.4, "1234"), (0.0, "0.00"), (1.0, "1.00"),
])
def test_sig_figs_keeps_three_significant_figures(x, expected):
    assert sig_figs(x) == expected


def test_sig_figs_scientific_and_non_finite():
    assert sig_figs(1.2e-5, scientific=True) == "1.20e-05"
    assert sig_figs(float("nan")) == "n/a" and sig_figs(float("inf")) == "∞"


def test_a_column_never_mixes_notations_or_precisions():
    # The example: "1e+03" beside "1.04e+03" (both from %.3g) in one column.
    assert format_column(["1e+03", "1.04e+03"]) == ["1000", "1040"]
    # One value that needs scientific notation puts the whole column in it.
    assert format_column([33.718272, 1.2e-5, "n/a"]) == ["3.37e+01", "1.20e-05", "n/a"]
    # Within a decade the decimals are shared, so that the decimal points line up.
    assert format_column([1.0, 0.97, 0.35]) == ["1.000", "0.970", "0.350"]
    assert format_column([0.998, 1.0]) == ["0.998", "1.000"]
    # Across decades each value keeps three significant figures.
    assert format_column([0.0167, 1.05, 504.2]) == ["0.0167", "1.05", "504"]
    # Integers stay exact, with separators; a "1" among floats is a rounded float.
    assert format_column([527114, 85002]) == ["527,114", "85,002"]
    assert format_column(["6.15e+37", "1"]) == ["6.15e+37", "1.00e+00"]
    # Text passes through.
    assert format_column(["never", "0.5 [0.4, 0.6]"]) == ["never", "0.5 [0.4, 0.6]"]


def test_parse_number_reads_numbers_only():
    assert parse_number("4,386") == 4386 and parse_number("-0.5") == -0.5
    assert parse_number(True) is None and parse_number("3·2·d") is None and parse_number("n/a") is None


def test_numeric_columns_are_detected_for_right_alignment():
    rows = format_rows([["MLP", 0.5, "12.5%", "3·2·d·(T·n·m)", "0.3 → 0.9", ""],
                        ["RNN", 1.25, "7.0%", "T·d·(m + n)", "1.2 [1.0, 1.4]", ""]])
    assert numeric_columns(rows) == [False, True, True, False, True, False]


# ----------------------------------------------------------------------------- figure style


def test_every_model_has_its_own_colour_and_marker():
    kinds = ("mlp", "rnn", "lstm", "gru")
    assert len({style.model_color(k) for k in kinds}) == len(kinds)
    assert len({style.model_marker(k) for k in kinds}) == len(kinds)
    assert [style.model_label(k) for k in kinds] == ["MLP", "RNN", "LSTM", "GRU"]
    assert style.model_style("lstm") == {"color": style.model_color("lstm"), "marker": "s", "label": "LSTM"}


def test_spans_decades_decides_the_log_axis():
    assert style.spans_decades([0.6, 350]) and not style.spans_decades([0.6, 5.0])
    assert not style.spans_decades([None, 0, -1, 3.0])


def test_saved_figure_is_a_2x_png_that_carries_its_caption(tmp_path):
    plt = style.pyplot()
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([1, 2], [3, 4])
    path = style.save(fig, tmp_path / "f.png", "The LSTM's line is the flat one — look there.")
    width, height = style.png_size(path)
    assert style.read_caption(path) == "The LSTM's line is the flat one — look there."
    # bbox_inches="tight" trims the margins, so about 3 × 2 in at 200 px per inch.
    assert 450 <= width <= 640 and 300 <= height <= 440
    with pytest.raises(ValueError, match="one non-empty line"):
        style.save(plt.subplots()[0], tmp_path / "g.png", "two\nlines")


# ----------------------------------------------------------------------------- the page


class _Page(HTMLParser):
    """Ids, summary links, badges, images and external references of a page."""

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.badges, self.images, self.external = set(), [], [], [], []
        self.in_summary = self._badge = False
        self.viewport = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if a.get("id") == "summary":
            self.in_summary = True
        if tag == "a" and self.in_summary and a.get("href", "").startswith("#"):
            self.links.append(a["href"][1:])
        if tag == "span" and "badge" in a.get("class", "").split():
            self._badge = a["class"]
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag == "meta" and a.get("name") == "viewport":
            self.viewport = True
        for key in ("src", "href"):
            if a.get(key, "").startswith(("http:", "https:", "//")):
                self.external.append(a[key])

    def handle_endtag(self, tag):
        if tag == "section":
            self.in_summary = False

    def handle_data(self, data):
        if self._badge:
            self.badges.append((self._badge, data))
            self._badge = False


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    results = json.loads(FIXTURE.read_text(encoding="utf-8"))
    out = tmp_path_factory.mktemp("report")
    log = io.StringIO()
    from rich.console import Console

    paths = build_report(results, out, console=Console(file=log, force_terminal=False))
    return results, paths, log.getvalue()


def test_every_summary_link_resolves_to_a_claim_in_its_section(built):
    results, paths, _ = built
    page = _Page()
    page.feed(paths["html"].read_text(encoding="utf-8"))
    claims = collect_claims(results)
    assert page.links == claim_anchors(claims)  # one link per claim, in order
    assert len(set(page.links)) == len(claims)
    missing = [a for a in page.links if a not in page.ids]
    assert not missing, f"summary links with no target: {missing}"
    for name in results["experiments"]:
        assert f"exp-{name}" in page.ids


def test_badges_say_the_verdict_in_words(built):
    results, paths, _ = built
    page = _Page()
    page.feed(paths["html"].read_text(encoding="utf-8"))
    claims = [c for _, c in collect_claims(results)]
    words = [text for _, text in page.badges]
    assert set(words) <= set(VERDICTS)
    assert "undecided" in words  # the fixture (2 seeds) shows seeds' fourth verdict, for the browser test too
    # Each claim has a badge in the summary and one in its section; plus the tally's.
    for verdict in VERDICTS:
        n = sum(c.verdict == verdict for c in claims)
        assert words.count(verdict) == 2 * n + (1 if n else 0)
    assert badge("not supported") == '<span class="badge badge-no">not supported</span>'


def test_every_verdict_has_its_own_badge_style_with_the_word_on_it():
    from rnnlab.report.html import BADGE_CLASS, CSS

    assert set(BADGE_CLASS) == set(VERDICTS)
    assert len(set(BADGE_CLASS.values())) == len(VERDICTS)  # four looks, not one reused
    for verdict in VERDICTS:
        klass = BADGE_CLASS[verdict]
        assert badge(verdict) == f'<span class="badge {klass}">{verdict}</span>'
        rule = re.search(r"\." + klass + r" \{([^}]*)\}", CSS)
        assert rule and "background" in rule.group(1) and "color" in rule.group(1), klass
    # Told apart without colour: each badge has its own border style or fill.
    looks = {re.search(r"\." + k + r" \{([^}]*)\}", CSS).group(1) for k in BADGE_CLASS.values()}
    assert sum("dashed" in x for x in looks) == 1 and sum("dotted" in x for x in looks) == 1


def test_page_is_self_contained_and_says_where_verdicts_come_from(built):
    results, paths, _ = built
    html = paths["html"].read_text(encoding="utf-8")
    page = _Page()
    page.feed(html)
    assert page.viewport and not page.external
    assert len(page.images) == len(paths["plots"]) > 0
    assert all(src.startswith("data:image/png;base64,") for src in page.images)
    assert "Every verdict below is computed from the numbers in results.json" in html
    assert "Every verdict below is computed from the numbers in results.json" in paths["markdown"].read_text()
    assert SOURCE_SENTENCE.split(";")[0] in html
    assert html.count("<figcaption>") == len(paths["plots"])
    assert "@media print" in html and "✅" not in html and "❌" not in html


def test_every_claim_has_a_headline_and_every_figure_a_caption(built):
    results, paths, _ = built
    for name, claim in collect_claims(results):
        assert claim.headline and len(claim.headline) <= 90, (name, claim.key, claim.headline)
    for path in paths["plots"]:
        assert style.read_caption(path), path.name


def test_tables_right_align_numbers_with_one_precision_per_column(built):
    _, paths, _ = built
    html = paths["html"].read_text(encoding="utf-8")
    # The "33.718272 MFLOP": no table cell shows more than 3 significant figures of a float.
    cells = re.findall(r'<td class="num">([^<]*)</td>', html)
    assert cells
    for cell in cells:
        m = re.fullmatch(r"-?(\d+)\.(\d+)", cell)
        if m and int(m.group(1)) != 0:
            assert len(m.group(1).lstrip("0")) + len(m.group(2)) <= 4, cell


def test_the_build_reports_its_progress_in_plain_lines_off_a_terminal(built):
    results, _, log = built
    lines = log.strip().splitlines()
    n = len(results["experiments"]) + 1
    assert len(lines) == n
    assert lines[0].startswith(f"report [1/{n}] ") and lines[-1].startswith(f"report [{n}/{n}] ")


def test_conditions_banner_reports_contention_once():
    results = json.loads(FIXTURE.read_text(encoding="utf-8"))
    rows = conditions(results)
    labels = [label for label, _, _ in rows]
    assert labels.count("Contention") == 1 and "Machine" in labels
    assert "Seeds and scheduling" in labels  # the seeds, the interval, who ran the tasks: said once
    quiet = json.loads(json.dumps(results).replace('"other_load_cores"', '"_other"'))
    assert "Contention" not in [label for label, _, _ in conditions(quiet)]


def test_claim_anchors_are_unique_even_for_repeated_keys():
    c = Claim("a b", "x", "nuanced", "e")
    assert claim_anchors([("e", c), ("e", c)]) == ["claim-a-b", "claim-a-b-2"]
