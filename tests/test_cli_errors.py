"""`rnnlab compare` and `rnnlab report` on bad --out folders and on results.json files of the
wrong shape: one line, exit 2, no traceback, and nothing written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

ENV_ARGS = [sys.executable, "-m", "rnnlab"]


def _run(*argv):
    return subprocess.run([*ENV_ARGS, *map(str, argv)], capture_output=True, text=True,
                          timeout=120)


def _one_line(proc, match):
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert match in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    return path


@pytest.mark.parametrize("out, match", [("FILE", "exists and is not a folder"),
                                        ("/proc/x", "cannot create the folder"),
                                        ("FILE/sub", "cannot create the folder")])
def test_compare_bad_out_is_one_line(tmp_path, a_file, out, match):
    out = out.replace("FILE", str(a_file))
    line = _one_line(_run("compare", "--preset", "quick", "--only", "digits", "--out", out), match)
    assert line.startswith(f"rnnlab compare: error: --out {out}")
    assert a_file.read_text() == "not a folder"


def _results(tmp_path, value):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(value))
    return path


@pytest.mark.parametrize("out, match", [("FILE", "exists and is not a folder"),
                                        ("/proc/x", "cannot create the folder")])
def test_report_bad_out_is_one_line(tmp_path, a_file, out, match):
    """The shape check runs first, so give it a valid (if tiny) training_time entry."""
    from rnnlab.experiments import training_time
    from rnnlab.experiments.base import Progress
    import numpy as np
    tiny = {"d": 2, "n": 2, "m": 4, "T": 2, "k": 1, "seeds": 1, "warmup": 1, "repeats": 2,
            "lr": 0.01}
    result = training_time.run(tiny, rng=np.random.default_rng(0), progress=Progress())
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"experiments": {"training_time": result}}, default=float))
    out = out.replace("FILE", str(a_file))
    _one_line(_run("report", path, "--out", out), f"--out {out}: {match}")


@pytest.mark.parametrize("value, match", [
    ({"experiments": {}}, "holds no experiments"),
    ({"experiments": {"digits": 5}}, "experiment 'digits': expected an object, got int"),
    ({"experiments": {"bogus": {}}}, "unknown experiment 'bogus'; known: digits"),
    ({"experiments": {"digits": {"models": {}}}}, "experiment 'digits' is not as rnnlab compare"),
    ({"experiments": {"training_time": {"config": 3}}},
     "experiment 'training_time' is not as rnnlab compare"),
])
def test_report_on_results_of_the_wrong_shape(tmp_path, value, match):
    path = _results(tmp_path, value)
    _one_line(_run("report", path, "--out", tmp_path / "out"), match)
    assert not (tmp_path / "out" / "report.md").exists()


def test_compare_only_help_lists_the_experiments():
    proc = _run("compare", "--help")
    assert proc.returncode == 0, proc.stderr
    from rnnlab.compare import available_experiments
    names = available_experiments()
    assert len(names) >= 2
    help_text = " ".join(proc.stdout.split())
    assert f"run only these experiments (default: all): {', '.join(names)}" in help_text
