"""Shared test helpers: torch as the oracle, and the error measure of DESIGN.md."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import numpy as np
import pytest

_CACHE = {}


def pytest_configure(config):
    """Run the suite against a cache folder of its own (probe verdicts, plans), never the
    developer's ~/.cache/rnnlab; child processes inherit it. RNNLAB_NUMBA=0 hides numba
    from every import, as a plain ``pip install rnnlab`` would."""
    _CACHE["dir"] = tempfile.mkdtemp(prefix="rnnlab-test-cache-")
    os.environ["XDG_CACHE_HOME"] = _CACHE["dir"]
    # The tests check paths by their results; timing them would only slow the suite.
    os.environ.setdefault("RNNLAB_PLAN", "off")
    if os.environ.get("RNNLAB_NUMBA", "").strip() == "0":
        sys.modules["numba"] = None  # `import numba` raises ImportError from now on


def pytest_unconfigure(config):
    if "dir" in _CACHE:
        shutil.rmtree(_CACHE.pop("dir"), ignore_errors=True)

# float64 ≤ 1e-10, float32 ≤ 1e-4, as max abs error over max abs value.
TOL = {np.float64: 1e-10, np.float32: 1e-4}


def rel_err(actual, expected) -> float:
    """max |actual - expected| / max |expected| (0 when both are all zero)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"shape {actual.shape} != {expected.shape}"
    scale = np.abs(expected).max(initial=0.0)
    diff = np.abs(actual - expected).max(initial=0.0)
    if scale == 0.0:
        return diff
    return diff / scale


def assert_close(actual, expected, dtype, what=""):
    err = rel_err(actual, expected)
    assert err <= TOL[dtype], f"{what}: relative error {err:.3e} > {TOL[dtype]:.0e}"
    return err


def _backends():
    from rnnlab.functional.backend import numba_available
    return ["numpy", "numba", "fused"] if numba_available() else ["numpy"]


@pytest.fixture(params=_backends())
def backend(request):
    """Run a test once per implementation of the time loops (both are tested against torch)."""
    from rnnlab.functional.backend import use_backend
    with use_backend(request.param):
        yield request.param


@pytest.fixture
def torch():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


def to_torch(torch, a, requires_grad=False):
    t = torch.tensor(np.array(a))
    t.requires_grad_(requires_grad)
    return t
