"""The MLP's pieces: Linear, the three activations, Sequential and MLP."""

from __future__ import annotations

import numpy as np

from .. import init
from ..functional.activations import ACTIVATIONS
from ..functional.linear import input_grad_through_activation, linear_backward, linear_forward
from ._checks import (check_array, check_dtype, check_parameter_memory, check_positive_int,
                      product_of_checked_input, products_show_nan, require_cache)
from .module import Module, Parameter, grad_sinks


class Linear(Module):
    """Affine map ``y = x Wᵀ + b``.

    Args:
        in_features: size of each input sample.
        out_features: size of each output sample.
        bias: learn an additive bias (default True).
        dtype: float32 (default) or float64.
        rng: numpy Generator for the init (a fresh default_rng() when None).

    Shape:
        input (*, in_features) -> output (*, out_features).

    Attributes:
        weight: (out_features, in_features), init U(-k, k) with k = 1/√in_features.
        bias: (out_features,), init U(-k, k).
    """

    def __init__(self, in_features, out_features, bias=True, *, dtype=np.float32, rng=None):
        super().__init__()
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        self.dtype = check_dtype(dtype)
        check_parameter_memory(self, [(out_features, in_features)] + [(out_features,)] * bool(bias))
        rng = init.as_generator(rng)
        bound = 1.0 / np.sqrt(in_features)
        self.weight = Parameter(init.uniform((out_features, in_features), bound, rng, self.dtype))
        self.bias = (Parameter(init.uniform((out_features,), bound, rng, self.dtype))
                     if bias else None)
        self._cache = None
        self._out_shape = None

    def forward(self, x):
        """x (*, in_features) -> (*, out_features)."""
        # A wide input is scanned for NaN/inf through its product, out_features / in_features
        # its size (see products_show_nan): for x (256, 4096) the scan of x took ~0.17 ms,
        # 6-13 % of an MLP step at m = 32-128.
        via_product = self.in_features > self.out_features and products_show_nan()
        check_array(x, "Linear input", self.dtype, last_dim=self.in_features, nan=not via_product)
        bias = None if self.bias is None else self.bias.data
        if via_product:
            y, cache = product_of_checked_input(lambda: linear_forward(x, self.weight.data, bias),
                                                x, "Linear input")
        else:
            y, cache = linear_forward(x, self.weight.data, bias)
        self._cache, self._out_shape = cache, y.shape
        return y

    def backward(self, grad_out, *, input_grad=True):
        """grad_out (*, out_features) -> grad_in (*, in_features); adds into weight/bias grads.

        With ``input_grad=False`` the input gradient is not computed and None is returned.
        """
        require_cache(self._cache, self)
        check_array(grad_out, "Linear grad_out", self.dtype, shape=self._out_shape)
        cache, self._cache = self._cache, None  # one backward per forward, as for the RNN/LSTM
        with grad_sinks((self.weight, self.bias)) as ((grad_w, grad_b), overwrite):
            grad_x, _, _ = linear_backward(grad_out, cache, input_grad, grad_w, grad_b, overwrite)
        return grad_x

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, dtype={self.dtype}")


class _Activation(Module):
    """Elementwise activation; keeps its output for the backward. Shape: any -> same."""

    name = ""

    def __init__(self):
        super().__init__()
        self._forward_fn, self._backward_fn = ACTIVATIONS[self.name]
        self._y = None

    def forward(self, x):
        return self._forward(x, in_place=False)

    def backward(self, grad_out):
        """grad_out (same shape as the output) -> dL/dx, a new array."""
        require_cache(self._y, self)
        check_array(grad_out, f"{type(self).__name__} grad_out", self._y.dtype, shape=self._y.shape)
        y, self._y = self._y, None
        return self._backward_fn(grad_out, y)

    def _forward(self, x, in_place):
        """``in_place``: write the output over x (for a caller that owns x and drops it)."""
        if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
            raise TypeError(f"{type(self).__name__} input: expected a float ndarray, got "
                            f"{getattr(x, 'dtype', type(x).__name__)}")
        self._y = self._forward_fn(x, out=x if in_place else None)
        return self._y

    def _feeds(self, linear: "Linear") -> bool:
        """Whether this activation's kept output is the input that ``linear`` kept."""
        return (self._y is not None and linear._cache is not None
                and linear._cache[0] is self._y)

    def _backward_through(self, linear: "Linear", grad_linear_out):
        """dL/dx of this activation when ``linear`` reads its output h, written over h.

        ``linear``'s backward must have run with ``input_grad=False`` (it no longer
        needs h); ``grad_linear_out`` is the gradient it took.
        """
        require_cache(self._y, self)
        y, self._y = self._y, None
        return input_grad_through_activation(grad_linear_out, linear.weight.data, y,
                                             self._backward_fn)


