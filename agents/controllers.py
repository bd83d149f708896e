"""Recurrent controllers, K independent networks evaluated as one batched computation.

The paper's controller is a one-layer GRU, a linear readout and a sigmoid (6 muscle excitations),
with a learned initial hidden state, Xavier-uniform input weights, orthogonal recurrent weights,
zero recurrent biases and an output bias of -5 (so muscles start nearly silent). LSTM and vanilla
RNN cells share the same interface and initialisation.

Every parameter carries a leading network axis K. Network k is initialised from its own seed, so
network k is the same whatever K is, and since Adam and SGD act element-wise, one optimiser over
the stacked parameters is K independent optimisers. A controller sees only the observation.
"""

from __future__ import annotations

from collections.abc import Sequence

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
        gates_x = torch.baddbmm(self.b_ih[:, None, :], obs, self.w_ih.transpose(1, 2))
        gates_h = torch.baddbmm(self.b_hh[:, None, :], h, self.w_hh.transpose(1, 2))
        if self.cell == "gru":
            r_x, z_x, n_x = gates_x.chunk(3, dim=2)
            r_h, z_h, n_h = gates_h.chunk(3, dim=2)
            r = torch.sigmoid(r_x + r_h)
            z = torch.sigmoid(z_x + z_h)
            n = torch.tanh(n_x + r * n_h)
            new_state = ((1 - z) * n + z * h,)
        elif self.cell == "lstm":
            i, f, g, o = (gates_x + gates_h).chunk(4, dim=2)
            c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
            new_state = (torch.sigmoid(o) * torch.tanh(c), c)
        else:
            new_state = (torch.tanh(gates_x + gates_h),)
        readout = torch.baddbmm(self.b_out[:, None, :], new_state[0], self.w_out.transpose(1, 2))
        return torch.sigmoid(readout), new_state

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
