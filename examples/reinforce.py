"""A template learner: K GRU policies trained by REINFORCE, in plain torch, through the savings protocol.

Copy this file and change the model or the update; keep the five things the protocol relies on
(``agents/interface.py``): build your envs from the ``envs`` you are given, ``train(R)`` runs one update
on R episodes per network in them (8 unless ``--reaches-per-update``), ``evaluate(field_gain)`` plays the
8 test reaches without changing anything, and ``state_dict`` / ``load_state_dict`` hold everything a
resumed run needs, the env's ``get_state()`` included. Run it (the schedule is checked every update):

    savings-gym run --agent examples/reinforce.py:Reinforce --networks 5 --preset smoke --out runs/reinforce

It starts from scratch and the smoke preset is 37 batches, so its networks do not reach and the
competence gate leaves them out of the savings metrics; it shows the plumbing, not savings.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.interface import ProtocolEnvs, ReachRecord, run_test_reaches

ARMS = 8  # episodes per network per batch: the 8 centre-out targets
STEPS = 100  # steps per episode (1 s)


class Policy(nn.Module):
    """GRU -> linear -> sigmoid: the mean muscle excitation; exploration adds Gaussian noise."""

    def __init__(self, observations: int, hidden: int):
        super().__init__()
        self.cell = nn.GRUCell(observations, hidden)
        self.out = nn.Linear(hidden, 6)
        nn.init.constant_(self.out.bias, -3.0)  # start near rest (excitation ~0.05), as the paper's -5

    def forward(self, obs: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.cell(obs, h)
        return torch.sigmoid(self.out(h)), h


class Reinforce:
    """K independent REINFORCE learners (``--networks K``), each with its own 8 arms of one vector env.

    Args:
        envs: the protocol's envs (:class:`agents.interface.ProtocolEnvs`).
        num_networks: K.
        seed: the run's seed; network n is seeded from (seed, n).
        device: torch device (unused here: the networks are small, the CPU is faster).
        hidden: GRU units.
        lr: Adam learning rate.
        noise: standard deviation of the exploration noise on the excitations.
    """

    def __init__(
        self,
        envs: ProtocolEnvs,
        num_networks: int,
        seed: int = 0,
        device: str = "cpu",
        hidden: int | None = None,
        lr: float = 1e-3,
        noise: float = 0.05,
    ):
        self.num_networks, self.noise, self.envs = num_networks, noise, envs
        # one batched simulation, one world (own schedule counter) per network: 8 arms each
        self.env = envs.vector(ARMS * num_networks, num_worlds=num_networks)
        self.env.reset(seed=seed)
        size = self.env.single_observation_space.shape[0]
        seeds = [int(np.random.SeedSequence([seed, n]).generate_state(1)[0]) for n in range(num_networks)]
        self.nets, self.generators = [], []
        for s in seeds:
            with torch.random.fork_rng():
                torch.manual_seed(s)
                self.nets.append(Policy(size, hidden or 64))
            self.generators.append(torch.Generator().manual_seed(s))
        self.optimizers = [torch.optim.Adam(net.parameters(), lr=lr) for net in self.nets]

    def _split(self, obs: np.ndarray) -> list[torch.Tensor]:
        return list(torch.as_tensor(obs, dtype=torch.float32).split(ARMS))

    def train(self, episodes: int) -> None:
        """One update: every network plays ``episodes`` episodes (rounds of its 8 arms), then one
        REINFORCE step on their returns."""
        if episodes % ARMS:
            raise ValueError(f"episodes must be a multiple of {ARMS} (rounds of the 8 arms), got {episodes}")
        log_probs, returns = [[] for _ in self.nets], []  # per network: summed over each episode, per arm
        for _ in range(episodes // ARMS):
            obs, _ = self.env.reset()  # the next 8 episodes of each network's schedule
            hidden: list[torch.Tensor | None] = [None] * self.num_networks
            summed, rewards = [torch.zeros(ARMS) for _ in self.nets], np.zeros(self.num_networks * ARMS)
            for _ in range(STEPS):
                actions = []
                for k, (net, x) in enumerate(zip(self.nets, self._split(obs), strict=True)):
                    mean, hidden[k] = net(x, hidden[k])
                    action = mean + self.noise * torch.randn(mean.shape, generator=self.generators[k])
                    summed[k] = summed[k] + torch.distributions.Normal(mean, self.noise).log_prob(action).sum(-1)
                    actions.append(action.detach())
                obs, reward, _, _, _ = self.env.step(torch.cat(actions).numpy())
                rewards += reward
            returns.append(torch.as_tensor(rewards, dtype=torch.float32).view(self.num_networks, ARMS))
            log_probs = [done + [now] for done, now in zip(log_probs, summed, strict=True)]
        returns = torch.cat(returns, 1)
        advantage = (returns - returns.mean(1, keepdim=True)) / (returns.std(1, keepdim=True) + 1e-6)
        for k, optimizer in enumerate(self.optimizers):
            optimizer.zero_grad()
            (-(advantage[k] * torch.cat(log_probs[k])).mean()).backward()
            nn.utils.clip_grad_norm_(self.nets[k].parameters(), 1.0)
            optimizer.step()

    @torch.no_grad()
    def evaluate(self, field_gain: float) -> ReachRecord:
        """The 8 test reaches of every network under ``field_gain`` (mean excitation, no noise)."""
        hidden: list[torch.Tensor | None] = [None] * self.num_networks

        def policy(obs: np.ndarray, t: int) -> np.ndarray:
            if t == 0:
                hidden[:] = [None] * self.num_networks
            actions = []
            for k, (net, x) in enumerate(zip(self.nets, self._split(obs), strict=True)):
                mean, hidden[k] = net(x, hidden[k])
                actions.append(mean)
            return torch.cat(actions).numpy()

        return run_test_reaches(policy, self.num_networks, field_gain, self.envs.env_id, **self.envs.env_kwargs)

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimisers, noise generators and the env's schedule counter and random streams."""
        return {
            "nets": [net.state_dict() for net in self.nets],
            "optimizers": [optimizer.state_dict() for optimizer in self.optimizers],
            "generators": [generator.get_state() for generator in self.generators],
            "env": self.env.get_state(),
        }

    def learner_state(self) -> dict[str, Any]:  # optional: what --control reset restores at FF2's start
        return copy.deepcopy({key: self.state_dict()[key] for key in ("nets", "optimizers")})

    def load_learner_state(self, state: dict[str, Any]) -> None:  # the noise and the env stay as they are
        self.load_state_dict({**self.state_dict(), **state})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, net in enumerate(self.nets):
            net.load_state_dict(state["nets"][k])
            self.optimizers[k].load_state_dict(state["optimizers"][k])
            self.generators[k].set_state(state["generators"][k])
        self.env.set_state(state["env"])
