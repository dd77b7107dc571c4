"""Machine facts recorded beside every benchmark, and thread pinning for both frameworks."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from .. import __version__

__all__ = ["cpu_model", "loadavg", "OtherLoad", "wait_for_quiet", "machine_facts",
           "pinned_threads", "current_backend", "loops_for", "backend"]


def current_backend() -> str:
    """The backend setting of rnnlab's recurrent time loops ("numpy" when there is no choice)."""
    try:
        from ..functional.backend import get_backend
    except ImportError:
        return "numpy"
    return get_backend()


def loops_for(batch: int, hidden: int, cell: str | None = None, steps: int | None = None) -> str:
    """The time loops that the current backend setting runs for a (batch, hidden) layer: with
    ``cell`` ("lstm", "gru", "rnn_tanh") and ``steps``, the float32 forward plan's name (see
    :mod:`rnnlab.kernels.planner`: "fused+packed", ...), else the backend's rule."""
    try:
        from ..functional import backend as _backend
    except ImportError:
        return "numpy"
    if cell is not None and steps is not None:
        from ..kernels import planner
        return planner.plan_name(planner.plan_for(cell, batch, hidden, np.dtype(np.float32),
                                                  steps, False))
    pick = getattr(_backend, "loops_for", None)
    return pick(batch, hidden) if pick is not None else _backend.get_backend()


@contextlib.contextmanager
def backend(name: str | None):
    """Run with rnnlab's recurrent backend ``name`` ("auto", "numpy", "numba"), or as is for None.

    Raises:
        ValueError: the backend is unknown or unavailable.
    """
    if name is None:
        yield
        return
    try:
        from ..functional.backend import use_backend
    except ImportError:
        if name != "numpy":
            raise ValueError(f"this rnnlab has only the numpy backend, got {name!r}") from None
        yield
        return
    with use_backend(name):
        yield


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none): other work
    on the machine, which skews absolute times (interleaved ratios hold better)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _proc_stat_busy() -> float | None:
    """Seconds of CPU time all processes have used since boot (Linux /proc/stat), or None."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        ticks = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / ticks  # guest time is already inside user


class OtherLoad:
    """How many cores other processes kept busy during a block (None off Linux).

    ``with OtherLoad() as load: ...`` then ``load.cores``: (CPU time of the whole
    machine - CPU time of this process) / wall time. Near 0 on a quiet machine;
    a point measured while other work ran can be spotted and rerun.
    """

    cores: float | None = None

    def __enter__(self):
        self._busy, self._own, self._wall = _proc_stat_busy(), time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        busy = _proc_stat_busy()
        wall = time.perf_counter() - self._wall
        if busy is None or self._busy is None or wall <= 0:
            self.cores = None
        else:
            own = time.process_time() - self._own
            self.cores = max(0.0, (busy - self._busy - own) / wall)
        return False


def wait_for_quiet(threshold: float, timeout: float, tick: float = 0.5) -> float | None:
    """Sleep until other processes keep at most ``threshold`` cores busy (measured over
    ``tick`` seconds), or ``timeout`` seconds pass. Returns the last load seen."""
    deadline = time.perf_counter() + timeout
    while True:
        with OtherLoad() as load:
            time.sleep(tick)
        if load.cores is None or load.cores <= threshold or time.perf_counter() >= deadline:
            return load.cores


def _usable_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()


@contextlib.contextmanager
def pinned_threads(threads: int, torch=None):
    """Pin NumPy's BLAS (threadpoolctl) and torch (``set_num_threads``) to ``threads``.

    Both are restored on exit. ``torch`` is the torch module, or None.
    """
    previous = torch.get_num_threads() if torch is not None else None
    with threadpool_limits(limits=threads, user_api="blas"):
        if torch is not None:
            torch.set_num_threads(threads)
        try:
            yield
        finally:
            if torch is not None:
                torch.set_num_threads(previous)


def machine_facts(threads: int, torch=None) -> dict:
    """CPU, cores, versions, BLAS libraries and threads, as plain JSON values.

    Call inside :func:`pinned_threads` so that the thread counts reported are
    the ones in force.
    """
    pools = threadpool_info()
    blas = [p for p in pools if p.get("user_api") == "blas"]
    facts = {
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": _usable_cpus(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "rnnlab": __version__,
        "numpy": np.__version__,
        "torch": None if torch is None else torch.__version__,
        "threads": threads,
        "loadavg": loadavg(),
        "rnnlab_backend": current_backend(),
        "blas": [{"library": p.get("internal_api"), "version": p.get("version"),
                  "kernel": p.get("architecture"), "threading_layer": p.get("threading_layer"),
                  "num_threads": p.get("num_threads"), "prefix": p.get("prefix")}
                 for p in blas],
        "threadpools": pools,
        "env": {name: os.environ[name] for name in
                ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                 "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
                if name in os.environ},
    }
    if facts["rnnlab_backend"] != "numpy":
        try:
            import numba

            facts["numba"] = numba.__version__
        except ImportError:
            pass
    if torch is not None:
        facts["torch_threads"] = torch.get_num_threads()
        facts["torch_mkldnn"] = bool(torch.backends.mkldnn.is_available())
    return facts
