"""The elementwise pool's crossover (rnnlab.kernels.calibrate): taken from the timings
(fake ones here, never real speed), cached per machine and versions, the constant when
RNNLAB_PLAN=off."""

from __future__ import annotations

import pytest

from rnnlab.kernels import blas_pool
from rnnlab.kernels import calibrate, planner, timing


def test_the_crossover_is_where_the_pool_wins_from_there_on():
    one = {1: 1.0, 2: 2.0, 4: 4.0, 8: 8.0}
    assert calibrate.threshold(one, {1: 2.0, 2: 1.5, 4: 2.0, 8: 4.0}) == 2
    assert calibrate.threshold(one, {1: 0.5, 2: 2.5, 4: 2.0, 8: 4.0}) == 4  # not at 2: from 4
    assert calibrate.threshold(one, {1: 0.5, 2: 1.0, 4: 2.0, 8: 8.0}) == calibrate.NEVER
    within_margin = {size: t * (1 - timing.MARGIN / 2) for size, t in one.items()}
    assert calibrate.threshold(one, within_margin) == calibrate.NEVER


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(calibrate, "_memo", {})
    monkeypatch.setattr(planner, "_state", {})
    calls = []

    def fake(threads):
        calls.append(threads)
        return {1 << 14: 1.0, 1 << 15: 2.0}, {1 << 14: 1.5, 1 << 15: 1.0}

    monkeypatch.setattr(calibrate, "_measure", fake)
    return calls


def test_measured_once_then_read_from_disk(fresh, monkeypatch):
    planner.set_mode("measure")
    assert calibrate.pool_min_elements(2) == 1 << 15 and fresh == [2]
    monkeypatch.setattr(calibrate, "_memo", {})  # a new process: only the disk remembers
    assert calibrate.pool_min_elements(2) == 1 << 15 and fresh == [2]
    assert calibrate.pool_min_elements(3) == 1 << 15 and fresh == [2, 3]  # another pool size


def test_off_and_cached_modes_keep_the_constant(fresh):
    planner.set_mode("off")
    assert calibrate.pool_min_elements(2) == blas_pool.MIN_ELEMENTS
    calibrate._memo.clear()
    planner.set_mode("cached")
    assert calibrate.pool_min_elements(2) == blas_pool.MIN_ELEMENTS
    assert not fresh
