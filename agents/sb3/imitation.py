"""Imitation: distilling BPTT networks (teachers) into SB3 learners, the warm start of pretraining.

:func:`competent_teachers` keeps the teachers whose null-field reaches are good enough, :func:`record_teacher`
records their reaches and :func:`imitate` fits each learner's policy to them (:class:`Imitation` says how)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

try:
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError('agents.sb3.imitation needs SB3 and sb3-contrib: pip install "savings-gym[rl]"') from error
from agents.bptt import derived_seed
from agents.controllers import RecurrentControllers
from agents.interface import ReachRecord
from agents.sb3.hyperparams import PRETRAIN_ENV_ID
from agents.sb3.learner import SB3Agent, _Learner
from savings_gym.schedule import null_schedule
from savings_gym.task import observation_bounds

Competence = Callable[[ReachRecord], tuple[np.ndarray, dict[str, Any]]]
"""Judges the null-field test reaches: (K,) booleans (competent or not) and the figures behind them."""


@dataclass
class Imitation:
    """How :func:`imitate` distils BPTT networks into SB3 learners (the pretraining warm start)."""

    teacher: str
    """file of BPTT networks (``agents.bptt.save_pretrained``)"""
    networks: tuple[int, ...] | None = None
    """which of its networks to copy: learner n imitates ``networks[n mod len(networks)]``
    (default: all K, learner n imitates network n mod K)"""
    episodes: int = 4096
    """teacher reaches recorded per learner (in ``ArmReach-v0``, the pretraining env)"""
    steps: int = 1500
    """gradient steps on minibatches of 64 reaches"""
    learning_rate: float = 1e-3
    """Adam's, for the imitation only (PPO's own optimiser is untouched)"""
    noise: float | None = None
    """std of the noise added to the executed (not the labelled) excitations while recording, so
    the learner also sees how the teacher recovers from its own mistakes (DART); default: the
    learner's exploration std"""


def load_teachers(path: str | Path) -> RecurrentControllers:
    """BPTT networks to imitate (``agents.bptt.save_pretrained``'s file), checked to see what the
    uncued env shows (the cued learners' extra input, the gain, is 0 in the null field)."""
    from agents.bptt import load_pretrained as load_bptt

    controllers, _ = load_bptt(path)
    inputs = observation_bounds(cued=False)[0].shape[0]
    if controllers.input_size != inputs:
        raise ValueError(f"teacher {path}: networks take {controllers.input_size} inputs, need {inputs}")
    return controllers


