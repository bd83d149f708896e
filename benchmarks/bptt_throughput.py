"""BPTT throughput: network-batches per second of our batched trainer against the paper's way.

A network-batch is what the paper does per batch and per network: the 8 test reaches, then one
update on 8 reaches of 100 steps (forward through the arm, backward, clipping, SGD step), with a
128-unit GRU. The baseline is a plain sequential loop of MotorNet's own ``Environment`` with one
``torch.nn.GRU`` (how the paper's code runs each network, there in 40 processes); ours trains K
networks as one batched computation (:class:`agents.bptt.BPTTAgent`). Both run in the same
process, alternately.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import motornet as mn
import torch

from agents.bptt import BPTTAgent, network_seeds
from agents.controllers import RecurrentControllers
from savings_gym.arm import make_effector
from savings_gym.schedule import paper_schedule
from savings_gym.task import TaskParams

PAPER_BATCHES_PER_NETWORK = 20010 + 10001 + 3201 + 10001 + 3201  # 46,414
PAPER_NETWORKS = 40


class SequentialBaseline:
    """One GRU-128 and MotorNet's ``Environment``, stepped as the paper's code does."""

    def __init__(self, hidden: int = 128, seed: int = 0):
        torch.manual_seed(seed)
        p = TaskParams()
        self.env = mn.environment.Environment(
            effector=make_effector(p.dt),
            max_ep_duration=1.0,
            action_noise=p.action_noise,
            proprioception_noise=p.proprioception_noise,
            vision_noise=p.vision_noise,
            proprioception_delay=p.proprioception_delay,
            vision_delay=p.vision_delay,
            differentiable=True,
        )
        obs, _ = self.env.reset(seed=seed, options={"batch_size": 8})
        self.gru = torch.nn.GRU(obs.shape[1], hidden, batch_first=True)
        self.readout = torch.nn.Linear(hidden, 6)
        self.params = list(self.gru.parameters()) + list(self.readout.parameters())
        self.optimizer = torch.optim.SGD(self.params, lr=5e-3)
        self.hidden = hidden

    def _episode(self) -> tuple[torch.Tensor, torch.Tensor]:
        obs, _ = self.env.reset(options={"batch_size": 8})
        h = torch.zeros(1, 8, self.hidden)
        positions, states, done = [], [], False
        while not done:
            y, h = self.gru(obs[:, None, :], h)
            obs, _, done, _, info = self.env.step(torch.sigmoid(self.readout(y[:, 0])))
            positions.append(info["states"]["fingertip"])
            states.append(h[0])
        return torch.stack(positions, 1), torch.stack(states, 1)

    def network_batch(self) -> None:
        with torch.no_grad():  # the test reaches (generous to the baseline: the paper built their graph too)
            self._episode()
        positions, states = self._episode()
        loss = positions.abs().mean() * 1e3 + states.square().mean() * 1e-5
        self.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()


def _ours(networks: int, device: str) -> BPTTAgent:
    controllers = RecurrentControllers("gru", network_seeds(0, networks), 17, 128)
    controllers.freeze_input_and_output()
    return BPTTAgent(controllers, paper_schedule(), seed=0, device=device)


@dataclass
class Row:
    networks: int
    baseline_rate: float
    ours_rate: float

    @property
    def ratio(self) -> float:
        return self.ours_rate / self.baseline_rate


def run(device: str = "cpu", quick: bool = False, networks: tuple[int, ...] = (1, 8, 40)) -> list[Row]:
    """Network-batches per second for each K, beside the sequential baseline timed in between.

    ``quick`` times K = 1 and 4 once each: a smoke run, not a figure for the record.
    """
    if quick:
        networks = (1, 4)
    rows = []
    baseline = SequentialBaseline()
    baseline.network_batch()  # warm-up
    for k in networks:
        agent = _ours(k, device)
        agent.evaluate(0.0)
        agent.train_batch()  # warm-up
        repeats = 1 if quick else 3
        base_times, our_times = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            baseline.network_batch()
            base_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            agent.evaluate(0.0)
            agent.train_batch()
            if device != "cpu":
                torch.cuda.synchronize()
            our_times.append(time.perf_counter() - start)
        rows.append(Row(k, 1.0 / min(base_times), k / min(our_times)))
    return rows


def report(rows: list[Row]) -> str:
    lines = [f"{'K networks':>10} {'baseline nb/s':>14} {'ours nb/s':>10} {'ratio':>7}"]
    for r in rows:
        lines.append(f"{r.networks:>10} {r.baseline_rate:>14.2f} {r.ours_rate:>10.2f} {r.ratio:>6.1f}x")
    widest = max(rows, key=lambda r: r.networks)
    total = PAPER_NETWORKS * PAPER_BATCHES_PER_NETWORK
    lines.append(
        f"paper protocol ({PAPER_NETWORKS} networks x {PAPER_BATCHES_PER_NETWORK:,} batches, H=128): "
        f"{total / widest.ours_rate / 3600:.1f} h with ours at K={widest.networks} "
        f"(target < 9 h), {total / widest.baseline_rate / 3600:.0f} h with the sequential baseline on this machine"
    )
    lines.append("(network-batch: the 8 test reaches + one update on 8 reaches of 100 steps; target >= 25x at K=40)")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
