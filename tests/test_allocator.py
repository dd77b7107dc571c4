"""reuse_freed_memory: freed buffers are reused instead of page-faulted in anew."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from rnnlab.allocator import _glibc, reuse_freed_memory

# A child process (so that nothing this test process already did to malloc counts)
# runs a loop shaped like a training step: a few MiB of buffers allocated, written
# and freed together, and prints its minor page faults per iteration.
_CHILD = textwrap.dedent("""
    import resource, sys
    import numpy as np
    from rnnlab.allocator import reuse_freed_memory
    if sys.argv[1] != "default":
        assert reuse_freed_memory(large_blocks=sys.argv[1] == "large")
    shape = (256, 512) if sys.argv[2] == "small" else (256, 64 * 1024)
    def step():
        buffers = [np.ones(shape, np.float32) for _ in range(6)]  # 6 x 512 KiB or 6 x 64 MiB
        return sum(float(b[0, 0]) for b in buffers)
    for _ in range(5):
        step()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        step()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
""")


def _faults_per_step(mode: str, size: str = "small") -> float:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode, size], check=True, capture_output=True,
                         text=True, timeout=120)
    return float(out.stdout.strip())


@pytest.mark.skipif(_glibc() is None, reason="mallopt thresholds are a glibc feature")
def test_reused_buffers_do_not_page_fault():
    default, tuned = _faults_per_step("default"), _faults_per_step("tuned")
    pages_per_step = 6 * 512 * 1024 // 4096
    # glibc's defaults trim the freed buffers and fault most pages in again each step.
    assert default > pages_per_step / 4, default
    assert tuned < 4, tuned


@pytest.mark.skipif(_glibc() is None, reason="mallopt thresholds are a glibc feature")
def test_large_blocks_are_reused_only_when_asked():
    """Blocks above glibc's 32 MiB mmap cap are mapped anew each step unless large_blocks."""
    tuned, large = _faults_per_step("tuned", "large"), _faults_per_step("large", "large")
    assert tuned > 6 * 32, tuned  # at least one fault per 2 MiB (a huge page) of each buffer
    assert large < 4, large


@pytest.mark.parametrize("bad", [0, -1, 2 ** 31, 1.5, True, "32M"])
def test_bad_thresholds_are_refused(bad):
    with pytest.raises(ValueError, match="bytes"):
        reuse_freed_memory(mmap_threshold=bad)
    with pytest.raises(ValueError, match="bytes"):
        reuse_freed_memory(trim_threshold=bad)
    with pytest.raises(TypeError, match="large_blocks"):
        reuse_freed_memory(large_blocks="yes")
