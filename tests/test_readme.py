"""The README's Python examples run, in order, as a user would paste them, and print what
the README says they print."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_python_blocks_run(torch):
    blocks = _blocks()
    assert blocks, "the README has no Python examples"
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102


def test_readme_gradcheck_prints_what_the_readme_says():
    """The gradcheck example is seeded: run twice, it prints the README's line both times.
    The line was made by the compiled loop that `auto` picks at this size; NumPy's loop
    rounds differently (another worst element, a few 1e-8), so without numba only the
    form and the pass are compared."""
    from rnnlab.functional.backend import loops_for
    blocks = _blocks()
    index = next(i for i, b in enumerate(blocks) if "gradcheck(" in b)
    expected = re.search(r"^# (gradcheck: .*)$", blocks[index], re.M).group(1)
    printed = []
    for _ in range(2):
        namespace, out = {}, io.StringIO()
        for block in blocks[:index]:
            if "import torch" not in block:
                exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
        with contextlib.redirect_stdout(out):
            exec(compile(blocks[index], str(README), "exec"), namespace)  # noqa: S102
        printed.append(out.getvalue().strip())
    assert printed[0] == printed[1]
    if loops_for(2, 4) != "numpy":
        assert printed[0] == expected
    else:
        m = re.fullmatch(r"gradcheck: worst relative error (\S+) at \S+\[[\d, ]+\] "
                         r"\(126 elements checked\)", printed[0])
        assert m and float(m.group(1)) < 1e-6, printed[0]
