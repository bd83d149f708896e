"""RL training throughput: environment steps per second of SB3 training on our native vector env
(:class:`savings_gym.sb3.SB3VecEnv`) against the same algorithm on SB3's ``DummyVecEnv`` of single
envs (``gym.make("ArmCurlField-v0")``), in the same process.

Both sides get the same algorithm, hyperparameters (a preset's, as ``savings-gym run --preset``
gives them: the ``rl`` preset's 64 reaches per update, batch 3,200, 4 epochs by default), seed,
number of arms and wrappers (episode monitor, then ``VecNormalize``). One update is the preset's
reaches per update on either side: with 8 arms a rollout of 8 episodes each, with 64 arms one
episode each. Two rates per side:

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

from agents.sb3.hyperparams import hyperparam_layers
from agents.sb3.spec import SB3Spec, make_spec
from benchmarks.savings.presets import PRESETS
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
    reaches_per_update: int = 8

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
    n_envs: int = 8,
    updates: int = 2,
    rounds: int = 3,
    seed: int = 0,
    hyperparams: Any = None,
    reaches_per_update: int = 8,
) -> Row:
    """One algorithm's training on ``SB3VecEnv`` vs ``DummyVecEnv`` of ``gym.make`` envs.

    Args:
        algo: SB3 / sb3-contrib algorithm name (an on-policy one: updates are counted in rollouts).
        n_envs: arms trained together on each side (a divisor of ``reaches_per_update``).
        updates: rollouts (and updates) per timed round.
        rounds: alternating rounds; each side's best counts.
        hyperparams: overrides of the shipped hyperparameters (as :func:`agents.sb3.spec.make_spec`
            takes them: a dict, a yaml path or a list of those).
        reaches_per_update: episodes per arm-set per update, as the protocol's (the rollout is
            ``reaches_per_update / n_envs`` episodes unless ``hyperparams`` set ``n_steps``).
    """
    layers = [*hyperparam_layers(hyperparams), {"n_envs": n_envs}]
    spec = make_spec(algo, ENV_ID, layers, reaches_per_update=reaches_per_update)
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
        reaches_per_update=reaches_per_update,
    )


DEFAULT_ARMS = (8, 64)
"""Arms per learner timed by default: the ``rl`` preset's 8 (eight episodes each per update) and 64
(one episode each per update: the same reaches, one batched step per time step)."""


def run(
    quick: bool = False,
    arms: tuple[int, ...] = DEFAULT_ARMS,
    threads: int = 1,
    algos: tuple[str, ...] = ("RecurrentPPO", "PPO"),
    preset: str = "rl",
) -> list[Row]:
    """The comparisons for ``savings-gym bench rl``: each algorithm at each number of arms, on the
    hyperparameters and reaches per update of ``preset``.

    ``quick`` times RecurrentPPO once at the first arm count on short rollouts (one epoch): a smoke
    run, not a figure for the record. ``threads`` sets torch's CPU threads for both sides (1 is
    SB3's advice for networks this small; more threads mostly add contention).

    Raises:
        ValueError: for an unknown preset, or an arm count that does not divide its reaches per update.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset (--preset) must be one of {sorted(PRESETS)}, got {preset!r}")
    chosen = PRESETS[preset]
    reaches = chosen.reaches_per_update
    for n in arms:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1 or reaches % n:
            raise ValueError(
                f"arms (--n-envs) must each divide preset {preset!r}'s {reaches} reaches per update, got {n!r}"
            )
    if threads:
        torch.set_num_threads(threads)
    if quick:
        smoke = {"n_steps": 100, "n_epochs": 1, "batch_size": 50 * arms[0]}  # one episode per arm: part of an update
        hyperparams = chosen.sb3_overrides("RecurrentPPO", smoke)
        return [compare("RecurrentPPO", arms[0], 1, 1, hyperparams=hyperparams, reaches_per_update=reaches)]
    return [
        compare(
            algo,
            n,
            updates=max(1, 16 // reaches),  # at least 16 reaches per arm-set and round
            rounds=5,
            hyperparams=chosen.sb3_overrides(algo),
            reaches_per_update=reaches,
        )
        for algo in algos
        for n in arms
    ]


def report(rows: list[Row]) -> str:
    """A plain-text table of environment steps per second, both sides and their ratios."""
    lines = [
        f"{'algorithm':<13} {'n_envs':>6} {'reaches/update':>14} {'':>8}  {'DummyVecEnv(gym.make)':>22} "
        f"{'SB3VecEnv (ours)':>17} {'ratio':>6}",
    ]
    for r in rows:
        for what, base, ours in (
            ("training", r.baseline_train, r.ours_train),
            ("rollouts", r.baseline_collect, r.ours_collect),
        ):
            lines.append(
                f"{r.algo:<13} {r.n_envs:>6} {r.reaches_per_update:>14} {what:>8}  {base:>22.0f} {ours:>17.0f} "
                f"{ours / base:>5.2f}x"
            )
    lines.append(
        "(environment steps per second of model.learn; 'rollouts' counts only the collection, 'training' adds "
        f"the updates; torch threads: {torch.get_num_threads()}; target for RecurrentPPO training: >= 3x)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(run()))
