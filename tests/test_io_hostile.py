"""Hostile checkpoint files (issue 18 item 5), each opened by a real process that must answer
with a CheckpointError in bounded time and memory: a header declaring 10^12 elements over a
sparse file, a large tensor in a foreign file, a million empty tensors."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap

import pytest

# The child loads `path` into an LSTM(8, 32) (both loaders) and prints one JSON line:
# the error of each, the seconds taken and the growth of its peak RSS while loading.
CHILD = textwrap.dedent("""
    import json, resource, sys, time
    import numpy as np
    from rnnlab.io import CheckpointError, load_checkpoint, load_torch_file
    from rnnlab.models import SequenceModel
    from rnnlab.optim import Adam
    model = SequenceModel("lstm", 2, 32, 1, rng=0)
    opt = Adam(model.parameters())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {}
    for name, load in (("checkpoint", lambda: load_checkpoint(sys.argv[1], model, opt)),
                       ("torch", lambda: load_torch_file(model, sys.argv[1]))):
        start = time.perf_counter()
        try:
            load()
            out[name] = "loaded"
        except CheckpointError as exc:
            out[name] = str(exc)
        out[name + "_seconds"] = time.perf_counter() - start
    out["rss_growth_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    print(json.dumps(out))
""")


def _child(path):
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]  # no panic, no traceback
    return json.loads(proc.stdout)


def _write(path, header: dict, data_bytes: int, sparse=True):
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        if sparse:
            f.truncate(8 + len(raw) + data_bytes)
        else:
            f.write(b"\0" * data_bytes)
    return path


@pytest.mark.parametrize("fmt", ["pt", "rnnlab.checkpoint"])
def test_a_header_of_a_trillion_elements_over_a_sparse_file(tmp_path, fmt):
    n = 10 ** 12
    path = tmp_path / "huge.safetensors"
    try:
        _write(path, {"__metadata__": {"format": fmt},
                      "model.body.weight_ih_l0": {"dtype": "F32", "shape": [n],
                                                  "data_offsets": [0, 4 * n]}}, 4 * n)
    except OSError as exc:
        pytest.skip(f"this file system takes no 4 TB sparse file: {exc}")
    out = _child(path)
    if fmt == "pt":
        assert "not an rnnlab checkpoint" in out["checkpoint"]
    else:
        assert "format version 'None' is not supported" in out["checkpoint"]
    assert "state_dict keys do not match" in out["torch"]
    assert out["checkpoint_seconds"] < 1 and out["torch_seconds"] < 1
    assert out["rss_growth_mib"] < 32


def test_a_large_tensor_in_a_foreign_file_is_never_read(tmp_path):
    """400 MB of one tensor under format "pt": refused from the header alone (the loader had
    copied every tensor first: 4.4 GB of RSS and 26-46 s for 1.5 GB)."""
    size = 100 * 2 ** 20
    path = _write(tmp_path / "big.safetensors",
                  {"__metadata__": {"format": "pt"},
                   "body.weight_ih_l0": {"dtype": "F32", "shape": [size],
                                         "data_offsets": [0, 4 * size]}}, 4 * size)
    out = _child(path)
    assert "not an rnnlab checkpoint" in out["checkpoint"]
    assert "state_dict keys do not match" in out["torch"]
    assert out["checkpoint_seconds"] < 1 and out["torch_seconds"] < 1
    assert out["rss_growth_mib"] < 32


def test_a_rnnlab_checkpoint_with_a_large_tensor_of_the_wrong_shape(tmp_path):
    size = 100 * 2 ** 20
    header = {"__metadata__": {k: "null" for k in ("config", "rng", "optimizer")},
              "model.body.weight_ih_l0": {"dtype": "F32", "shape": [size, 1],
                                          "data_offsets": [0, 4 * size]}}
    header["__metadata__"].update(format="rnnlab.checkpoint", format_version="1", step="0",
                                  metrics="{}", sha256="0" * 64)
    out = _child(_write(tmp_path / "big.safetensors", header, 4 * size))
    assert "model parameters do not match: missing ['body.weight_hh_l0'" in out["checkpoint"]
    assert out["checkpoint_seconds"] < 1 and out["rss_growth_mib"] < 32


def test_a_million_empty_tensors(tmp_path):
    """The header alone is ~60 MB: refused by its length before it is parsed (it had taken
    1.0 GB and 14 s)."""
    header = {"__metadata__": {"format": "pt"}}
    header.update({f"t{i}": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}
                   for i in range(10 ** 6)})
    out = _child(_write(tmp_path / "many.safetensors", header, 0, sparse=False))
    for name in ("checkpoint", "torch"):
        assert "longer than the" in out[name], out[name]
        assert out[name + "_seconds"] < 1
    assert out["rss_growth_mib"] < 32


def test_overlapping_and_short_tensors_are_refused(tmp_path):
    base = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}
    cases = {
        "overlap": ({"a": base, "b": {**base}}, 8, "a gap or an overlap"),
        "short data": ({"a": base}, 4, "the file has 4"),
        "size mismatch": ({"a": {**base, "shape": [3]}}, 8, "is 12 bytes, its offsets span 8"),
        "bad dtype": ({"a": {**base, "dtype": "F128"}}, 8, "unknown dtype"),
        "negative shape": ({"a": {**base, "shape": [-2]}}, 8, "list of integers >= 0"),
    }
    for name, (header, data, match) in cases.items():
        path = _write(tmp_path / f"{name}.safetensors",
                      {"__metadata__": {"format": "pt"}, **header}, data, sparse=False)
        out = _child(path)
        assert match in out["torch"], (name, out["torch"])
        assert match in out["checkpoint"], (name, out["checkpoint"])


def test_the_loader_reads_in_bounded_memory(tmp_path):
    """A real checkpoint of a 128 MB model loads with a peak RSS growth of at most twice
    the model's size plus a small constant (the new arrays and the rollback copy)."""
    script = textwrap.dedent("""
        import resource, sys
        import numpy as np
        from rnnlab.io import load_checkpoint, save_checkpoint
        from rnnlab.models import SequenceModel
        model = SequenceModel("lstm", 2, 2000, 1, rng=0)   # 32 M float32 = 128 MB
        size = sum(p.data.nbytes for p in model.parameters())
        save_checkpoint(sys.argv[1], model, step=0)
        target = SequenceModel("lstm", 2, 2000, 1, rng=1)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        load_checkpoint(sys.argv[1], target)
        growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        assert all(np.array_equal(a.data, b.data) for a, b in
                   zip(model.parameters(), target.parameters()))
        print(growth / size)
    """)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "c.safetensors")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert float(proc.stdout) <= 2.2, proc.stdout