def record_teacher(teacher: RecurrentControllers, episodes: int, noise: float, seed: int) -> dict[str, np.ndarray]:
    """Reaches of one BPTT network (:func:`load_teachers`, one selected) in ``ArmReach-v0``
    (batched, no gradients).

    Returns (episodes, T, .) arrays: ``obs`` (what the learner would see before each action),
    ``action`` (the teacher's excitation: the label) and ``reward`` (after the executed,
    noise-perturbed excitation).
    """
    from savings_gym.differentiable import DifferentiableArmEnv

    env = DifferentiableArmEnv(episodes, null_schedule(), env_id=PRETRAIN_ENV_ID, differentiable=False)
    obs, _ = env.reset(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    state = teacher.initial_state(episodes)
    columns: dict[str, list[torch.Tensor]] = {"obs": [], "action": [], "reward": []}
    truncated = False
    with torch.no_grad():
        while not truncated:
            action, state = teacher(obs[None], state)
            action = action[0]
            executed = (action + noise * torch.randn(action.shape, generator=generator)).clamp(0.0, 1.0)
            columns["obs"].append(obs)
            columns["action"].append(action)
            obs, reward, _, truncated, _ = env.step(executed)
            columns["reward"].append(reward)
    return {key: torch.stack(values, dim=1).numpy() for key, values in columns.items()}


def imitate(agent: SB3Agent, imitation: Imitation, seed: int = 0) -> dict[str, Any]:
    """Distils BPTT networks into the agent's learners: the warm start of RL pretraining.

    PPO from scratch does not learn to reach under the paper's cost at budgets this project can
    run (``benchmarks/RESULTS.md``: it settles on holding the arm still), although reaching scores
    better than holding still at every exploration noise. So the learners first copy a reaching
    BPTT network, then PPO takes over. Per learner: record the teacher's reaches
    (:func:`record_teacher`), set the normalisation statistics from them, then fit the policy's
    mean action to the teacher's excitations and the value to the recorded (normalised,
    discounted) return-to-go, with mean squared errors. The exploration std, PPO's optimiser and
    counters are left as they were.

    Returns:
        Per learner, the last minibatch's action error (RMS, excitation units) and the teacher used.
    """
    if not agent.spec.imitates:
        raise ValueError(
            f"sb3:{agent.spec.algo} ({agent.spec.policy}) cannot imitate: imitation fits an actor-critic's "
            "mean action and state value (PPO, A2C, TRPO, RecurrentPPO)"
        )
    if not isinstance(imitation.episodes, int) or imitation.episodes < 64:
        raise ValueError(f"imitation episodes must be an integer >= 64, got {imitation.episodes!r}")
    if not isinstance(imitation.steps, int) or imitation.steps < 0:
        raise ValueError(f"imitation steps must be a non-negative integer, got {imitation.steps!r}")
    teachers = load_teachers(imitation.teacher)  # read once
    pool = list(range(teachers.num_networks)) if imitation.networks is None else list(imitation.networks)
    if not pool or any(
        isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < teachers.num_networks for i in pool
    ):
        raise ValueError(
            f"imitation networks must be a non-empty list of indices below {teachers.num_networks} "
            f"(the networks in {imitation.teacher}), got {imitation.networks!r}"
        )
    errors = []
    for learner in agent.learners:
        policy = learner.model.policy
        noise = imitation.noise
        if noise is None:
            noise = float(policy.log_std.detach().exp().mean()) if hasattr(policy, "log_std") else 0.0
        teacher = teachers.select([pool[learner.index % len(pool)]])
        data = record_teacher(teacher, imitation.episodes, noise, derived_seed(seed, learner.index))
        obs, rewards = data["obs"], data["reward"]
        if agent.spec.cued:  # the cued learner sees the gain as well: 0 in the null field
            obs = np.concatenate([obs, np.zeros((*obs.shape[:2], 1), obs.dtype)], axis=-1)
        gamma = learner.model.gamma
        if learner.normalizer is not None:
            normalizer = learner.normalizer
            normalizer.obs_rms.update(obs.reshape(-1, obs.shape[-1]))
            running = np.zeros(len(rewards))  # VecNormalize's own discounted return, step by step
            for t in range(rewards.shape[1]):
                running = running * gamma + rewards[:, t]
                normalizer.ret_rms.update(running)
            obs = normalizer.normalize_obs(obs)
            rewards = normalizer.normalize_reward(rewards)
        to_go = np.zeros_like(rewards)
        later = np.zeros(len(rewards))
        for t in reversed(range(rewards.shape[1])):
            later = rewards[:, t] + gamma * later
            to_go[:, t] = later
        errors.append(_fit_policy(learner, obs, data["action"], to_go, imitation, derived_seed(seed, learner.index)))
    return {"teacher": str(imitation.teacher), "teacher_networks": pool, "action_rms_error": errors}


def _fit_policy(
    learner: _Learner, obs: np.ndarray, actions: np.ndarray, to_go: np.ndarray, imitation: Imitation, seed: int
) -> float:
    policy = learner.model.policy
    device = policy.device
    episodes, length = obs.shape[:2]
    trainable = [p for name, p in policy.named_parameters() if name != "log_std"]
    optimizer = torch.optim.Adam(trainable, lr=imitation.learning_rate)
    order = np.random.default_rng(seed)
    error = float("nan")
    policy.set_training_mode(True)
    for _ in range(imitation.steps):
        pick = order.choice(episodes, size=64, replace=False)
        x = torch.as_tensor(obs[pick], dtype=torch.float32, device=device).reshape(64 * length, -1)
        y = torch.as_tensor(actions[pick], dtype=torch.float32, device=device).reshape(64 * length, -1)
        v = torch.as_tensor(to_go[pick], dtype=torch.float32, device=device).reshape(64 * length)
        if isinstance(policy, RecurrentActorCriticPolicy):
            # whole episodes, sequence-major (as sb3-contrib's buffer hands them over), zero start state
            starts = torch.zeros(64, length, device=device)
            starts[:, 0] = 1.0
            starts = starts.reshape(-1)
            zeros = torch.zeros(policy.lstm_actor.num_layers, 64, policy.lstm_actor.hidden_size, device=device)
            mean = policy.get_distribution(x, (zeros, zeros), starts)[0].distribution.mean
            critic = policy.lstm_critic if policy.lstm_critic is not None else policy.lstm_actor
            zeros_vf = torch.zeros(critic.num_layers, 64, critic.hidden_size, device=device)
            value = policy.predict_values(x, (zeros_vf, zeros_vf), starts).flatten()
        else:
            mean = policy.get_distribution(x).distribution.mean
            value = policy.predict_values(x).flatten()
        action_loss = torch.mean((mean - y) ** 2)
        loss = action_loss + torch.mean((value - v) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        error = float(action_loss.detach().sqrt())
    policy.set_training_mode(False)
    return error


def _check(agent: SB3Agent, competent: Competence | None, networks: int) -> tuple[np.ndarray, dict[str, Any]]:
    if competent is None:
        return np.zeros(networks, bool), {}
    return competent(agent.evaluate(0.0))


def competent_teachers(path: str | Path, competent: Competence) -> tuple[list[int], dict[str, Any]]:
    """The networks of a BPTT file that meet the pretraining criterion themselves, judged on the
    same 8 null-field test reaches (all of them if none does), with the figures behind it.

    A copy reaches no better than its teacher: the shipped GRU-128s meet 2 cm / 1 cm for 3 of 8
    networks, and learners copying the others inherited their lateral deviation.
    """
    from agents.bptt import BPTTAgent

    teachers = load_teachers(path)
    record = BPTTAgent(teachers, null_schedule(), env_id=PRETRAIN_ENV_ID, batch_size=32).evaluate(0.0)
    met, figures = competent(record)
    networks = [int(i) for i in np.flatnonzero(met)] or list(range(teachers.num_networks))
    return networks, figures
