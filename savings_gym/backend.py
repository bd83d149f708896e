"""Array backends: the task's math is written once, against this small namespace.

The same arm, field and task code runs on NumPy (one arm, cheapest per call), on batched NumPy
(the vector env) and on torch (batched, on any device, optionally differentiable for BPTT). Each
backend offers only the handful of operations that code needs, so that the two libraries' small
API differences (``np.clip`` vs ``torch.clamp``, ``axis`` vs ``dim``) live here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Array = Any  # a numpy.ndarray or a torch.Tensor, depending on the backend
Scalar = Any  # a constant: a 0-d float32 array on NumPy (cheaper to combine than a float), a float on torch


class NumpyBackend:
    """float32 NumPy arrays on the CPU."""

    name = "numpy"
    differentiable = False
    hand_written_grads = False

    @staticmethod
    def grad_enabled() -> bool:
        return False

    cos = staticmethod(np.cos)
    sin = staticmethod(np.sin)
    abs = staticmethod(np.abs)
    where = staticmethod(np.where)
    maximum = staticmethod(np.maximum)
    minimum = staticmethod(np.minimum)

    @staticmethod
    def clip(x: Array, low: Any, high: Any) -> Array:
        # np.clip is a Python-level wrapper, several times slower than two ufuncs on tiny arrays
        return np.minimum(np.maximum(x, low), high)

    sum = staticmethod(np.add.reduce)  # the ufunc itself: ndarray.sum adds a Python-level wrapper

    @staticmethod
    def stack(xs: Sequence[Array], axis: int) -> Array:
        if axis == 1 and xs[0].ndim == 1:  # filling a preallocated array beats np.stack on tiny inputs
            out = np.empty((len(xs[0]), len(xs)), dtype=np.result_type(*xs))
            for i, x in enumerate(xs):
                out[:, i] = x
            return out
        return np.stack(xs, axis=axis)

    @staticmethod
    def concat(xs: Sequence[Array], axis: int) -> Array:
        return np.concatenate(xs, axis=axis)

    @staticmethod
    def asarray(x: Any) -> Array:
        """Converts host data (NumPy or nested lists) to this backend's float32 array."""
        return np.asarray(x, dtype=np.float32)

    _constants: dict[float, np.ndarray] = {}

    def c(self, value: float) -> Scalar:
        """A cached float32 constant: combining a 0-d array costs half of combining a Python float."""
        constant = self._constants.get(value)
        if constant is None:
            constant = self._constants[value] = np.asarray(value, dtype=np.float32)
        return constant

    scalar = c

    @staticmethod
    def to_numpy(x: Array) -> np.ndarray:
        return np.asarray(x)

    @staticmethod
    def all_finite(x: Array) -> bool:
        return bool(np.isfinite(x).all())

    @staticmethod
    def as_float(condition: Array) -> Array:
        return condition.astype(np.float32)


class TorchBackend:
    """float32 torch tensors on ``device``; gradients flow only when ``differentiable``.

    ``hand_written_grads``: the arm step records one autograd node with a hand-written backward
    (:mod:`savings_gym.arm_grad`); False records every operation (the reference path, ~3x slower).
    """

    name = "torch"

    def __init__(self, device: str = "cpu", differentiable: bool = False, hand_written_grads: bool = True):
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.differentiable = differentiable
        self.hand_written_grads = hand_written_grads
        self.grad_enabled = torch.is_grad_enabled
        self.cos = torch.cos
        self.sin = torch.sin
        self.abs = torch.abs
        self.where = torch.where

        self._constants: dict[float, Array] = {}

    def c(self, value: float) -> Scalar:
        """A cached 0-d float32 tensor on the device: torch copies a Python float into a tensor at
        every operation, which costs about as much as the operation itself on small batches."""
        constant = self._constants.get(value)
        if constant is None:
            constant = self._constants[value] = self._torch.tensor(value, dtype=self._torch.float32, device=self.device)
        return constant

    scalar = c

    def maximum(self, x: Array, y: Any) -> Array:
        return self._torch.maximum(x, y if self._torch.is_tensor(y) else self.c(y))

    def minimum(self, x: Array, y: Any) -> Array:
        return self._torch.minimum(x, y if self._torch.is_tensor(y) else self.c(y))

    def clip(self, x: Array, low: Any, high: Any) -> Array:
        return self.minimum(self.maximum(x, low), high)

    def sum(self, x: Array, axis: int) -> Array:
        return x.sum(dim=axis)

    def stack(self, xs: Sequence[Array], axis: int) -> Array:
        return self._torch.stack(list(xs), dim=axis)

    def concat(self, xs: Sequence[Array], axis: int) -> Array:
        return self._torch.cat(list(xs), dim=axis)

    def asarray(self, x: Any) -> Array:
        if self._torch.is_tensor(x):
            return x.to(device=self.device, dtype=self._torch.float32)
        return self._torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device)

    @staticmethod
    def to_numpy(x: Array) -> np.ndarray:
        return x.detach().cpu().numpy()

    def all_finite(self, x: Array) -> bool:
        return bool(self._torch.isfinite(x).all())

    def as_float(self, condition: Array) -> Array:
        return condition.to(self._torch.float32)


Backend = NumpyBackend | TorchBackend
NUMPY = NumpyBackend()


def make_backend(
    name: str, device: str = "cpu", differentiable: bool = False, hand_written_grads: bool = True
) -> Backend:
    """Returns the backend called ``name`` ("numpy" or "torch"); ``hand_written_grads`` as :class:`TorchBackend`.

    Raises:
        ValueError: for an unknown name, or for options NumPy cannot honour (a device other than
            the CPU, gradients).
    """
    if name == "numpy":
        if str(device) != "cpu":
            raise ValueError(f"backend='numpy' runs on the CPU only, got device={device!r}; use backend='torch'")
        if differentiable:
            raise ValueError("backend='numpy' cannot carry gradients; use backend='torch' with differentiable=True")
        return NUMPY
    if name == "torch":
        return TorchBackend(device=device, differentiable=differentiable, hand_written_grads=hand_written_grads)
    raise ValueError(f"backend must be 'numpy' or 'torch', got {name!r}")