class Sigmoid(_Activation):
    """σ(x) = 1 / (1 + exp(-x)); backward dσ = σ(1-σ)."""
    name = "sigmoid"


class Tanh(_Activation):
    """tanh(x); backward 1 - tanh²."""
    name = "tanh"


class ReLU(_Activation):
    """max(x, 0); backward 1[x > 0]."""
    name = "relu"


class Sequential(Module):
    """Modules applied in order; children are named "0", "1", ... as in torch.nn.Sequential.

    ``backward`` runs the children's backward passes in reverse order.
    """

    def __init__(self, *modules: Module):
        super().__init__()
        for index, module in enumerate(modules):
            if not isinstance(module, Module):
                raise TypeError(f"Sequential takes Modules, got {type(module).__name__} at {index}")
            setattr(self, str(index), module)

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, index):
        return list(self._modules.values())[index]

    def forward(self, x):
        """Each child on the previous one's output. An activation right after a Linear
        works in place: the Linear's output is a fresh array that nothing else keeps."""
        previous = None
        for module in self._modules.values():
            if isinstance(module, _Activation) and isinstance(previous, Linear):
                x = module._forward(x, in_place=True)
            else:
                x = module(x)
            previous = module
        return x

    def backward(self, grad_out, *, input_grad=True):
        """Children's backward passes in reverse order. With ``input_grad=False``
        a first Linear skips its input gradient and None is returned.

        A Linear that reads an activation's output h passes its input gradient
        straight through the activation's backward, written over h (see
        :func:`rnnlab.functional.linear.input_grad_through_activation`): h is the
        Sequential's own array, and nothing needs it after the Linear's weight gradient.
        """
        modules = list(self._modules.values())
        grad = grad_out
        k = len(modules) - 1
        while k >= 0:
            module = modules[k]
            below = modules[k - 1] if k > 0 else None
            if isinstance(module, Linear) and isinstance(below, _Activation) \
                    and below._feeds(module):
                module.backward(grad, input_grad=False)
                grad = below._backward_through(module, grad)
                k -= 2
            elif k == 0 and isinstance(module, Linear):
                return module.backward(grad, input_grad=input_grad)
            else:
                grad = module.backward(grad)
                k -= 1
        return grad if input_grad else None


_ACTIVATION_MODULES = {"sigmoid": Sigmoid, "tanh": Tanh, "relu": ReLU}


class MLP(Sequential):
    """A multilayer perceptron: Linear layers with an activation between them.

    ``MLP([64, 128, 10], activation="relu")`` is Linear(64, 128), ReLU,
    Linear(128, 10); no activation follows the last layer (it gives logits or
    a regression output). Its state_dict keys ("0.weight", "2.weight", ...)
    load into the equal torch.nn.Sequential.

    Args:
        sizes: [in_features, hidden..., out_features], at least two entries.
        activation: "sigmoid", "tanh" or "relu".
        bias, dtype, rng: as in :class:`Linear`.

    Shape:
        input (*, sizes[0]) -> output (*, sizes[-1]).
    """

    def __init__(self, sizes, activation="relu", bias=True, *, dtype=np.float32, rng=None):
        sizes = list(sizes)
        if len(sizes) < 2:
            raise ValueError(f"MLP sizes needs at least [in, out], got {sizes}")
        if activation not in _ACTIVATION_MODULES:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATION_MODULES)}, "
                             f"got {activation!r}")
        rng = init.as_generator(rng)
        layers = []
        for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(Linear(fan_in, fan_out, bias, dtype=dtype, rng=rng))
            if index < len(sizes) - 2:
                layers.append(_ACTIVATION_MODULES[activation]())
        super().__init__(*layers)
        self.sizes = sizes
        self.activation = activation
