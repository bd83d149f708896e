"""BPTT throughput: network-batches per second of our batched trainer against the paper's way.

A network-batch is what the paper does per batch and per network: the 8 test reaches, then one
update on 8 reaches of 100 steps (forward through the arm, backward, clipping, SGD step), with a
128-unit GRU. The baseline is a plain sequential loop of MotorNet's own ``Environment`` with one
``torch.nn.GRU`` (how the paper's code runs each network, there in 40 processes); ours trains K
networks as one batched computation (:class:`agents.bptt.BPTTAgent`, ``compiled`` engine), and
"today's path" is the same agent on the ``reference`` engine (plain autograd: the path before
issue 17). All run in the same process, alternately, so a noisy machine moves them together.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from agents.bptt import BPTTAgent, network_seeds
from agents.controllers import RecurrentControllers
from benchmarks.speed.env_throughput import motornet_environment
from savings_gym.schedule import paper_schedule

PAPER_BATCHES_PER_NETWORK = 20010 + 10001 + 3201 + 10001 + 3201  # 46,414
PAPER_NETWORKS = 40


class SequentialBaseline:
    """One GRU-128 and MotorNet's ``Environment``, stepped as the paper's code does."""

    def __init__(self, hidden: int = 128, seed: int = 0):
        torch.manual_seed(seed)
        self.env = motornet_environment(seed, differentiable=True)
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


LEVERS = ("reference", "+ arm backward", "eager", "compiled, apart", "compiled, 1 process", "compiled")
"""Cumulative speed-ups, timed one after another by ``--levers`` (``benchmarks/RESULTS.md``):
today's path before issue 17 (plain autograd); + the arm step's hand-written backward; + fused
GRU gates, contiguous transposed weights and the deferred recurrent-weight gradient (the
``eager`` engine); + each step and its backward compiled, test reaches in their own rollout;
+ the test reaches in the training rollout's forward pass (the ``compiled`` engine in one
process); + the networks split over one worker process per torch thread (``shards="auto"``, as
``savings-gym run`` and ``pretrain`` train: the default)."""


def bench_agent(networks: int, device: str, lever: str = "compiled", hidden: int = 128) -> BPTTAgent:
    """K frozen-input GRUs on the paper's schedule, set up as ``lever`` (one of :data:`LEVERS`)."""
    controllers = RecurrentControllers("gru", network_seeds(0, networks), 17, hidden)
    controllers.freeze_input_and_output()
    engine = {"+ arm backward": "reference", "compiled, apart": "compiled", "compiled, 1 process": "compiled"}
    shards = "auto" if lever == "compiled" else 1
    agent = BPTTAgent(
        controllers, paper_schedule(), seed=0, device=device, engine=engine.get(lever, lever), shards=shards
    )
    if lever == "+ arm backward":  # the reference engine with the arm's backward switched back on
        agent.env.xp.hand_written_grads = True
    return agent


def network_batch(agent: BPTTAgent, apart: bool = False) -> None:
    """What the protocol does per batch: the test reaches, then one update."""
    if apart:
        agent.evaluate(0.0)
        agent.train_batch()
    else:
        agent.evaluate_then_train(0.0)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@dataclass
class Row:
    networks: int
    baseline_rate: float  # network-batches/s of the sequential MotorNet loop
    ours_rate: float  # of the compiled engine (or the lever timed)
    today_rate: float | None = None  # of the reference engine (the path before issue 17), same run
    warmup_seconds: float = 0.0  # the first batch of ours: compiling its step, where it compiles
    label: str = "compiled"
    shards: int = 1  # worker processes of ours (1: none, the agent's own)

    @property
    def ratio(self) -> float:
        return self.ours_rate / self.baseline_rate

    @property
    def today_ratio(self) -> float | None:
        return None if self.today_rate is None else self.ours_rate / self.today_rate


def timed_network_batch(agent: BPTTAgent, device: str, apart: bool = False) -> float:
    """Seconds of one :func:`network_batch`, the device synchronised."""
    start = time.perf_counter()
    network_batch(agent, apart)
    _sync(device)
    return time.perf_counter() - start


