"""Recurrent controllers, K independent networks evaluated as one batched computation.

The paper's controller is a one-layer GRU, a linear readout and a sigmoid (6 muscle excitations),
with a learned initial hidden state, Xavier-uniform input weights, orthogonal recurrent weights,
zero recurrent biases and an output bias of -5 (so muscles start nearly silent). LSTM and vanilla
RNN cells share the same interface and initialisation.

Every parameter carries a leading network axis K. Network k is initialised from its own seed, so
network k is the same whatever K is, and since Adam and SGD act element-wise, one optimiser over
the stacked parameters is K independent optimisers. A controller sees only the observation.

Speed (BPTT through 100 steps is bound by the recurrent matmul and by autograd's per-operation
bookkeeping): the recurrent weights are multiplied in a contiguous transposed copy; under
:meth:`RecurrentControllers.deferred_weight_grad` the recurrent weights' gradient is one matmul
over all steps instead of one per step; and the GRU's gate arithmetic is one autograd node with a
hand-written backward. ``fused=False`` runs the plain autograd formulation (the reference path).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
from torch import nn

CELLS = {"gru": 3, "lstm": 4, "rnn": 1}  # gate blocks per cell type
INPUT_LAYER = ("w_ih", "b_ih")
OUTPUT_LAYER = ("w_out", "b_out")


class RecurrentControllers(nn.Module):
    """K one-layer recurrent networks -> linear -> sigmoid.

    Args:
        cell: ``"gru"`` (the paper's), ``"lstm"`` or ``"rnn"`` (tanh).
        seeds: one seed per network; network k's initial weights depend on ``seeds[k]`` only.
        input_size: observation size.
        hidden_size: recurrent units per network.
        output_size: muscles.
        output_bias: initial readout bias (the paper's -5).

    Raises:
        ValueError: for an unknown cell, no seeds, or sizes < 1.
    """

    def __init__(
        self,
        cell: str,
        seeds: Sequence[int],
        input_size: int,
        hidden_size: int,
        output_size: int = 6,
        output_bias: float = -5.0,
    ):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cell!r}")
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size), ("output_size", output_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if len(seeds) < 1:
            raise ValueError("need at least one seed (one network)")
        self.cell, self.seeds = cell, [int(s) for s in seeds]
        self.num_networks, self.input_size, self.hidden_size = len(seeds), input_size, hidden_size
        k, g, h = self.num_networks, CELLS[cell], hidden_size
        self.w_ih = nn.Parameter(torch.empty(k, g * h, input_size))
        self.w_hh = nn.Parameter(torch.empty(k, g * h, h))
        self.b_ih = nn.Parameter(torch.zeros(k, g * h))
        self.b_hh = nn.Parameter(torch.zeros(k, g * h))
        self.w_out = nn.Parameter(torch.empty(k, output_size, h))
        self.b_out = nn.Parameter(torch.full((k, output_size), float(output_bias)))
        self.h0 = nn.Parameter(torch.zeros(k, h))  # learned initial hidden state
        self.fused = True
        self._tape: list[tuple[torch.Tensor, torch.Tensor]] | None = None
        self._transposed: dict[str, tuple[int, torch.Tensor]] = {}
        if cell == "lstm":
            self.c0 = nn.Parameter(torch.zeros(k, h))
        with torch.no_grad():
            for i, seed in enumerate(self.seeds):
                generator = torch.Generator().manual_seed(seed)
                nn.init.xavier_uniform_(self.w_ih[i], generator=generator)
                nn.init.orthogonal_(self.w_hh[i], generator=generator)
                nn.init.xavier_uniform_(self.w_out[i], generator=generator)

    def freeze_input_and_output(self) -> None:
        """After pretraining only the recurrent weights, biases and initial state keep learning."""
        for name in INPUT_LAYER + OUTPUT_LAYER:
            getattr(self, name).requires_grad_(False)

    def initial_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        """The learned initial state, repeated over ``batch`` reaches: (K, batch, H) tensors."""
        h = self.h0[:, None, :].expand(-1, batch, -1)
        return (h, self.c0[:, None, :].expand(-1, batch, -1)) if self.cell == "lstm" else (h,)

    def forward(
        self, obs: torch.Tensor, state: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One step.

        Args:
            obs: (K, B, input_size) observations.
            state: from :meth:`initial_state` or the previous step.

        Returns:
            Excitations (K, B, output_size) in (0, 1), and the new state; ``state[0]`` is always
            the hidden activity h (K, B, H).
        """
        h = state[0]
        gates_x = input_gates(self.w_ih, self.b_ih, obs)
        if not self.fused:
            gates_h = torch.baddbmm(self.b_hh[:, None, :], h, self.w_hh.transpose(1, 2))
        elif self._tape is not None and torch.is_grad_enabled():
            gates_h = _DeferredRecurrentMatmul.apply(
                h, self.w_hh.detach(), self.transposed("w_hh"), self.b_hh.detach(), self._tape
            )
        else:
            gates_h = torch.baddbmm(self.b_hh[:, None, :], h, self.transposed("w_hh"))
        if self.cell == "gru" and self.fused and torch.is_grad_enabled():
            new_state = (_GRUGates.apply(gates_x, gates_h, h),)
        elif self.cell == "gru":
            new_state = (gru_gates(gates_x, gates_h, h)[0],)
        elif self.cell == "lstm":
            i, f, g, o = (gates_x + gates_h).chunk(4, dim=2)
            c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
            new_state = (torch.sigmoid(o) * torch.tanh(c), c)
        else:
            new_state = (torch.tanh(gates_x + gates_h),)
        return readout(self.w_out, self.b_out, new_state[0]), new_state

    def transposed(self, name: str) -> torch.Tensor:
        """Weight ``name`` (K, rows, cols), detached, transposed into a contiguous (K, cols, rows)
        copy: a batched matmul reads a transposed view ~1.7x slower. Remade only when an
        optimiser step changed the weight."""
        param = getattr(self, name)
        cached = self._transposed.get(name)
        if cached is None or cached[0] != param._version or cached[1].device != param.device:
            cached = self._transposed[name] = (param._version, param.detach().transpose(1, 2).contiguous())
        return cached[1]

    @contextlib.contextmanager
    def deferred_weight_grad(self) -> Iterator[None]:
        """Runs a rollout and its ``backward()`` inside this block to compute the recurrent weights'
        and bias's gradient once, over all steps, when the block ends (one (K, gates*H, T*B) x
        (K, T*B, H) matmul instead of T small ones, each of which had to read and write the whole
        weight gradient). Gradients are added to ``w_hh.grad`` and ``b_hh.grad`` as autograd would.
        """
        if self._tape is not None:
            raise RuntimeError("deferred_weight_grad blocks cannot be nested")
        self._tape = []
        try:
            yield
        finally:
            tape, self._tape = self._tape, None
        if tape:
            self.add_recurrent_grad(torch.cat([h for h, _ in tape], dim=1), torch.cat([g for _, g in tape], dim=1))

    @torch.no_grad()
    def add_recurrent_grad(self, hidden: torch.Tensor, grad_gates: torch.Tensor) -> None:
        """Adds the recurrent weights' and bias's gradient from the hidden states (K, N, H) that
        entered N recurrent matmuls and the gradients (K, N, gates*H) of their outputs."""
        accumulate_grad(self.w_hh, torch.bmm(grad_gates.transpose(1, 2), hidden))
        accumulate_grad(self.b_hh, grad_gates.sum(1))

    def select(self, indices: Sequence[int]) -> RecurrentControllers:
        """A new module holding only networks ``indices`` (copies of their parameters)."""
        out = RecurrentControllers(
            self.cell, [self.seeds[i] for i in indices], self.input_size, self.hidden_size, self.w_out.shape[1]
        )
        index = torch.as_tensor(list(indices))
        with torch.no_grad():
            for name, param in self.named_parameters():
                getattr(out, name).copy_(param[index])
                getattr(out, name).requires_grad_(param.requires_grad)
        return out

    @classmethod
    def concatenate(cls, parts: Sequence[RecurrentControllers]) -> RecurrentControllers:
        """One module holding the networks of ``parts`` in order (copies of their parameters).

        Raises:
            ValueError: for no parts, or parts of another cell or size than the first.
        """
        if not parts:
            raise ValueError("need at least one set of networks to concatenate")
        shape = parts[0].config()
        for i, part in enumerate(parts[1:], 1):
            other = part.config()
            for key in ("cell", "input_size", "hidden_size", "output_size"):
                if other[key] != shape[key]:
                    raise ValueError(f"part {i} has {key} {other[key]!r}, part 0 has {shape[key]!r}")
        out = cls(
            shape["cell"],
            [seed for part in parts for seed in part.seeds],
            shape["input_size"],
            shape["hidden_size"],
            shape["output_size"],
        )
        with torch.no_grad():
            for name, param in out.named_parameters():
                pieces = [getattr(part, name) for part in parts]
                param.copy_(torch.cat(pieces))
                param.requires_grad_(pieces[0].requires_grad)
        return out

    def config(self) -> dict:
        """What rebuilds this module (with :meth:`from_config`) before loading its weights."""
        return {
            "cell": self.cell,
            "seeds": self.seeds,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "output_size": int(self.w_out.shape[1]),
        }

    @classmethod
    def from_config(cls, config: dict) -> RecurrentControllers:
        return cls(config["cell"], config["seeds"], config["input_size"], config["hidden_size"], config["output_size"])


def accumulate_grad(param: torch.Tensor, value: torch.Tensor) -> None:
    """``param.grad += value`` as autograd accumulates, for gradients computed by hand."""
    if param.requires_grad:
        param.grad = value if param.grad is None else param.grad.add_(value)


def input_gates(w_ih: torch.Tensor, b_ih: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
    """The input's gate pre-activations (K, B, gates*H) of observations (K, B, input_size)."""
    return torch.baddbmm(b_ih[:, None, :], obs, w_ih.transpose(1, 2))


def readout(w_out: torch.Tensor, b_out: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """Muscle excitations (K, B, output_size) in (0, 1) from hidden states (K, B, H)."""
    return torch.sigmoid(torch.baddbmm(b_out[:, None, :], h, w_out.transpose(1, 2)))


def gru_gates(
    gates_x: torch.Tensor, gates_h: torch.Tensor, h: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The GRU update from its input and recurrent gate pre-activations (torch.nn.GRU's formula).

    Returns:
        The new hidden state, and the sigmoid gates (r, z), the candidate n and the recurrent
        candidate pre-activation, which the backward needs.
    """
    size = h.shape[-1]
    rz = torch.sigmoid(gates_x[..., : 2 * size] + gates_h[..., : 2 * size])
    r, z = rz[..., :size], rz[..., size:]
    n_h = gates_h[..., 2 * size :]
    n = torch.tanh(gates_x[..., 2 * size :] + r * n_h)
    return (1 - z) * n + z * h, rz, n, n_h


class _GRUGates(torch.autograd.Function):
    """:func:`gru_gates` as one autograd node, differentiated by hand."""

    @staticmethod
    def forward(ctx, gates_x, gates_h, h):  # noqa: ANN001
        new, rz, n, n_h = gru_gates(gates_x, gates_h, h)
        ctx.save_for_backward(h, rz, n, n_h)
        return new

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001
        h, rz, n, n_h = ctx.saved_tensors
        size = h.shape[-1]
        r, z = rz[..., :size], rz[..., size:]
        g_n_pre = grad * (1 - z) * (1 - n * n)  # through tanh
        g_rz_pre = torch.cat([g_n_pre * n_h, grad * (h - n)], dim=-1) * rz * (1 - rz)  # through the sigmoids
        return torch.cat([g_rz_pre, g_n_pre], dim=-1), torch.cat([g_rz_pre, g_n_pre * r], dim=-1), grad * z


class _DeferredRecurrentMatmul(torch.autograd.Function):
    """``bias + h @ weight_t`` whose weight and bias gradients are left to
    :meth:`RecurrentControllers.deferred_weight_grad` (the backward records ``(h, grad)``)."""

    @staticmethod
    def forward(ctx, h, weight, weight_t, bias, tape):  # noqa: ANN001
        ctx.save_for_backward(h, weight)
        ctx.tape = tape
        return torch.baddbmm(bias[:, None, :], h, weight_t)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001
        h, weight = ctx.saved_tensors
        ctx.tape.append((h, grad))
        return torch.bmm(grad, weight), None, None, None, None
