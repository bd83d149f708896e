"""The agent interface: what the protocol, the metrics and the leaderboard need from any learner.

An agent holds K independent learners ("networks", or seeds of an RL algorithm) living through
the same hidden schedule, each in its own world. The protocol only ever asks it to

* :meth:`Agent.train` for some more episodes per learner (the schedule advances as it trains), and
* :meth:`Agent.evaluate` on the 8 test reaches under a chosen field, which must not change it.

and reads where the schedule stands from :attr:`Agent.episodes_completed`. An agent that can
play the test reaches and a training batch from the same weights in one pass may also offer
``evaluate_then_train(field_gain) -> ReachRecord`` (evaluate, then train one batch of 8 episodes);
the protocol uses it where it exists (:func:`benchmarks.protocol.evaluate_then_train`). Checkpoints go through
:meth:`Agent.state_dict` / :meth:`Agent.load_state_dict`, which must capture everything (weights,
optimiser, random generators, the schedule counter) so a resumed run continues identically.

A minimal agent of your own (a learner that never moves, to show the plumbing):

>>> import numpy as np
>>> from agents.interface import ReachRecord, run_test_reaches
>>> class Still:
...     num_networks, episodes_completed = 2, 0
...     def train(self, episodes):
...         self.episodes_completed += episodes
...     def evaluate(self, field_gain):
...         return run_test_reaches(lambda obs, t: np.zeros((len(obs), 6), np.float32), 2, field_gain)
...     def state_dict(self):
...         return {"episodes_completed": self.episodes_completed}
...     def load_state_dict(self, state):
...         self.episodes_completed = state["episodes_completed"]
>>> Still().evaluate(0.0).hand_position.shape
(2, 8, 100, 2)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

import savings_gym  # noqa: F401  (registers the ids)
from savings_gym.task import N_TEST_TARGETS


@dataclass
class ReachRecord:
    """The 8 test reaches of K learners, as host arrays.

    Attributes:
        hand_position: (K, 8, T, 2) fingertip after each of the T steps (m).
        target: (8, 2) test targets (m).
        field_gain: the curl gain tested under (N*s/m).
        hidden: (K, 8, T, H) recurrent state after each step, for agents that have one, else None.
        endpoint_force: (K, 8, T, 2) force the muscles put on the hand (N), where recorded.
    """

    hand_position: np.ndarray
    target: np.ndarray
    field_gain: float
    hidden: np.ndarray | None = None
    endpoint_force: np.ndarray | None = None


@runtime_checkable
class Agent(Protocol):
    """K learners living through a hidden schedule (see the module docstring)."""

    num_networks: int

    @property
    def episodes_completed(self) -> int:
        """Training episodes each learner has completed since the schedule started."""

    def train(self, episodes: int) -> None:
        """Trains every learner on ``episodes`` more episodes of its schedule."""

    def evaluate(self, field_gain: float) -> ReachRecord:
        """The 8 test reaches of every learner under ``field_gain``, leaving the learners unchanged."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume identically."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`."""


def run_test_reaches(
    policy: Callable[[np.ndarray, int], np.ndarray],
    num_networks: int,
    field_gain: float,
    env_id: str = "ArmCurlField-v0",
    eval_seed: int = 0,
    **env_kwargs: Any,
) -> ReachRecord:
    """Runs the 8 test reaches for K learners through a native vector env of 8K arms.

    Args:
        policy: maps observations (8K, obs) and the step index to actions (8K, 6); rows
            8k..8k+7 belong to learner k. Keep any recurrent state inside it.
        num_networks: K.
        field_gain: curl gain to test under (N*s/m).
        env_id, eval_seed, env_kwargs: the env the learners live in.
    """
    arms = num_networks * N_TEST_TARGETS
    venv = gym.make_vec(env_id, num_envs=arms, vectorization_mode="vector_entry_point", **env_kwargs)
    obs, _ = venv.reset(seed=0, options={"mode": "test", "field_gain": field_gain, "eval_seed": eval_seed})
    positions = []
    for t in range(venv.unwrapped.max_episode_steps):
        obs, _, _, _, info = venv.step(policy(obs, t))
        positions.append(info["hand_position"])
    targets = np.asarray(venv.unwrapped.state.target[:N_TEST_TARGETS])
    hand = np.stack(positions, axis=1).reshape(num_networks, N_TEST_TARGETS, -1, 2)
    return ReachRecord(hand_position=hand, target=targets, field_gain=float(field_gain))
