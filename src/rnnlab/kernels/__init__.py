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
  timed for a few steps and the fastest is kept (``RNNLAB_PLAN``), with
  :mod:`.timing` running the candidates;
- :mod:`.crossover`: from how many elements a compiled helper pass (SGD,
  rank-1 gradient, activation gradients) beats its NumPy form, timed once;
- :mod:`.calibrate`: from how many elements a memory-bound pass pays on
  OpenBLAS's threads (the SGD update, the rank-1 weight gradient), timed once;
- :mod:`.sgd`: the compiled SGD update, on one thread or on OpenBLAS's threads.

The compiled loops and kernels, each a drop-in for a reference in
:mod:`rnnlab.functional`, picked by the planner above:

- the time loops: :mod:`.loops_numba` (the whole loop compiled, for small
  steps), :mod:`.loops_fused` (NumPy's GEMM and tanh with the rest of the LSTM
  and RNN step fused, for large ones) and its passes :mod:`.fused_passes`,
  :mod:`.gru_fused` (the GRU's), :mod:`.packed_cells_fused` (the LSTM step of
  packed sequences);
- the products: :mod:`.packed_gemm` (a GEMM on a weight packed once per
  sequence), :mod:`.transpose` (register-tile transposes), :mod:`.rank1` (the
  rank-1 weight gradient);
- other libraries' internals, each behind a probe: :mod:`.blas_pool`
  (jobs on OpenBLAS's threads), :mod:`.numpy_tanh` (NumPy's float32 tanh loop).

Nothing here changes a result beyond rounding: every path is a drop-in for
the reference it replaces, tested against it.
"""
