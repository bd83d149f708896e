"""Conformance checks for savings-gym environments, as plain functions you can run on your own.

Each ``check_*`` raises ``AssertionError`` (or Gymnasium's own errors) with a message saying what
broke; :func:`throughput` returns a rate. The project's tests call these, and so can a user who
wraps or re-implements an env:

>>> import gymnasium as gym, savings_gym
>>> from savings_gym.testing import check_seeding
>>> check_seeding(lambda: gym.make("ArmCurlField-v0"), n_steps=20)
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils.env_checker import check_env, data_equivalence

from savings_gym.schedule import Schedule

PHASE_WORDS = ("phase", "field", "gain", "schedule", "curl")


def check_api(env: gym.Env) -> None:
    """Gymnasium's ``check_env`` on the unwrapped env, with every warning turned into an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=env.render_mode is None)


def check_seeding(make_env: Callable[[], gym.Env], seed: int = 0, n_steps: int = 250) -> None:
    """Two envs from one constructor, reset with the same seed and stepped in lockstep with the
    same (seeded) random actions, across episode ends, give identical outputs."""
    env_a, env_b = make_env(), make_env()
    for env in (env_a, env_b):
        env.action_space.seed(seed)
    out_a, out_b = env_a.reset(seed=seed), env_b.reset(seed=seed)
    assert data_equivalence(out_a, out_b), "reset(seed=...) gave different outputs"
    for t in range(n_steps):
        action_a, action_b = env_a.action_space.sample(), env_b.action_space.sample()
        assert data_equivalence(action_a, action_b), "seeded action spaces diverged"
        out_a, out_b = env_a.step(action_a), env_b.step(action_b)
        assert data_equivalence(out_a, out_b), f"step {t}: outputs differ between two envs with the same seed"
        if out_a[2] or out_a[3]:
            out_a, out_b = env_a.reset(), env_b.reset()
            assert data_equivalence(out_a, out_b), f"step {t}: reset after an episode end differs"


def check_vector_matches_single(
    env_id: str, num_envs: int = 3, seed: int = 0, n_steps: int = 120, atol: float = 1e-5, **kwargs: Any
) -> float:
    """Arm i of ``gym.make_vec(env_id, num_envs)`` reset with ``seed`` lives like ``gym.make(env_id)``
    reset with ``seed + i``, given the same actions, across an autoreset.

    Returns:
        The largest absolute difference seen in observations, rewards and info.
    """
    venv = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)
    envs = [gym.make(env_id, **kwargs) for _ in range(num_envs)]
    obs, info = venv.reset(seed=seed)
    singles = [env.reset(seed=seed + i) for i, env in enumerate(envs)]
    worst = max(float(np.abs(obs[i] - o).max()) for i, (o, _) in enumerate(singles))
    rng = np.random.default_rng(seed)
    for t in range(n_steps):
        actions = rng.uniform(0.0, 0.5, size=(num_envs, 6)).astype(np.float32)
        obs, reward, terminated, truncated, info = venv.step(actions)
        for i, env in enumerate(envs):
            if t == env.spec.max_episode_steps:  # the vector env's NEXT_STEP autoreset
                o, inf = env.reset()
                r = 0.0
            else:
                o, r, _, tr, inf = env.step(actions[i])
                assert tr == bool(truncated[i]), f"step {t}, arm {i}: truncation differs"
            worst = max(worst, float(np.abs(obs[i] - o).max()), abs(float(reward[i]) - r))
            for key, value in inf.items():
                worst = max(worst, float(np.abs(info[key][i] - value).max()))
        assert worst <= atol, f"step {t}: the vector env differs from single envs by {worst:.3g} > {atol}"
    return worst


def check_phase_hidden(env_id: str = "ArmCurlField-v0", seed: int = 0, gain: float = 8.0, tries: int = 10) -> int:
    """The phase is hidden: two runs with the same seed and actions, one in a null-field schedule
    and one in a curl-field schedule, observe exactly the same until the field has had time to act
    (the step after go time + go-cue delay), and differ after it. No info key names the phase.

    A run whose arm happens to rest against a joint limit when the field comes on feels no field;
    the check then tries the next seed, up to ``tries`` seeds.

    Returns:
        The first step at which the observations differ.
    """
    trial = {"trials": {"catch": False, "go_time": 0.2}}
    for attempt in range(tries):
        runs = []
        for k in (0.0, gain):
            env = gym.make(env_id, schedule=Schedule([("P", k, None)]))
            obs, info = env.reset(seed=seed + attempt, options=trial)
            for key in info:
                assert not any(word in key.lower() for word in PHASE_WORDS), f"info key {key!r} names the phase"
            observations = [obs]
            rng = np.random.default_rng(seed + attempt)
            for t in range(env.spec.max_episode_steps):
                # slow, mild co-contraction: keeps the arm moving inside its range
                action = 0.05 + 0.04 * np.sin(t / 5 + np.arange(6) + rng.uniform(0, 6))
                obs, _, _, _, info = env.step(action.astype(np.float32))
                observations.append(obs)
            runs.append(np.array(observations))
            params = env.unwrapped.params
        if env.unwrapped.cued:
            runs = [r[:, :-1] for r in runs]  # the cued variant shows k on purpose
        onset = (0.2 + params.go_cue_delay) / params.dt
        differs = np.flatnonzero(np.any(runs[0] != runs[1], axis=1))
        if len(differs):
            first = int(differs[0])
            # the force computed after step `onset` acts during the next step; the hand it moves is
            # seen through the muscle (2 steps) and vision (7 steps) delays
            assert first > onset + 1, f"observations differ at step {first}, before the field acts (onset {onset:.1f})"
            return first
    raise AssertionError(f"the field changed no observation in {tries} seeded runs")


def throughput(env: gym.Env | gym.vector.VectorEnv, n_steps: int = 1000, seed: int = 0) -> float:
    """Environment steps per second (arm-steps for a vector env) under constant mid-range actions,
    resets included."""
    obs, _ = env.reset(seed=seed)
    action = np.full(env.action_space.shape, 0.1, np.float32)
    n = getattr(env, "num_envs", 1)
    start = time.perf_counter()
    for _ in range(n_steps):
        _, _, terminated, truncated, _ = env.step(action)
        if n == 1 and (terminated or truncated):
            env.reset()
    return n * n_steps / (time.perf_counter() - start)
