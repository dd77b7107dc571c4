"""The optimisers' base class: a flat parameter list, per-parameter state, checkpoints."""

from __future__ import annotations

import numbers
import re
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from ..nn.module import Parameter

__all__ = ["Optimizer"]

_BUFFER_KEY = re.compile(r"^(0|[1-9][0-9]*)\.([A-Za-z_][A-Za-z0-9_]*)$")


# ---------------------------------------------------------------- validation
def _real(name: str, value: Any) -> float:
    """``value`` as a Python float; TypeError for a non-number (bools included)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} "
                        f"of type {type(value).__name__}")
    return float(value)


def _non_negative(name: str, value: Any) -> float:
    value = _real(name, value)
    if not 0.0 <= value:  # also rejects NaN
        raise ValueError(f"Invalid {name}: {value!r} (expected >= 0)")
    return value


class Optimizer:
    """Base class: a flat list of parameters, per-parameter state, checkpoints.

    Subclasses set ``_buffer_names`` (the per-parameter state that a checkpoint
    holds) and implement :meth:`step`, :meth:`_validate` and
    :meth:`hyperparameters`.

    Attributes:
        params (list[Parameter]): the parameters, in the order given.
        step_count (int): number of completed ``step()`` calls.
        state (list[dict[str, ndarray]]): per-parameter state buffers, created
            lazily at the first step, each of the parameter's shape and dtype.
        lr, ... : the hyperparameters, as attributes of the constructor's names.
            ``lr`` is validated when assigned (for schedules); change the others
            only through :meth:`load_state_dict`, which validates them.
    """

    _buffer_names: tuple[str, ...] = ()

    def __init__(self, params: Iterable[Parameter]):
        if isinstance(params, Parameter):
            raise TypeError("params must be an iterable of Parameter, got a single Parameter; "
                            "wrap it in a list")
        try:
            params = list(params)
        except TypeError:
            raise TypeError(f"params must be an iterable of Parameter, "
                            f"got {type(params).__name__}") from None
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        for i, p in enumerate(params):
            if not isinstance(p, Parameter):
                raise TypeError(f"params[{i}] must be a Parameter, got {type(p).__name__}")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("optimizer got the same Parameter more than once; "
                             "it would be updated twice per step")
        self.params: list[Parameter] = params
        self.step_count: int = 0
        self.state: list[dict[str, np.ndarray]] = [{} for _ in params]
        # One scratch array per parameter: the only workspace step() uses.
        self._scratch: list[np.ndarray] = [np.empty_like(p.data) for p in params]

    # ------------------------------------------------------------ to override
    def hyperparameters(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _validate(**hyper) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _set_hyperparameters(self, hyper: Mapping[str, Any]) -> None:
        for name, value in hyper.items():
            object.__setattr__(self, name, value)

    def step(self, closure: Callable[[], Any] | None = None):  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------ common
    @property
    def lr(self) -> float:
        """The learning rate; assignable (e.g. by a schedule), validated on set."""
        return self._lr

    @lr.setter
    def lr(self, value) -> None:
        self._lr = _non_negative("learning rate", value)

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero, in place (no reallocation; lazily, see
        :class:`rnnlab.nn.Parameter`)."""
        for p in self.params:
            p.zero_grad()

    def _check_param(self, i: int, p: Parameter) -> None:
        d, g = p.data, p.grad
        if g.shape != d.shape or g.dtype != d.dtype:
            raise ValueError(f"params[{i}].grad has shape {g.shape} and dtype {g.dtype}, "
                             f"expected {d.shape} and {d.dtype} like its data")
        s = self._scratch[i]
        if s.shape != d.shape or s.dtype != d.dtype:
            # The data array was replaced by one of another shape/dtype.
            raise ValueError(f"params[{i}] changed to shape {d.shape} and dtype {d.dtype} "
                             f"after the optimizer was built (state is {s.shape}, {s.dtype})")

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The optimizer state as plain values, safe to keep (buffers are copies).

        Returns:
            ``{"hyperparameters": {name: value}, "step": int,
            "buffers": {"<param_index>.<buffer_name>": ndarray}}``; a buffer
            that has not been created yet (before the first step) is absent.
            Scratch space is not state and is not included.
        """
        buffers = {}
        for i, st in enumerate(self.state):
            for name in self._buffer_names:
                if name in st:
                    buffers[f"{i}.{name}"] = st[name].copy()
        return {"hyperparameters": self.hyperparameters(),
                "step": int(self.step_count),
                "buffers": buffers}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a :meth:`state_dict`, after checking all of it first.

        Hyperparameters are restored too (as torch does for ``param_groups``).
        Buffers are copied, so the dict can be reused. Nothing is assigned
        unless everything passes, so a bad dict leaves the optimizer unchanged.

        Raises:
            ValueError: wrong top-level keys, unknown hyperparameter or buffer
                names, a parameter index out of range, a buffer whose shape or
                dtype differs from its parameter's, a negative step, or buffers
                inconsistent with the step count.
            TypeError: a value of the wrong type.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        expected = {"hyperparameters", "step", "buffers"}
        if set(state_dict) != expected:
            raise ValueError(f"state_dict keys must be {sorted(expected)}, got {sorted(state_dict)}")

        hyper = state_dict["hyperparameters"]
        if not isinstance(hyper, Mapping):
            raise TypeError(f"state_dict['hyperparameters'] must be a mapping, "
                            f"got {type(hyper).__name__}")
        own = set(self.hyperparameters())
        if set(hyper) != own:
            raise ValueError(f"hyperparameters must be {sorted(own)}, got {sorted(hyper)}")
        hyper = self._validate(**hyper)

        step = state_dict["step"]
        if isinstance(step, (bool, np.bool_)) or not isinstance(step, numbers.Integral):
            raise TypeError(f"state_dict['step'] must be an int, got {step!r}")
        step = int(step)
        if step < 0:
            raise ValueError(f"state_dict['step'] must be >= 0, got {step}")

        buffers = state_dict["buffers"]
        if not isinstance(buffers, Mapping):
            raise TypeError(f"state_dict['buffers'] must be a mapping, got {type(buffers).__name__}")
        new_state: list[dict[str, np.ndarray]] = [{} for _ in self.params]
        for key, value in buffers.items():
            m = _BUFFER_KEY.match(key) if isinstance(key, str) else None
            if m is None or m.group(2) not in self._buffer_names:
                raise ValueError(f"unexpected buffer key {key!r}; expected '<param_index>.<name>' "
                                 f"with name in {list(self._buffer_names)}")
            i, name = int(m.group(1)), m.group(2)
            if i >= len(self.params):
                raise ValueError(f"buffer {key!r}: parameter index {i} out of range "
                                 f"(the optimizer has {len(self.params)} parameters)")
            if not isinstance(value, np.ndarray):
                raise TypeError(f"buffer {key!r} must be an ndarray, got {type(value).__name__}")
            p = self.params[i]
            if value.shape != p.data.shape or value.dtype != p.data.dtype:
                raise ValueError(f"buffer {key!r} has shape {value.shape} and dtype {value.dtype}, "
                                 f"expected {p.data.shape} and {p.data.dtype}")
            new_state[i][name] = value
        self._check_loaded_state(step, new_state)

        # Everything checked: commit. Copies keep the parameter's memory layout.
        for i, st in enumerate(new_state):
            for name, value in st.items():
                buf = np.empty_like(self.params[i].data)
                np.copyto(buf, value)
                st[name] = buf
        self._set_hyperparameters(hyper)
        self.step_count = step
        self.state = new_state

    def _check_loaded_state(self, step: int, state: list[dict[str, np.ndarray]]) -> None:
        """Subclass hook: reject buffers inconsistent with ``step``."""

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyperparameters().items())
        return f"{type(self).__name__}({len(self.params)} parameters, {args})"
