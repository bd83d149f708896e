"""The experimenter's log: one CSV row per finished training episode, for a learner's own loop.

Wrap the env a learner trains in; observations, rewards, info and everything the learner can see
pass through unchanged, while a CSV file gets, per training episode that runs to its end, the
schedule's episode index, the world, the phase, the field gain and the return (and, with
``tensorboard=DIR``, TensorBoard gets them as scalars, see :data:`TENSORBOARD_TAGS`):

>>> import gymnasium as gym, numpy as np, tempfile, savings_gym
>>> from savings_gym.wrappers import EpisodeLog
>>> path = tempfile.mkdtemp() + "/episodes.csv"
>>> env = EpisodeLog(gym.make("ArmCurlField-v0", phase_episodes={"NF1": 1}), path)
>>> for episode in range(2):
...     _ = env.reset(seed=0 if episode == 0 else None)
...     for t in range(100):
...         _ = env.step(np.full(6, 0.05, np.float32))
>>> rows = open(path).read().splitlines()
>>> rows[0], [row.split(",")[:4] for row in rows[1:]]
('episode,world,phase,field_gain,return', [['0', '0', 'NF1', '0.0'], ['1', '0', 'FF1', '8.0']])
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorWrapper

COLUMNS = ("episode", "world", "phase", "field_gain", "return")
"""The CSV's columns: episode index in the world's schedule (from 0), world, phase name, curl gain
(N*s/m) and the episode's undiscounted return."""


TENSORBOARD_TAGS = ("episode/return", "schedule/field_gain", "schedule/phase")
"""The scalars of ``tensorboard=DIR``, one run ``DIR/world_<w>`` per world, against the world's episode
index: the return, the curl gain (N*s/m) and the phase's index in the schedule (NF1 0, FF1 1, ...)."""


def _summary_writers(folder: str | Path, worlds: int) -> list[Any]:
    """One TensorBoard writer per world; a clear error without tensorboard."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise ValueError(f"tensorboard={str(folder)!r} needs tensorboard: pip install tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    return [SummaryWriter(str(Path(folder) / f"world_{w}")) for w in range(worlds)]


class _Rows:
    """Sums each arm's rewards and writes a row for every arm whose episode counted in the schedule."""

    def __init__(self, path: str | Path | None, num_envs: int, tensorboard: str | Path | None, worlds: int):
        if path is None and tensorboard is None:
            raise ValueError("give path (a CSV file), tensorboard (a folder) or both: where the episodes are logged")
        self.writers = [] if tensorboard is None else _summary_writers(tensorboard, worlds)
        self.path = None if path is None else Path(path)
        self.returns = np.zeros(num_envs)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "w", newline="") as handle:
                csv.writer(handle).writerow(COLUMNS)

    def add(self, rewards: Any, world: Any, before: int) -> None:
        """Adds one step's rewards; when it finished training episodes (the counter moved from
        ``before``), writes their rows and starts new sums."""
        self.returns += np.asarray(rewards, np.float64).reshape(-1)
        done = world.episodes_completed - before
        if done <= 0:
            return
        per_world = len(self.returns) // world.num_worlds
        rows = []
        for arm, value in enumerate(self.returns):
            episode = before + arm % per_world
            if arm % per_world < done:
                phase = world.schedule.phase_at(episode)
                rows.append((episode, arm // per_world, phase.name, phase.field_gain, value))
        if self.path is not None:
            with open(self.path, "a", newline="") as handle:
                csv.writer(handle).writerows(row[:-1] + (f"{row[-1]:.6g}",) for row in rows)
        for episode, w, phase_name, gain, value in rows if self.writers else ():
            for tag, scalar in zip(
                TENSORBOARD_TAGS, (value, gain, world.schedule.names.index(phase_name)), strict=True
            ):
                self.writers[w].add_scalar(tag, scalar, episode)
        for writer in self.writers:
            writer.flush()
        self.returns[:] = 0.0

    def restart(self) -> None:
        self.returns[:] = 0.0

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


class _Logged:
    """What both wrappers do around the env's own reset and step."""

    env: Any
    _rows: _Rows

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        self._rows.restart()
        return self.env.reset(**kwargs)

    def step(self, action: Any) -> tuple[Any, Any, Any, Any, dict]:
        before = self.env.unwrapped.episodes_completed
        out = self.env.step(action)
        self._rows.add(out[1], self.env.unwrapped, before)
        return out

    def close(self, **kwargs: Any) -> None:
        self._rows.close()
        self.env.close(**kwargs)


class EpisodeLog(_Logged, gym.Wrapper):
    """A single env (``gym.make``) that logs its finished training episodes to ``path`` (CSV, :data:`COLUMNS`).

    Args:
        env: a savings-gym env.
        path: the CSV file (written anew), or None for TensorBoard only.
        tensorboard: a folder for TensorBoard scalars (:data:`TENSORBOARD_TAGS`), or None.

    Raises:
        ValueError: with neither ``path`` nor ``tensorboard``, or ``tensorboard`` without the
            tensorboard package installed.
    """

    def __init__(self, env: gym.Env, path: str | Path | None, tensorboard: str | Path | None = None):
        gym.Wrapper.__init__(self, env)
        self._rows = _Rows(path, 1, tensorboard, 1)


class VectorEpisodeLog(_Logged, VectorWrapper):
    """The same for a vector env (``gym.make_vec`` or ``ProtocolEnvs.vector``): a row per arm's episode."""

    def __init__(self, env: gym.vector.VectorEnv, path: str | Path | None, tensorboard: str | Path | None = None):
        VectorWrapper.__init__(self, env)
        self._rows = _Rows(path, env.num_envs, tensorboard, env.unwrapped.num_worlds)
