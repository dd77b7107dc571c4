"""Numbers for the report's tables: the same significant figures down a column, and alignment.

A table cell from an experiment is a number, a numeric string ("0.973",
"1.04e+03", "4,386") or text ("never", "1.2 [1.0, 1.4]", "12.5%"). The report
formats a column as a whole:

- floats get ``SIG`` significant figures each, trailing zeros kept
  (0.600, 350, 1.00, 33.7); when they all lie within one decade, they share
  the decimals of the one that needs most (1.000, 0.970, 0.350), so that
  the decimal points line up; when one of them needs scientific notation
  (|x| ≥ 1e6 or 0 < |x| < 1e-3), every float of the column uses it
  (1.20e-05, 3.40e-01), so that a column never mixes 1e+03 with 1.04e+03;
- integers stay exact, with thousands separators (parameter counts);
- text is left as it is;

and a column whose cells mostly start with a number is right-aligned.
"""

from __future__ import annotations

import math
import re

SIG = 3
_INT = re.compile(r"^[+-]?\d{1,3}(,\d{3})+$|^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
# A number (with separators, decimals, exponent) then the end, a space, %, × or a bracket:
# "12.5%", "0.3 → 0.9", "1.2 [1.0, 1.4]" read as numbers, a formula such as "3·2·d" does not.
_NUMERIC_START = re.compile(r"^[+\-−]?(\d[\d,]*\.?\d*|\.\d+)([eE][+-]?\d+)?($|\s|%|×|\[)")


def parse_number(cell):
    """The int or float a cell holds, or None when it is text (bools are text)."""
    if isinstance(cell, bool):
        return None
    if isinstance(cell, int):
        return cell
    if isinstance(cell, float):
        return cell
    if hasattr(cell, "item") and not isinstance(cell, str):  # a NumPy scalar
        return parse_number(cell.item())
    if not isinstance(cell, str):
        return None
    text = cell.strip()
    if _INT.match(text):
        return int(text.replace(",", ""))
    if _FLOAT.match(text):
        return float(text)
    return None


def needs_scientific(x: float) -> bool:
    """True for floats that positional notation would show with too many zeros."""
    return math.isfinite(x) and x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-3)


def sig_figs(x: float, sig: int = SIG, scientific: bool = False) -> str:
    """``x`` with ``sig`` significant figures, trailing zeros kept: 0.6 -> "0.600", 349.7 -> "350",
    1234.4 -> "1234" (never fewer digits than the integer part),
    scientific: 1.2e-5 -> "1.20e-05"."""
    if not math.isfinite(x):
        return "n/a" if math.isnan(x) else ("∞" if x > 0 else "−∞")
    if scientific:
        return f"{x:.{sig - 1}e}"
    if x == 0:
        return f"{0:.{sig - 1}f}"
    exponent = math.floor(math.log10(abs(x)))
    decimals = max(sig - 1 - exponent, 0)
    text = f"{x:.{decimals}f}"
    # Rounding may carry into a new digit (9.996 -> "10.00"): redo with one decimal fewer.
    if decimals > 0 and len(text.lstrip("-").replace(".", "").lstrip("0")) > sig:
        text = f"{x:.{decimals - 1}f}"
    return text


def format_int(n: int) -> str:
    """An exact integer with thousands separators: 12345 -> "12,345"."""
    return f"{n:,}"


def _decimals(x: float, sig: int) -> int:
    """Decimals that show ``x`` with ``sig`` significant figures in positional notation."""
    return max(sig - 1 - math.floor(math.log10(abs(x))), 0)


def format_column(cells, sig: int = SIG) -> list[str]:
    """Format one column (see the module docstring); returns the cells as strings."""
    values = [parse_number(c) for c in cells]
    if any(isinstance(v, float) for v in values):  # "1" beside "6.15e+37" is a rounded float too
        values = [float(v) if isinstance(v, int) and isinstance(c, str) else v for c, v in zip(cells, values)]
    floats = [v for v in values if isinstance(v, float)]
    scientific = any(needs_scientific(v) for v in floats)
    sizes = [abs(v) for v in floats if math.isfinite(v) and v != 0]
    # Within one decade, one number of decimals for all (each keeps >= sig figures), so that
    # the decimal points line up: 1.000, 0.970, 0.350 rather than 1.00, 0.970, 0.350.
    common = (max(_decimals(v, sig) for v in sizes)
              if sizes and not scientific and max(sizes) < 10 * min(sizes) else None)
    out = []
    for cell, v in zip(cells, values):
        if v is None:
            out.append("" if cell is None else str(cell))
        elif isinstance(v, int):
            out.append(format_int(v))
        elif common is not None and math.isfinite(v):
            out.append(f"{v:.{common}f}")
        else:
            out.append(sig_figs(v, sig, scientific))
    return out


def is_numeric_text(text: str) -> bool:
    """True when a formatted cell reads as a number (it starts with one: "12.5%", "0.3 → 0.9")."""
    return bool(_NUMERIC_START.match(text.strip()))


def numeric_columns(rows) -> list[bool]:
    """For each column of formatted rows: True when most of its non-empty cells are numbers."""
    if not rows:
        return []
    width = max(len(r) for r in rows)
    flags = []
    for j in range(width):
        texts = [r[j] for r in rows if j < len(r) and str(r[j]).strip()]
        numeric = sum(is_numeric_text(str(t)) for t in texts)
        flags.append(bool(texts) and numeric * 2 > len(texts))
    return flags


def format_rows(rows, sig: int = SIG) -> list[list[str]]:
    """Format every column of a table's rows (a list of lists); short rows are padded with ""."""
    if not rows:
        return []
    width = max(len(r) for r in rows)
    padded = [list(r) + [""] * (width - len(r)) for r in rows]
    columns = [format_column([r[j] for r in padded], sig) for j in range(width)]
    return [[columns[j][i] for j in range(width)] for i in range(len(padded))]
