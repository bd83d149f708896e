"""RL training throughput: environment steps per second of SB3 training on our native vector env
(:class:`savings_gym.sb3.SB3VecEnv`) against the same algorithm on SB3's ``DummyVecEnv`` of single
envs (``gym.make("ArmCurlField-v0")``), in the same process.

Both sides get the same algorithm, hyperparameters (the shipped ``agents/hyperparams`` yaml, the
ones ``savings-gym run`` uses), seed, number of arms and wrappers (episode monitor, then
``VecNormalize``). Two rates per side:

* training: steps of ``model.learn`` (rollouts and updates: what a user waits for);
* collection: the rollouts alone (policy forward passes and env steps), timed between SB3's
  rollout-start and rollout-end callbacks: the share the env implementation changes.

The machines this runs on are noisy, so the sides are timed in alternating rounds and each rate is
its best round.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor, VecNormalize

from agents.sb3_agent import SB3Spec, make_spec
from savings_gym.sb3 import make_sb3_vec_env

ENV_ID = "ArmCurlField-v0"


class _CollectionTimer(BaseCallback):
    """Seconds spent collecting rollouts (between SB3's rollout start and end)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds = 0.0
        self._start = 0.0

    def _on_rollout_start(self) -> None:
        self._start = time.perf_counter()

    def _on_rollout_end(self) -> None:
        self.seconds += time.perf_counter() - self._start

    def _on_step(self) -> bool:
        return True


@dataclass
class Row:
    """Steps per second of one algorithm on both sides."""

    algo: str
    n_envs: int
    baseline_train: float
    ours_train: float
    baseline_collect: float
    ours_collect: float

    @property
    def train_ratio(self) -> float:
        return self.ours_train / self.baseline_train

    @property
    def collect_ratio(self) -> float:
        return self.ours_collect / self.baseline_collect

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "train_ratio": self.train_ratio, "collect_ratio": self.collect_ratio}


def _model(spec: SB3Spec, env: VecEnv, seed: int) -> BaseAlgorithm:
    env = VecNormalize(env, **spec.normalize) if spec.normalize is not None else env
    return spec.algo_class(spec.policy_class, env, seed=seed, device="cpu", verbose=0, **spec.model_kwargs())


def _timed_learn(model: BaseAlgorithm, timesteps: int) -> tuple[float, float]:
    """(training steps/s, collection steps/s) of one ``learn`` call."""
    timer = _CollectionTimer()
    start = time.perf_counter()
    model.learn(timesteps, callback=timer, reset_num_timesteps=False)
    seconds = time.perf_counter() - start
    return timesteps / seconds, timesteps / timer.seconds


def compare(
    algo: str = "RecurrentPPO",
    n_envs: int = 16,
    updates: int = 2,
    rounds: int = 3,
    seed: int = 0,
    hyperparams: dict[str, Any] | None = None,
) -> Row:
    """One algorithm's training on ``SB3VecEnv`` vs ``DummyVecEnv`` of ``gym.make`` envs.

    Args:
        algo: SB3 / sb3-contrib algorithm name (an on-policy one: updates are counted in rollouts).
        n_envs: arms trained together on each side.
        updates: rollouts (and updates) per timed round.
        rounds: alternating rounds; each side's best counts.
        hyperparams: overrides of the shipped hyperparameters.
    """
    spec = make_spec(algo, ENV_ID, hyperparams)
    timesteps = updates * spec.algo_kwargs.get("n_steps", 100) * n_envs
    ours = _model(spec, VecMonitor(make_sb3_vec_env(ENV_ID, n_envs)), seed)  # make_vec_env monitors each env
    baseline = _model(spec, make_vec_env(lambda: gym.make(ENV_ID), n_envs, seed=seed, vec_env_cls=DummyVecEnv), seed)
    for model in (baseline, ours):  # warm-up: first allocations, lazy imports
        model.learn(timesteps // updates, reset_num_timesteps=False)
    base_rates, our_rates = [], []
    for _ in range(rounds):
        base_rates.append(_timed_learn(baseline, timesteps))
        our_rates.append(_timed_learn(ours, timesteps))
    return Row(
        algo,
        n_envs,
        baseline_train=max(r[0] for r in base_rates),
        ours_train=max(r[0] for r in our_rates),
        baseline_collect=max(r[1] for r in base_rates),
        ours_collect=max(r[1] for r in our_rates),
    )


def run(quick: bool = False, n_envs: int = 16, threads: int = 1, algos: tuple[str, ...] = ("RecurrentPPO", "PPO")):
    """The comparisons for ``savings-gym bench rl``.

    ``quick`` times RecurrentPPO once on short rollouts (20 steps, one epoch): a smoke run, not a
    figure for the record. ``threads`` sets torch's CPU threads for both sides (1 is SB3's advice
    for networks this small; more threads mostly add contention).
    """
    if threads:
        torch.set_num_threads(threads)
    if quick:
        return [compare("RecurrentPPO", n_envs, updates=1, rounds=1, hyperparams={"n_steps": 20, "n_epochs": 1})]
    return [compare(algo, n_envs) for algo in algos]


def report(rows: list[Row]) -> str:
    """A plain-text table of environment steps per second, both sides and their ratios."""
    lines = [
        f"{'algorithm':<13} {'n_envs':>6} {'':>8}  {'DummyVecEnv(gym.make)':>22} {'SB3VecEnv (ours)':>17} {'ratio':>6}",
    ]
    for r in rows:
        for what, base, ours in (
            ("training", r.baseline_train, r.ours_train),
            ("rollouts", r.baseline_collect, r.ours_collect),
        ):
            lines.append(f"{r.algo:<13} {r.n_envs:>6} {what:>8}  {base:>22.0f} {ours:>17.0f} {ours / base:>5.2f}x")
    lines.append(
        "(environment steps per second of model.learn; 'rollouts' counts only the collection, 'training' adds "
        f"the updates; torch threads: {torch.get_num_threads()})"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