def run(
    device: str = "cpu",
    quick: bool = False,
    networks: tuple[int, ...] = (1, 8, 40),
    levers: bool = False,
    repeats: int = 3,
    hidden: int = 128,
) -> list[Row]:
    """Network-batches per second for each K: ours (the ``compiled`` engine), today's path (the
    ``reference`` engine) and the sequential baseline, timed alternately in the same run; each
    rate is the best of ``repeats``. With ``levers``, one row per entry of :data:`LEVERS` at the
    largest K instead. ``quick`` times K = 2 networks of 32 units once: a smoke run (seconds once
    compiled), not a figure for the record.
    """
    if quick:
        networks, repeats, hidden = (2,), 1, 32
    rows = []
    baseline = SequentialBaseline(hidden=hidden)
    baseline.network_batch()  # warm-up
    plan = [(max(networks), lever) for lever in LEVERS] if levers else [(k, "compiled") for k in networks]
    for k, lever in plan:
        agent = bench_agent(k, device, lever, hidden)
        today = None if levers else bench_agent(k, device, "reference", hidden)
        apart = lever == "compiled, apart"
        warmup = timed_network_batch(agent, device, apart)
        if today is not None:
            timed_network_batch(today, device)
        base_times, our_times, today_times = [], [], []
        for _ in range(repeats):
            start = time.perf_counter()
            baseline.network_batch()
            base_times.append(time.perf_counter() - start)
            our_times.append(timed_network_batch(agent, device, apart))
            if today is not None:
                today_times.append(timed_network_batch(today, device))
        today_rate = k / min(today_times) if today_times else None
        rows.append(Row(k, 1.0 / min(base_times), k / min(our_times), today_rate, warmup, lever, agent.shards))
        agent.close()
    return rows


def paper_hours(rate: float) -> float:
    """Wall time (h) of the paper's protocol (40 networks x 46,414 batches) at ``rate`` network-batches/s."""
    return PAPER_NETWORKS * PAPER_BATCHES_PER_NETWORK / rate / 3600


def faithful_batches_per_network() -> int:
    """Batches per network of the ``faithful`` preset run as its README says: pretraining, the four
    phases, and the practice control (as many batches again)."""
    from benchmarks.savings.presets import PRESETS

    faithful = PRESETS["faithful"]
    return faithful.pretrain_batches + 2 * faithful.total_batches


def faithful_hours(rate: float) -> float:
    """Wall time (h) of the faithful run (40 networks, :func:`faithful_batches_per_network`) at ``rate``."""
    return PAPER_NETWORKS * faithful_batches_per_network() / rate / 3600


def report(rows: list[Row]) -> str:
    levers = len({r.label for r in rows}) > 1
    head = "lever" if levers else "K networks"
    lines = [
        f"{head:>16} {'baseline nb/s':>14} {'today nb/s':>11} {'ours nb/s':>10} {'vs baseline':>12} "
        f"{'vs today':>9} {'1st batch s':>12} {'processes':>10}"
    ]
    for r in rows:
        name = f"{r.label} K={r.networks}" if levers else str(r.networks)
        today = "" if r.today_rate is None else f"{r.today_rate:.2f}"
        vs_today = "" if r.today_ratio is None else f"{r.today_ratio:.2f}x"
        lines.append(
            f"{name:>16} {r.baseline_rate:>14.2f} {today:>11} {r.ours_rate:>10.2f} {r.ratio:>11.1f}x "
            f"{vs_today:>9} {r.warmup_seconds:>12.1f} {r.shards:>10}"
        )
    widest = max(rows, key=lambda r: (r.networks, r.label == "compiled"))
    line = (
        f"paper protocol ({PAPER_NETWORKS} networks x {PAPER_BATCHES_PER_NETWORK:,} batches, H=128): "
        f"{paper_hours(widest.ours_rate):.1f} h with ours at K={widest.networks}"
    )
    if widest.today_rate is not None:
        line += f", {paper_hours(widest.today_rate):.1f} h with today's path"
    lines.append(line + f", {paper_hours(widest.baseline_rate):.0f} h with the sequential baseline on this machine")
    lines.append(
        f"faithful preset ({PAPER_NETWORKS} networks x {faithful_batches_per_network():,} batches: pretraining, "
        f"the phases and the practice control): {faithful_hours(widest.ours_rate):.1f} h with ours at "
        f"K={widest.networks}"
    )
    lines.append(
        "(network-batch: the 8 test reaches + one update on 8 reaches of 100 steps; 'today': the reference engine, "
        "the path before issue 17; targets at K=40: >= 80x the baseline, goal >= 105x; '1st batch' includes compiling "
        "and starting ours' worker processes; 'processes': ours' shard workers, one per torch thread, 1: none)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
