"""One look for every figure of the report: model colours and markers, axes, legends, files.

Every experiment draws with these helpers, so that a model looks the same in
every figure (the LSTM is always the same orange with the same square), axes
that span decades are logarithmic, legends sit outside the data, and each
figure is saved as a 2x PNG that carries its one-line caption.

The palette is Okabe & Ito's colour-blind-safe set; each model also has its own
marker, so that the figures still read in grey.
"""

from __future__ import annotations

from pathlib import Path

# Model key -> (label, colour, marker). "rnn_tanh"/"rnn_relu" are the two RNN
# nonlinearities of the gradient-flow experiment: the RNN's hue, told apart by marker.
MODELS = {
    "mlp": ("MLP", "#0072B2", "o"),        # blue, circle
    "rnn": ("RNN", "#D55E00", "^"),        # vermillion, triangle
    "rnn_tanh": ("RNN (tanh)", "#D55E00", "^"),
    "rnn_relu": ("RNN (relu)", "#CC79A7", "v"),  # reddish purple, down triangle
    "lstm": ("LSTM", "#009E73", "s"),      # bluish green, square
    "gru": ("GRU", "#E69F00", "D"),        # orange, diamond
}
NEUTRAL = "#666666"  # baselines, references, "other" lines
ACCENT = "#56B4E9"   # sky blue: a non-model series (e.g. a phase, a run)
SERIES = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")

FONT_SIZE = 10
DPI = 100          # CSS pixels per figure inch: the figure is shown at figsize × DPI px
SCALE = 2          # saved at SCALE × DPI, so that it stays sharp on high-density screens
CAPTION_KEY = "Description"  # the PNG text chunk that carries the caption


def model_color(kind: str) -> str:
    """The colour of model ``kind`` ("mlp", "rnn", "lstm", "gru", ...); grey if unknown."""
    return MODELS.get(kind, (None, NEUTRAL, None))[1]


def model_marker(kind: str) -> str:
    """The marker of model ``kind``; a dot if unknown."""
    return MODELS.get(kind, (None, None, "."))[2]


def model_label(kind: str) -> str:
    """The display name of model ``kind`` (its key upper-cased if unknown)."""
    return MODELS.get(kind, (kind.upper(),))[0]


def model_style(kind: str) -> dict:
    """Keyword arguments for ``ax.plot``/``ax.errorbar``: colour, marker and label of ``kind``."""
    return {"color": model_color(kind), "marker": model_marker(kind), "label": model_label(kind)}


def pyplot():
    """matplotlib.pyplot on the Agg backend, with the report's fonts and grid set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.size": FONT_SIZE, "axes.titlesize": FONT_SIZE + 1, "axes.labelsize": FONT_SIZE,
        "xtick.labelsize": FONT_SIZE - 1, "ytick.labelsize": FONT_SIZE - 1,
        "legend.fontsize": FONT_SIZE - 1, "figure.titlesize": FONT_SIZE + 2,
        "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
        "lines.linewidth": 1.6, "lines.markersize": 5, "savefig.dpi": DPI * SCALE,
    })
    return plt


def spans_decades(values, decades: float = 1.3) -> bool:
    """True when the positive values span more than ``decades`` powers of ten (a log axis helps)."""
    pos = [float(v) for v in values if v is not None and v == v and v > 0]
    if len(pos) < 2:
        return False
    import math

    return math.log10(max(pos) / min(pos)) > decades


def log_axis(ax, axis: str = "y") -> None:
    """A log ``axis`` whose labels are plain numbers (0.1, 1, 10, 100), not powers of ten;
    scientific only beyond 1e-4..1e5."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    (ax.set_yscale if axis == "y" else ax.set_xscale)("log")
    target = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    narrow = lo > 0 and math.log10(hi / lo) < 2.5  # few decades: label 1, 2, 5 of each
    target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if narrow else (1.0,)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}" if 1e-4 <= v < 1e5 else f"{v:.0e}"))
    target.set_minor_formatter(NullFormatter())


def auto_log(ax, values, axis: str = "y", decades: float = 1.3) -> bool:
    """Set a log ``axis`` on ``ax`` when ``values`` span more than ``decades``; return whether it did."""
    if spans_decades(values, decades):
        log_axis(ax, axis)
        return True
    return False


def legend_outside(ax, *, loc: str = "right", ncol: int = 1, handles=None, labels=None, title=None):
    """A legend beside (``loc="right"``) or under (``loc="below"``) the axes, never over the data."""
    kwargs = {"frameon": False, "ncol": ncol, "title": title}
    if handles is not None:
        kwargs.update(handles=handles, labels=labels)
    if loc == "below":
        return ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), **kwargs)
    return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, **kwargs)


def model_legend(fig, kinds, extra=(), *, ncol=None):
    """One legend for the whole figure, above its axes: a coloured marker line per model,
    then ``extra`` (handle, label) pairs, e.g. for line styles ("fit", "formula")."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=model_color(k), marker=model_marker(k), lw=1.6) for k in kinds]
    labels = [model_label(k) for k in kinds]
    for handle, label in extra:
        handles.append(handle)
        labels.append(label)
    return fig.legend(handles, labels, loc="upper center", ncol=ncol or len(labels), frameon=False,
                      bbox_to_anchor=(0.5, 1.0))


def line_key(label: str, **line) -> tuple:
    """A (handle, label) pair for :func:`model_legend`: a grey line drawn with ``line`` kwargs."""
    from matplotlib.lines import Line2D

    line.setdefault("color", NEUTRAL)
    return Line2D([], [], **line), label


def save(fig, path, caption: str) -> Path:
    """Write ``fig`` as a 2x PNG at ``path`` with ``caption`` stored in it, close it, return the path.

    The caption (one sentence: what to look at) goes into the PNG's
    "Description" text chunk, where :func:`read_caption` finds it; the report
    prints it under the figure.
    """
    import matplotlib.pyplot as plt

    if not caption or "\n" in caption:
        raise ValueError(f"caption must be one non-empty line, got {caption!r}")
    path = Path(path)
    fig.savefig(path, dpi=DPI * SCALE, bbox_inches="tight", pad_inches=0.08,
                metadata={CAPTION_KEY: caption})
    plt.close(fig)
    return path


def read_caption(path) -> str:
    """The caption stored by :func:`save` in a PNG ("" when it has none)."""
    from PIL import Image

    with Image.open(path) as image:
        return str(getattr(image, "text", {}).get(CAPTION_KEY, ""))


def png_size(path) -> tuple[int, int]:
    """(width, height) in pixels of a PNG, read from its header."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG file")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
