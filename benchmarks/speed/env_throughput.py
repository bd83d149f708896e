"""Environment throughput: our envs against MotorNet's own stepping, in the same run.

Two comparisons (issue: "the environment suite"):

* one arm: MotorNet's ``Environment.step`` (the paper's delays and noise, batch 1) against
  ``gym.make("ArmCurlField-v0")``; target >= 5x;
* a batch: MotorNet's raw ``effector.step`` at B=1024 (physics only, no task) against
  ``gym.make_vec("ArmCurlField-v0", num_envs=1024)`` (physics, field, task, sensing, reward);
  target >= 0.9x.

The machines this runs on are noisy, so the two sides of each pair are timed in alternating
rounds and the rate of each side is its best round (the least disturbed); the median ratio over
rounds is printed too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import gymnasium as gym
import motornet as mn
import numpy as np
import torch

import savings_gym  # noqa: F401  (registers the ids)
from savings_gym.arm import make_effector
from savings_gym.task import TaskParams


@dataclass
class Comparison:
    """One benchmark pair: arm-steps per second of a baseline and of ours."""

    name: str
    baseline: str
    ours: str
    baseline_rate: float
    ours_rate: float
    median_ratio: float
    target: float

    @property
    def ratio(self) -> float:
        return self.ours_rate / self.baseline_rate

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def _rate(step: Callable[[], None], n_steps: int, arms: int) -> float:
    start = time.perf_counter()
    for _ in range(n_steps):
        step()
    return arms * n_steps / (time.perf_counter() - start)


def _alternate(baseline: Callable[[], None], ours: Callable[[], None], n_steps: int, arms: int, rounds: int):
    base_rates, our_rates = [], []
    for _ in range(rounds):
        base_rates.append(_rate(baseline, n_steps, arms))
        our_rates.append(_rate(ours, n_steps, arms))
    ratios = np.array(our_rates) / np.array(base_rates)
    return max(base_rates), max(our_rates), float(np.median(ratios))


def motornet_environment(seed: int = 0, differentiable: bool = False) -> mn.environment.Environment:
    """MotorNet's own environment with the paper's arm, delays and noise (reset to a batch of 1)."""
    p = TaskParams()
    env = mn.environment.Environment(
        effector=make_effector(p.dt),
        max_ep_duration=p.trial_steps * p.dt,
        action_noise=p.action_noise,
        proprioception_noise=p.proprioception_noise,
        vision_noise=p.vision_noise,
        proprioception_delay=p.proprioception_delay,
        vision_delay=p.vision_delay,
        differentiable=differentiable,
    )
    env.reset(seed=seed)
    return env


def single_arm(n_steps: int = 1000, rounds: int = 5, seed: int = 0) -> Comparison:
    """MotorNet ``Environment.step`` (B=1) vs ``gym.make("ArmCurlField-v0")``, constant action."""
    baseline_env = motornet_environment(seed)
    action_b = np.full((1, 6), 0.1, np.float32)

    def baseline_step() -> None:
        if baseline_env.step(action_b)[2]:  # MotorNet reports the time limit as `terminated`
            baseline_env.reset()

    env = gym.make("ArmCurlField-v0")
    env.reset(seed=seed)
    action = np.full(6, 0.1, np.float32)

    def our_step() -> None:
        if env.step(action)[3]:
            env.reset()

    base, ours, median = _alternate(baseline_step, our_step, n_steps, 1, rounds)
    return Comparison(
        "single arm", "motornet Environment.step B=1", "gym.make(ArmCurlField-v0)", base, ours, median, 5.0
    )


def batched_arms(
    num_envs: int = 1024, n_steps: int = 100, rounds: int = 5, seed: int = 0, backend: str = "numpy"
) -> Comparison:
    """MotorNet raw ``effector.step`` at batch ``num_envs`` vs our vector env of that size."""
    effector = make_effector()
    effector.reset(seed=seed, options={"batch_size": num_envs})
    action_t = torch.full((num_envs, 6), 0.1)

    def baseline_step() -> None:
        with torch.no_grad():
            effector.step(action_t)

    venv = gym.make_vec("ArmCurlField-v0", num_envs=num_envs, backend=backend)
    venv.reset(seed=seed)
    action = np.full((num_envs, 6), 0.1, np.float32)

    def our_step() -> None:
        venv.step(action)

    base, ours, median = _alternate(baseline_step, our_step, n_steps, num_envs, rounds)
    return Comparison(
        f"{num_envs} arms",
        f"motornet effector.step B={num_envs}",
        f"make_vec(num_envs={num_envs}, backend={backend})",
        base,
        ours,
        median,
        0.9,
    )


def run(quick: bool = False) -> list[Comparison]:
    """All comparisons; ``quick`` shortens them (a smoke run, not for the record)."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    scale = 10 if quick else 1
    return [
        single_arm(n_steps=1000 // scale, rounds=5 if not quick else 2),
        batched_arms(n_steps=100 // scale, rounds=5 if not quick else 2, backend="numpy"),
        batched_arms(n_steps=100 // scale, rounds=5 if not quick else 2, backend="torch"),
    ]


def report(comparisons: list[Comparison]) -> str:
    """A plain-text table: baseline and ours in arm-steps per second, their ratio and the target."""
    lines = [
        f"{'comparison':<12} {'baseline':<34} {'steps/s':>10} {'ours':<40} {'steps/s':>10} "
        f"{'ratio':>6} {'median':>6} {'target':>7}"
    ]
    for c in comparisons:
        ok = "ok" if c.ratio >= c.target else "MISSED"
        lines.append(
            f"{c.name:<12} {c.baseline:<34} {c.baseline_rate:>10.0f} {c.ours:<40} {c.ours_rate:>10.0f} "
            f"{c.ratio:>5.1f}x {c.median_ratio:>5.1f}x {'>=' + format(c.target, 'g') + 'x':>6} {ok}"
        )
    return "\n".join(lines)
