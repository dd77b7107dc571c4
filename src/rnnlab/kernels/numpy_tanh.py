"""NumPy's own float32 ``tanh`` inner loop, by address, for compiled jobs to call.

Why: the fused LSTM forward (see :mod:`.loops_fused`) splits a large step's
elementwise passes over the BLAS pool's threads, but its two ``np.tanh`` calls
(all four gates, then c) ran on the calling thread alone while the other core
idled, each one more pass over memory. A pool job can call the very loop that
``np.tanh`` runs, on its own rows: the results stay the same bit for bit, which
numba's scalar ``tanh`` (not vectorised here, and not the same function) does not.

How: ``np.tanh`` is a ``PyUFuncObject``, whose C layout (NumPy 2.x on a 64-bit
CPython) starts with the object header (16 bytes), then the ints ``nin``,
``nout``, ``nargs``, ``identity`` (offsets 16-28), the pointers ``functions``
(32) and ``data`` (40), the int ``ntypes`` (48), ``reserved1``, then ``name``
(56) and ``types`` (64). The first (float32, float32) entry of ``types`` - the
one NumPy's type resolution takes - indexes the loop and its data pointer. A
loop is called as ``loop(char **args, npy_intp *dimensions, npy_intp *steps,
void *data)``, with args = [in, out], dimensions = [n] and steps = [4, 4] for
contiguous float32.

This reads a private layout, so it is checked before use, first in a child
process (:func:`prove`, run by :mod:`rnnlab.kernels.probes`: a wrong guess may
crash it, never the user's process), then here: the fields must agree
with what the ufunc says of itself in Python (``nin``, ``nout``, ``nargs``,
``ntypes``, ``types``, name ``tanh``), and the loop, called through ctypes, must
give the bits of ``np.tanh`` on a probe of special and random values, in place
and not, at lengths that are not multiples of the SIMD width. Anything else (another
layout, another interpreter, an exception) gives None, and the callers keep
calling ``np.tanh``.

The probe runs on the calling thread; the jobs run the loop on OpenBLAS's threads.
Their results can differ only through per-thread floating-point modes (a thread
that flushes subnormals to zero, e.g. after ``torch.set_flush_denormal(True)``),
as for every compiled pass that runs on the pool.
"""

from __future__ import annotations

import ctypes
import platform
from functools import lru_cache

import numpy as np

__all__ = ["float32_loop", "prove", "unary_loop_caller"]

# Offsets in PyUFuncObject (64-bit builds); see the module docstring.
_NIN, _NOUT, _NARGS = 16, 20, 24
_FUNCTIONS, _DATA, _NTYPES, _NAME, _TYPES = 32, 40, 48, 56, 64

_LOOP = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


def float32_loop():
    """(loop, data) addresses of NumPy's float32 ``tanh`` inner loop, checked, or None."""
    from .probes import proven
    return _checked_loop(np.tanh, "tanh") if proven("numpy_tanh") else None


def prove() -> dict:
    """The check run in a child process: find the loop, compare its bits with ``np.tanh``
    through ctypes, then through the compiled caller that the pool's jobs use."""
    found = _checked_loop(np.tanh, "tanh")
    if found is None:
        return {"ok": False, "detail": "the ufunc's layout or its loop's bits differ"}
    import numba
    call = unary_loop_caller()

    @numba.njit
    def run(loop, data, src, dst):
        call(loop, data, src.ctypes.data, dst.ctypes.data, src.size, 4)

    values = _probe()
    out = np.full_like(values, np.nan)
    run(found[0], found[1], values, out)
    with np.errstate(all="ignore"):
        want = np.tanh(values)
    if not np.array_equal(out.view(np.uint32), want.view(np.uint32)):
        return {"ok": False, "detail": "the compiled call of the loop differs from np.tanh"}
    return {"ok": True, "detail": "the float32 loop gives np.tanh's bits"}


@lru_cache(maxsize=None)
def _checked_loop(ufunc, name: str):
    """``ufunc``'s float32 loop if it is found (see :func:`_find`) and gives the bits of
    ``np.tanh`` on the probe (a parameter so that a test can hand it another ufunc)."""
    try:
        found = _find(ufunc, name)
        return found if found is not None and _gives_numpy_tanh(*found) else None
    except Exception:  # noqa: BLE001 - any surprise in a private layout: do not use it
        return None


# type number -> the char that ufunc.types shows ('l' before 'p' for the same number: the first)
_CHARS = {np.dtype(code).num: code for code in reversed(np.typecodes["All"])}


