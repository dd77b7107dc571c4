"""Regenerate report_results.json, the results the report tests build from.

    python tests/data/make_report_fixture.py            # runs `rnnlab compare --preset quick --workers 2`
    python tests/data/make_report_fixture.py RESULTS    # trims an existing results.json

The quick preset runs 2 seeds of every learned experiment (per-seed tasks on 2
worker processes, then the timing experiments alone): a few minutes on 2 cores.

Trimmed: floats rounded to 4 significant figures, compact JSON. Rerun it when
the experiments' result dicts change shape.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def trim(value):
    """The same structure with every float rounded to 4 significant figures."""
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {k: trim(v) for k, v in value.items()}
    if isinstance(value, list):
        return [trim(v) for v in value]
    return value


def main(argv) -> int:
    if argv:
        source = Path(argv[0])
    else:
        out = Path(tempfile.mkdtemp(prefix="rnnlab-fixture-"))
        subprocess.run([sys.executable, "-m", "rnnlab", "compare", "--preset", "quick", "--workers", "2",
                        "--out", str(out)], check=True)
        source = out / "results.json"
    results = trim(json.loads(source.read_text(encoding="utf-8")))
    target = HERE / "report_results.json"
    target.write_text(json.dumps(results, separators=(",", ":"), ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{target}: {target.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
