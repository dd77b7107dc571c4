"""Optimisers and gradient clipping, with torch.optim's update rules, in place.

:class:`SGD`, :class:`Adam` and :class:`RMSprop` update :class:`~rnnlab.nn.module.Parameter`
objects from their ``.grad`` with exactly the arithmetic of ``torch.optim.SGD``
and ``torch.optim.Adam`` (single-tensor path, ``maximize=False``,
``amsgrad=False``), so a model trained here follows the torch trajectory.

Performance contract: in the steady state (from the second ``step()`` on) a step
allocates nothing the size of a parameter. Every parameter owns its state
buffers (momentum buffer, or ``exp_avg`` / ``exp_avg_sq``) and one scratch
buffer of its own shape and dtype; every update is an in-place ufunc
(``out=``, ``+=``, ``*=``), a handful of NumPy calls per parameter, and
``p.data`` / ``p.grad`` keep their identity. ``step()`` never writes to
``p.grad``.

Hyperparameters are kept as Python floats so that, under NumPy's promotion
rules, float32 parameters are updated in float32 arithmetic with the constants
rounded to float32, as torch does.

State can be checkpointed: ``state_dict()`` returns plain Python values and
ndarray copies, and ``load_state_dict()`` validates before it assigns, after
which further steps are bit-identical to an uninterrupted run.

Modules: :mod:`.optimizer` (the base class), :mod:`.sgd`, :mod:`.adam`,
:mod:`.rmsprop`, :mod:`.clip`; the compiled SGD pass lives in :mod:`rnnlab.kernels.sgd`.
"""

from .adam import Adam
from .clip import clip_grad_norm_
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "RMSprop", "clip_grad_norm_"]
