"""The seam between the math and the speed code.

:mod:`rnnlab.functional` holds the equations and the reference loops in plain
NumPy. Everything that makes them faster on some machine and not on another
is decided here, on the user's machine, never by constants tuned on one CPU:

- :mod:`.cache`: the cache folder (``$XDG_CACHE_HOME/rnnlab``, else
  ``~/.cache/rnnlab``), one subfolder per machine and library versions;
- :mod:`.probes`: a path that touches another library's internals (OpenBLAS's
  thread splitter, NumPy's ufunc table, LLVM IR kernels) first proves itself
  in a child process; a crash there only disables the path;
- :mod:`.planner`: on the first use of a step shape the candidate paths are
  timed for a few steps and the fastest is kept (``RNNLAB_PLAN``);
- :mod:`.calibrate`: from how many elements a memory-bound pass pays on
  OpenBLAS's threads (the SGD update, the rank-1 weight gradient), timed once;
- :mod:`.sgd`: the compiled SGD update, on one thread or on OpenBLAS's threads.

The compiled loops and kernels themselves still sit in
:mod:`rnnlab.functional` as private modules (``_loops_numba``, ``_loops_fused``,
``_packed``, ``_blas_pool``, ``_numpy_tanh``, ``_transpose``, ``_rank1``), each a
drop-in for a reference function there; they are candidates to move here.

Nothing here changes a result beyond rounding: every path is a drop-in for
the reference it replaces, tested against it.
"""
