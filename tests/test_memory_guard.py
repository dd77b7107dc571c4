"""Sizes that cannot fit are refused before anything is allocated, naming the estimate and
the memory available (issue 18 item 7)."""

from __future__ import annotations

import resource
import time

import numpy as np
import pytest

from rnnlab import memory_guard, nn
from rnnlab.memory_guard import MemoryBudgetError, available_memory


def _fake_system(monkeypatch, tmp_path, *, meminfo_kb=None, cgroup=None, current=0):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       65536000 kB\n" + (
        "" if meminfo_kb is None else f"MemAvailable:   {meminfo_kb} kB\n"))
    root = tmp_path / "cgroup"
    (root / "slice").mkdir(parents=True)
    if cgroup is not None:
        (root / "slice" / "memory.max").write_text(f"{cgroup}\n")
        (root / "slice" / "memory.current").write_text(f"{current}\n")
    (tmp_path / "self-cgroup").write_text("0::/slice\n")
    monkeypatch.setattr(memory_guard, "MEMINFO", meminfo)
    monkeypatch.setattr(memory_guard, "CGROUP_ROOT", root)
    monkeypatch.setattr(memory_guard, "PROC_SELF_CGROUP", tmp_path / "self-cgroup")
    monkeypatch.setattr(memory_guard, "_rlimit_available", lambda: None)


@pytest.mark.parametrize("meminfo_kb, cgroup, current, expected, source", [
    (4_000_000, None, 0, 4_000_000 * 1024, "MemAvailable"),
    (4_000_000, "max", 0, 4_000_000 * 1024, "MemAvailable"),
    (4_000_000, 3 << 30, 1 << 30, 2 << 30, "cgroup"),
    (1_000_000, 3 << 30, 1 << 30, 1_000_000 * 1024, "MemAvailable"),
    (None, 3 << 30, 0, 3 << 30, "cgroup"),
    (None, None, 0, None, "unknown"),
])
def test_available_memory_is_the_smallest_known_figure(monkeypatch, tmp_path, meminfo_kb,
                                                       cgroup, current, expected, source):
    _fake_system(monkeypatch, tmp_path, meminfo_kb=meminfo_kb, cgroup=cgroup, current=current)
    value, where = available_memory()
    assert value == expected and source in where


def test_a_layer_too_large_is_refused_in_its_constructor():
    start = time.perf_counter()
    with pytest.raises(MemoryBudgetError) as info:
        nn.LSTM(2, 10 ** 7)
    assert time.perf_counter() - start < 5  # nothing was allocated first
    exc = info.value
    assert isinstance(exc, ValueError) and isinstance(exc, MemoryError)
    params = 4 * 10 ** 7 * (2 + 10 ** 7 + 2)
    assert exc.estimate == params * 4 and exc.available < exc.estimate
    message = str(exc)
    assert "LSTM(input_size=2, hidden_size=10000000, num_layers=1)" in message
    assert f"{params:,} parameters" in message and "1.4 PiB" in message
    assert memory_guard.format_bytes(exc.available) in message


@pytest.mark.parametrize("make, count", [
    (lambda d: nn.Linear(300, 200, dtype=d), 200 * 300 + 200),
    (lambda d: nn.RNN(10, 300, num_layers=2, dtype=d), 300 * 10 + 300 * 300 * 3 + 4 * 300),
    (lambda d: nn.LSTMCell(100, 200, dtype=d), 800 * 300 + 1600),
    (lambda d: nn.LSTM(7, 50, bidirectional=True, bias=False, dtype=d),
     2 * (200 * 7 + 200 * 50)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_estimate_is_the_parameters_exactly(monkeypatch, make, count, dtype):
    """Refused with one byte too little, built with exactly enough; small layers never look."""
    nbytes = count * np.dtype(dtype).itemsize
    monkeypatch.setattr(memory_guard, "CHECK_FROM_BYTES", 1000)
    monkeypatch.setattr(memory_guard, "available_memory", lambda: (nbytes - 1, "test"))
    with pytest.raises(MemoryBudgetError) as info:
        make(dtype)
    assert info.value.estimate == nbytes
    monkeypatch.setattr(memory_guard, "available_memory", lambda: (nbytes, "test"))
    layer = make(dtype)
    assert sum(p.data.nbytes for p in layer.parameters()) == nbytes
    monkeypatch.setattr(memory_guard, "available_memory", lambda: (0, "test"))
    nn.LSTM(2, 2, dtype=dtype)  # 48 parameters: below CHECK_FROM_BYTES, never checked


def test_the_check_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(memory_guard, "available_memory", lambda: (1, "test"))
    monkeypatch.setattr(memory_guard, "CHECK_FROM_BYTES", 1000)
    with pytest.raises(MemoryBudgetError):
        nn.Linear(30, 30)
    monkeypatch.setenv("RNNLAB_MEMORY_CHECK", "0")
    nn.Linear(30, 30)


def test_the_rlimit_counts(monkeypatch):
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        pytest.skip("an address-space limit is already set")
    assert memory_guard._rlimit_available() is None
    monkeypatch.setattr(memory_guard.resource, "getrlimit", lambda which: (64 << 30, hard))
    value = memory_guard._rlimit_available()
    assert 0 < value < 64 << 30
