"""Hooks into other libraries' internals prove themselves in a child process first.

Three fast paths rely on what another library does not promise:

- ``blas_pool``: OpenBLAS's internal ``blas_level1_thread`` and its calling
  convention (:mod:`rnnlab.kernels.blas_pool`);
- ``numpy_tanh``: NumPy's float32 tanh loop, found by address in the ufunc's
  C struct and called from compiled code (:mod:`rnnlab.kernels.numpy_tanh`);
- ``llvm_kernels``: kernels written in LLVM IR through numba's and llvmlite's
  extension API (:mod:`rnnlab.kernels.packed_gemm`, :mod:`.transpose`).

If one of those changes, its first use can write through a wrong pointer: a
segfault, which no ``except`` catches. So before the user's process runs a
hook, :func:`proven` runs the hook's own check (its ``prove()`` function) in a
child process: ``sys.executable`` importing this same rnnlab. A verdict is
"proven" only when the child exits 0 and reports success. A crash, a nonzero
exit, a timeout or a failed check disables the path, and the callers take
their plain NumPy or OpenBLAS route. Verdicts are cached on disk (see
:mod:`.cache`: keyed by the machine and every library version), so a machine
pays the child (~1-3 s, most of it numba compiling) once per set of versions;
a timeout is not cached (the machine may just have been busy).

Set ``RNNLAB_PROBE_TEST_ABORT=<name>`` and that probe's child calls
``os.abort()`` before its check: the tests' way to show a crash is survived.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from . import cache

__all__ = ["PROBES", "proven", "verdict", "verdicts", "forget"]

# name -> "module:function"; the function runs in the child, returns a JSON-able dict with
# "ok" (True, False, or None for "cannot tell here": not cached) and "detail".
PROBES = {
    "blas_pool": "rnnlab.kernels.blas_pool:prove",
    "numpy_tanh": "rnnlab.kernels.numpy_tanh:prove",
    "llvm_kernels": "rnnlab.kernels.packed_gemm:prove",
}
# Bumped when a probe's check changes, so that older verdicts are not trusted.
PROBE_VERSION = 1
TIMEOUT_SECONDS = 300.0  # a cold numba cache compiles for a while on a loaded machine
_MARK = "RNNLAB-PROBE "
_FILE = "probes.json"

_lock = threading.Lock()
_memo: dict[str, dict] = {}  # this process's verdicts


def proven(name: str) -> bool:
    """Whether the hook ``name`` passed its check in a child process (cached)."""
    found = _memo.get(name)
    if found is None:
        found = verdict(name)
    return found.get("ok") is True


def verdict(name: str) -> dict:
    """The verdict of ``name``: from this process, else the disk cache, else a new child."""
    if name not in PROBES:
        raise ValueError(f"unknown probe {name!r}; expected one of {sorted(PROBES)}")
    with _lock:
        if name in _memo:
            return _memo[name]
        stored = cache.read_json(_FILE).get(name)
        if isinstance(stored, dict) and stored.get("probe_version") == PROBE_VERSION:
            _memo[name] = stored
            return stored
        found = {**_run_child(name), "probe_version": PROBE_VERSION}
        _memo[name] = found
        if found.get("ok") is not None and not found.get("timeout"):
            cache.update_json(_FILE, {name: found})
        return found


def verdicts() -> dict:
    """Every verdict known without running a child: this process's and the cache's."""
    return {**cache.read_json(_FILE), **_memo}


def forget() -> None:
    """Drop this process's verdicts (the next :func:`proven` reads the cache again)."""
    with _lock:
        _memo.clear()


def _child_argv(name: str) -> list[str]:
    return [sys.executable, "-c", "import sys; from rnnlab.kernels.probes import _child_main; "
            "sys.exit(_child_main(sys.argv[1]))", name]


def _child_env() -> dict:
    """The parent's environment, with this rnnlab first on the path (a source checkout
    imported through PYTHONPATH as well as an installed one)."""
    import rnnlab
    root = str(Path(rnnlab.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _run_child(name: str) -> dict:
    """Run the probe in a child process; a verdict dict whatever happens there."""
    try:
        done = subprocess.run(_child_argv(name), env=_child_env(), capture_output=True, text=True,
                              timeout=TIMEOUT_SECONDS, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"ok": False, "timeout": True,
                "detail": f"the child did not finish in {TIMEOUT_SECONDS:.0f} s"}
    except OSError as exc:
        return {"ok": False, "detail": f"could not start a child process: {exc}"}
    if done.returncode < 0:
        try:
            signame = signal.Signals(-done.returncode).name
        except ValueError:
            signame = str(-done.returncode)
        return {"ok": False, "detail": f"the child crashed ({signame})"}
    lines = [line[len(_MARK):] for line in done.stdout.splitlines() if line.startswith(_MARK)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return {"ok": False, "detail": f"the child exited {done.returncode}: {tail}"}
    try:
        found = json.loads(lines[-1])
    except ValueError:
        return {"ok": False, "detail": "the child's verdict is not JSON"}
    if not isinstance(found, dict) or found.get("ok") not in (True, False, None):
        return {"ok": False, "detail": "the child's verdict is malformed"}
    return found


def _child_main(name: str) -> int:
    """In the child: run the probe and print its verdict on one marked line."""
    module, _, function = PROBES[name].partition(":")
    prove = getattr(importlib.import_module(module), function)
    if os.environ.get("RNNLAB_PROBE_TEST_ABORT") == name:
        os.abort()
    # The hook under test counts as proven here: its own code asks, and must not start a
    # grandchild to prove it again.
    _memo[name] = {"ok": True, "detail": "being proven in this process"}
    try:
        found = prove()
    except Exception as exc:  # noqa: BLE001 - a check that raises has failed, cleanly
        found = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"[:300]}
    print(_MARK + json.dumps(found), flush=True)
    return 0