def _find(ufunc, name: str):
    """(loop, data) addresses of ``ufunc``'s first float32 -> float32 loop, if its C fields
    agree with what it says of itself in Python and it is called ``name``; else None."""
    if (platform.python_implementation() != "CPython" or ctypes.sizeof(ctypes.c_void_p) != 8
            or type(ufunc) is not np.ufunc):
        return None  # id() is the address on CPython only; the offsets are 64-bit ones
    base = id(ufunc)

    def field(offset, c_type):
        return c_type.from_address(base + offset).value

    counts = tuple(field(offset, ctypes.c_int) for offset in (_NIN, _NOUT, _NARGS))
    ntypes = field(_NTYPES, ctypes.c_int)
    if (counts != (1, 1, 2) or (ufunc.nin, ufunc.nout, ufunc.nargs) != counts
            or ntypes != ufunc.ntypes or not 0 < ntypes < 256):
        return None
    name_at, functions, data, types = (field(offset, ctypes.c_void_p)
                                       for offset in (_NAME, _FUNCTIONS, _DATA, _TYPES))
    if (not (name_at and functions and types) or ufunc.__name__ != name
            or ctypes.string_at(name_at) != name.encode()):
        return None
    codes = ctypes.string_at(types, 2 * ntypes)  # (input, output) type numbers, loop by loop
    spelled = [f"{_CHARS.get(codes[2 * i])}->{_CHARS.get(codes[2 * i + 1])}" for i in range(ntypes)]
    if spelled != list(ufunc.types):
        return None
    f32 = np.dtype(np.float32).num
    # The first match, as NumPy's type resolution takes (tanh has a second, slower f->f).
    index = next((i for i in range(ntypes) if codes[2 * i] == codes[2 * i + 1] == f32), None)
    if index is None:
        return None
    loop = ctypes.c_void_p.from_address(functions + 8 * index).value
    loop_data = ctypes.c_void_p.from_address(data + 8 * index).value if data else None
    return (loop, loop_data or 0) if loop else None


def _call(loop: int, data: int, src: np.ndarray, dst: np.ndarray) -> None:
    """dst = loop(src), both contiguous float32 of one length, through ctypes."""
    args = (ctypes.c_void_p * 2)(src.ctypes.data, dst.ctypes.data)
    dimensions = (ctypes.c_ssize_t * 1)(src.size)
    steps = (ctypes.c_ssize_t * 2)(src.itemsize, dst.itemsize)
    _LOOP(loop)(args, dimensions, steps, data or None)


def _probe() -> np.ndarray:
    """float32 values on which a loop must give np.tanh's bits: signed zeros, infinities,
    NaNs with payloads, subnormals, tiny and huge values, the saturation region, and
    random values over scales from 1e-6 to 1e4; 4133 of them (not a multiple of 16)."""
    f = np.finfo(np.float32)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, f.smallest_subnormal,
                        -f.smallest_subnormal, 1e-40, -3e-39, f.tiny, -f.tiny, 1e-30, -1e-20,
                        1e-10, 1e-5, -0.5, 1, -8.5, 9, 10, -20, 88, 1e10, -1e30, f.max, -f.max],
                       dtype=np.float32)
    nan_bits = np.array([0x7FC00123, 0xFFC00001, 0x7F800001, 0xFFFFFFFF], dtype=np.uint32)
    nans = nan_bits.view(np.float32)  # payloads, a negative and a signalling NaN
    rng = np.random.default_rng(20240611)
    scales = (1e-6, 1e-3, 0.1, 1.0, 4.0, 30.0, 1e4)
    randoms = [(scale * rng.standard_normal(580)).astype(np.float32) for scale in scales]
    values = np.concatenate([special, nans, *randoms, rng.uniform(-12, 12, 41).astype(np.float32)])
    spread = rng.permutation(values)  # the special values in every SIMD lane and in the tails
    return np.concatenate([special, nans, spread])[:4133]


def _gives_numpy_tanh(loop: int, data: int) -> bool:
    """Whether the loop gives np.tanh's bits on the probe: prefixes and offset slices of
    lengths that are not multiples of 16, in place and into another array."""
    values = _probe()
    for start in (0, 3):
        for length in (1, 5, 15, 17, 31, 100, 1001, values.size - start):
            x = values[start:start + length]
            with np.errstate(all="ignore"):
                want = np.tanh(x).view(np.uint32)
            out = np.full_like(x, np.nan)
            _call(loop, data, x, out)
            inplace = x.copy()
            _call(loop, data, inplace, inplace)
            if not (np.array_equal(out.view(np.uint32), want)
                    and np.array_equal(inplace.view(np.uint32), want)):
                return False
    return True


@lru_cache(maxsize=None)
def unary_loop_caller():
    """A numba intrinsic ``call(loop, data, src, dst, count, step)`` running a unary ufunc
    loop on ``count`` elements ``step`` bytes apart, from src to dst (all addresses int64).

    The loop's address differs from process to process, so jobs compiled with
    ``cache=True`` take it at run time (from their context), never as a constant.
    args, dimensions and steps live on the caller's stack. (numba's disk cache of a job
    follows the job's own file only: after editing this, clear the jobs' cache.)
    """
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def call(typingctx, loop, data, src, dst, count, step):
        arguments = (loop, data, src, dst, count, step)
        if not all(isinstance(a, types.Integer) for a in arguments):
            return None

        def codegen(context, builder, signature, values):
            i64, byte_pointer = ir.IntType(64), ir.IntType(8).as_pointer()
            loop, data, src, dst, count, step = (context.cast(builder, v, t, types.int64)
                                                 for v, t in zip(values, signature.args))
            block = cgutils.alloca_once(builder, i64, size=5)  # args[2], dimensions[1], steps[2]
            for i, value in enumerate((src, dst, count, step, step)):
                builder.store(value, builder.gep(block, [ir.Constant(i64, i)]))

            def at(i):
                return builder.bitcast(builder.gep(block, [ir.Constant(i64, i)]), byte_pointer)

            function = ir.FunctionType(ir.VoidType(), [byte_pointer] * 4)
            builder.call(builder.inttoptr(loop, function.as_pointer()),
                         [at(0), at(2), at(3), builder.inttoptr(data, byte_pointer)])
            return context.get_dummy_value()

        return types.void(*arguments), codegen

    return call
