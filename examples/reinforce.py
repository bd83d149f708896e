"""A template learner: K GRU policies trained by REINFORCE, in plain torch, through the savings protocol.

Copy it, change the model or the update, and keep what the protocol relies on (``agents/interface.py``):
envs built from the ``envs`` given, ``train(R)`` (one update: R episodes per network in them, R = 8 unless
``--reaches-per-update``), ``evaluate(field_gain)`` (the 8 test reaches, changing nothing), ``state_dict`` /
``load_state_dict`` (all a resume needs, env too); ``learner_state`` / ``load_learner_state`` serve ``--control reset``.
``Reinforce`` warm-starts from the shipped BPTT GRUs, which reach (``ReinforceFromScratch``: random). Run:

    savings-gym run --agent examples/reinforce.py:Reinforce --networks 5 --preset smoke --threads 1 --out runs/reinforce
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.bptt import PRETRAINED_DIR, load_pretrained, network_seeds
from agents.interface import ProtocolEnvs, ReachRecord, run_test_reaches

ARMS = 8  # episodes per network per batch: the 8 centre-out targets


class Policy(nn.Module):
    """GRU (learned initial state) -> linear -> sigmoid: the mean muscle excitation; exploration adds noise."""

    def __init__(self, observations: int, hidden: int):
        super().__init__()
        self.cell = nn.GRUCell(observations, hidden)
        self.out = nn.Linear(hidden, 6)
        self.h0 = nn.Parameter(torch.zeros(hidden))
        nn.init.constant_(self.out.bias, -3.0)  # start near rest (excitation ~0.05), as the paper's -5

    def forward(self, obs: torch.Tensor, h: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.cell(obs, self.h0.expand(len(obs), -1) if h is None else h)
        return torch.sigmoid(self.out(h)), h


class Reinforce:
    """K independent REINFORCE learners (``--networks K``, at most 8 warm-started), each with 8 arms of one
    vector env. ``savings-gym run`` passes ``envs``, ``num_networks``, ``seed`` (network n's streams derive
    from ``derived_seed(seed, n)``), ``device`` (unused: small networks are faster on the CPU), ``hidden``
    with ``--hidden`` (GRU units, default 128; shipped networks exist for 16, 32, 64, 128 and 256) and
    ``lr``, the SGD rate (the preset's, or ``--lr``); ``noise`` is the exploration noise's std."""

    PRETRAINED: str | None = "gru{hidden}.pt"  # the warm start, in agents/pretrained/; None: random weights

    def __init__(self, envs: ProtocolEnvs, num_networks: int, seed=0, device="cpu", hidden=None, lr=5e-3, noise=0.05):
        self.num_networks, self.noise, self.envs = num_networks, noise, envs
        # one batched simulation, one world (own schedule counter) per network: 8 arms each
        self.env = envs.vector(ARMS * num_networks, num_worlds=num_networks)
        self.env.reset(seed=seed)
        size, hidden = self.env.single_observation_space.shape[0], hidden or 128
        self.nets, self.generators = nn.ModuleList(), []
        for s in network_seeds(seed, num_networks):
            with torch.random.fork_rng():
                torch.manual_seed(s)
                self.nets.append(Policy(size, hidden))
            self.generators.append(torch.Generator().manual_seed(s))
        if self.PRETRAINED:
            self.warm_start(hidden)
        self.optimizer = torch.optim.SGD([p for p in self.nets.parameters() if p.requires_grad], lr=lr)

    def warm_start(self, hidden: int) -> None:
        """Network k takes BPTT network k's weights (agents/controllers.py: the same GRU); as in the BPTT
        runs, only the recurrent layer and initial state learn from then on."""
        path = PRETRAINED_DIR / self.PRETRAINED.format(hidden=hidden)
        if not path.exists():
            raise ValueError(f"no {path}: use --hidden 16, 32, 64, 128 or 256, or ReinforceFromScratch")
        bptt, _ = load_pretrained(path, networks=range(self.num_networks))
        names = {"cell.weight_ih": "w_ih", "cell.weight_hh": "w_hh", "cell.bias_ih": "b_ih", "cell.bias_hh": "b_hh"}
        names |= {"out.weight": "w_out", "out.bias": "b_out", "h0": "h0"}
        for k, net in enumerate(self.nets):
            net.load_state_dict({mine: getattr(bptt, theirs)[k].detach() for mine, theirs in names.items()})
            for frozen in (net.cell.weight_ih, net.cell.bias_ih, *net.out.parameters()):
                frozen.requires_grad_(False)

    def _means(self, obs: np.ndarray, hidden: list) -> torch.Tensor:
        """(K, 8, 6) mean excitations: network k acts on arms 8k..8k+7; updates ``hidden`` in place."""
        arms = torch.as_tensor(obs, dtype=torch.float32).split(ARMS)
        means, hidden[:] = zip(*(net(x, h) for net, x, h in zip(self.nets, arms, hidden, strict=True)), strict=True)
        return torch.stack(means)

    def train(self, episodes: int) -> None:
        """One update: every network plays ``episodes`` episodes, in rounds of its 8 arms, then one REINFORCE
        step on all their returns."""
        if episodes < ARMS or episodes % ARMS:
            raise ValueError(f"episodes must be a multiple of {ARMS} (rounds of the 8 arms), got {episodes}")
        rounds = episodes // ARMS
        log_probs, returns = [], np.zeros((self.num_networks, rounds, ARMS))  # per round: summed over each episode
        for r in range(rounds):
            obs, _ = self.env.reset()  # the next 8 episodes of each network's schedule
            hidden: list[torch.Tensor | None] = [None] * self.num_networks
            log_probs.append(torch.zeros(self.num_networks, ARMS))
            for _ in range(100):  # steps: one episode (1 s) of every arm
                means = self._means(obs, hidden)
                noise = torch.stack([torch.randn(ARMS, 6, generator=g) for g in self.generators]) * self.noise
                actions = (means + noise).detach()  # a constant: the gradient reaches the weights via the means
                log_probs[r] = log_probs[r] + torch.distributions.Normal(means, self.noise).log_prob(actions).sum(-1)
                obs, reward, _, _, _ = self.env.step(actions.view(-1, 6).numpy())
                returns[:, r] += reward.reshape(self.num_networks, ARMS)
        log_probs, returns = torch.cat(log_probs, 1), torch.as_tensor(returns, dtype=torch.float32).flatten(1)
        advantage = (returns - returns.mean(1, keepdim=True)) / (returns.std(1, keepdim=True) + 1e-6)
        self.optimizer.zero_grad()
        (-(advantage * log_probs).mean(1).sum()).backward()  # the networks' losses: independent gradients
        for net in self.nets:
            nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        self.optimizer.step()

    @torch.no_grad()
    def evaluate(self, field_gain: float) -> ReachRecord:
        """The 8 test reaches of every network under ``field_gain`` (mean excitation, no noise)."""
        hidden: list[torch.Tensor | None] = [None] * self.num_networks

        def policy(obs: np.ndarray, t: int) -> np.ndarray:
            if t == 0:
                hidden[:] = [None] * self.num_networks
            return self._means(obs, hidden).view(-1, 6).numpy()

        return run_test_reaches(policy, self.num_networks, field_gain, self.envs.env_id, **self.envs.env_kwargs)

    def state_dict(self) -> dict[str, Any]:
        """Weights, optimiser, noise generators and the env's schedule counter and random streams."""
        generators = [generator.get_state() for generator in self.generators]
        return {**self.learner_state(), "generators": generators, "env": self.env.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_learner_state(state)
        for generator, saved in zip(self.generators, state["generators"], strict=True):
            generator.set_state(saved)
        self.env.set_state(state["env"])

    def learner_state(self) -> dict[str, Any]:  # a copy of weights and optimiser: what --control reset restores
        return copy.deepcopy({"nets": self.nets.state_dict(), "optimizer": self.optimizer.state_dict()})

    def load_learner_state(self, state: dict[str, Any]) -> None:  # the noise and the env stay as they are
        self.nets.load_state_dict(state["nets"])
        self.optimizer.load_state_dict(state["optimizer"])


class ReinforceFromScratch(Reinforce):
    """The same learner from random weights: it has to learn to reach first (examples/pretrain_reach.py)."""

    PRETRAINED = None
