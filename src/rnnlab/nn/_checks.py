"""Input checks shared by the layers: every message names what was expected and what came."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .module import BackwardBeforeForwardError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype) -> np.dtype:
    """The layer dtype, float32 or float64; anything else is a TypeError."""
    dt = np.dtype(dtype)
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


_SUBSCRIPTS = "abcdefghijklmnopqrstuvwxyz"


class NonFiniteError(ValueError):
    """An array going into a layer holds NaN or ±inf (inside a model: it diverged)."""


def has_nonfinite(a: np.ndarray) -> bool:
    """Whether ``a`` holds a NaN, +inf or -inf, in one pass and without a temporary.

    Σa is NaN or ±inf if any element is (NaN + anything is NaN, inf + finite is inf,
    inf + -inf is NaN), so a finite sum proves every element finite. einsum sums
    without an a-sized temporary and without raising floating-point flags, at about
    the cost of the ``a.min()`` scan this replaces (which missed +inf). A sum that
    overflowed from finite elements is told apart by the full check, which only then runs.
    """
    total = np.einsum(_SUBSCRIPTS[:a.ndim] + "->", a)
    return not math.isfinite(total) and not bool(np.isfinite(a).all())


def check_parameter_memory(module, shapes) -> None:
    """Before ``module``'s constructor allocates parameters of these shapes: a
    :class:`~rnnlab.memory_guard.MemoryBudgetError` if they cannot fit in memory.

    Small layers (under ``CHECK_FROM_BYTES`` in all) are not checked at all.
    """
    from ..memory_guard import CHECK_FROM_BYTES, require_memory

    count = sum(math.prod(shape) for shape in shapes)  # Python ints: no overflow
    nbytes = count * module.dtype.itemsize
    if nbytes >= CHECK_FROM_BYTES:
        sizes = ", ".join(f"{k}={v}" for k, v in vars(module).items()
                          if k in ("input_size", "hidden_size", "num_layers", "in_features",
                                   "out_features"))
        require_memory(nbytes, f"{type(module).__name__}({sizes}): its {count:,} parameters")


def check_array(x, name: str, dtype: np.dtype, ndims=None, shape=None, last_dim=None,
                nan: bool = True) -> np.ndarray:
    """Check type, dtype, rank, shape and finiteness (no NaN, no ±inf) of an array going
    into a layer.

    Args:
        ndims: allowed ranks, e.g. (2, 3); None for any.
        shape: the exact expected shape, or None.
        last_dim: the expected size of the last axis (the features), or None.
        nan: scan for NaN and ±inf here; False when the caller scans a product of x
            instead (see :func:`products_show_nan`).
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array of dtype {dtype}, got {type(x).__name__}")
    if x.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype}, got {x.dtype} "
                        f"(convert with x.astype(np.{dtype}) or build the layer with dtype=np.{x.dtype})")
    if ndims is not None and x.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name}: expected a {want} array, got {x.ndim}-D with shape {x.shape}")
    if shape is not None and x.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {x.shape}")
    if last_dim is not None and (x.ndim == 0 or x.shape[-1] != last_dim):
        raise ValueError(f"{name}: expected last dimension (features) {last_dim}, "
                         f"got shape {x.shape}")
    if 0 in x.shape:
        raise ValueError(f"{name}: expected a non-empty array, got shape {x.shape}")
    # One pass and no temporary, where isfinite(x).all() allocates a boolean array
    # as large as x (a training step checks every activation gradient).
    if nan and has_nonfinite(x):
        raise NonFiniteError(f"{name}: contains NaN or inf")
    return x


@lru_cache(maxsize=None)
def products_show_nan() -> bool:
    """Whether a NaN or ±inf anywhere in x shows in every element of its row of x @ W.

    In IEEE arithmetic NaN·w is NaN for every w (0 and ±inf included) and a sum
    with a NaN term is NaN, so a product that computes every term shows each of
    x's NaNs in its output. An inf in x gives ±inf·w = ±inf (w ≠ 0) or NaN (w = 0),
    and a sum with such a term is ±inf or NaN: it shows as a non-finite element too. NumPy's own loops and OpenBLAS's kernels compute every
    term; a BLAS that skipped zero factors (old reference BLAS did) would not, so
    any other BLAS gets False and the input is scanned whole: NumPy must be built on
    OpenBLAS and have it loaded (an OpenBLAS loaded by SciPy next to a NumPy on
    another BLAS does not count).
    """
    from ..kernels.blas_pool import numpy_openblas
    try:
        built_on = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # an older or unusual NumPy: no build facts to go by
        return False
    return "openblas" in str(built_on).lower() and numpy_openblas() is not None


def nan_in_input_or_none(x: np.ndarray, product: np.ndarray, name: str) -> None:
    """After ``product`` = x @ W (+ b) was computed from an x that :func:`check_array`
    left unscanned (``nan=False``): a ValueError if x contains NaN or ±inf.

    The product is scanned first (it is smaller than x, or the caller would have
    scanned x); only when it holds a NaN or inf is x scanned, since the weights may
    have put it there (inf·0, an overflow), which is not the input's fault.
    """
    if has_nonfinite(product) and has_nonfinite(x):
        raise NonFiniteError(f"{name}: contains NaN or inf")


def product_of_checked_input(product, x: np.ndarray, name: str):
    """``product()``'s result, a tuple whose first item is the product of an x that
    :func:`check_array` left unscanned (as ``linear_forward`` returns ``(y, cache)``),
    once :func:`nan_in_input_or_none` has checked x through it. A floating-point error
    raised inside it (under ``np.errstate(invalid="raise")``, NaN arithmetic is one)
    becomes the input's error when x holds a NaN or inf, as the whole scan would have said."""
    try:
        result = product()
    except FloatingPointError:
        if has_nonfinite(x):
            raise NonFiniteError(f"{name}: contains NaN or inf") from None
        raise
    nan_in_input_or_none(x, result[0], name)
    return result


def require_cache(cache, module) -> None:
    if cache is None:
        raise BackwardBeforeForwardError(
            f"{type(module).__name__}.backward called before forward "
            "(or twice for one forward): run forward first")
