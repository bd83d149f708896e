"""The agent interface: what the protocol, the metrics and the leaderboard need from any learner.

An agent holds K independent learners ("networks", or seeds of an RL algorithm) living through
the same hidden schedule, each in its own world. The protocol owns the environment: it hands the
agent's factory a :class:`ProtocolEnvs`, from which the agent builds the env(s) it trains in
(single, vector or differentiable, as it likes) on the protocol's schedule, env id and task
constants. The protocol then only ever asks it to

* :meth:`Agent.train` for R more episodes per learner (one update: the preset's reaches per update,
  8 by default, one batch of the paper's protocol; the schedule advances as it trains), and
* :meth:`Agent.evaluate` on the 8 test reaches under a chosen field, which must not change it (for
  paradigms with error-clamp trials also ``evaluate(0.0, channel=True)``: the reaches in the channel,
  with ``hand_velocity`` recorded, e.g. by :func:`run_test_reaches`).

Before every batch the protocol checks that every env the agent built has completed exactly the
episodes the schedule says (:meth:`ProtocolEnvs.check`): an agent that trains elsewhere, or a
resume that loses the envs' state, is refused. An agent that can play the test reaches and a
training batch from the same weights in one pass may also offer ``evaluate_then_train(field_gain)
-> ReachRecord`` (evaluate, then train one batch of 8 episodes; with an ``episodes`` keyword, that
many); the protocol uses it where it exists (:func:`benchmarks.savings.protocol.evaluate_then_train`).
Checkpoints go through
:meth:`Agent.state_dict` / :meth:`Agent.load_state_dict`, which must capture everything (weights,
optimiser, random generators, and the envs' ``get_state()``) so a resumed run continues identically.

The reset control (``--control reset``) also needs the two optional methods of :class:`Resettable`:
``learner_state()``, what the learners have learnt (weights, optimiser state, normalisation
statistics, recurrent state, a replay buffer: copies), and ``load_learner_state(state)``, which puts
it back and leaves everything else (the envs, where the schedule stands, the random streams) as it is.

A minimal agent of your own (a learner that never moves, to show the plumbing; ``examples/reinforce.py``
is one that learns):

>>> import numpy as np
>>> from agents.interface import ProtocolEnvs, ReachRecord, run_test_reaches
>>> from savings_gym.schedule import paper_schedule
>>> class Still:
...     num_networks = 2
...     def __init__(self, envs):
...         self.env = envs.vector(8 * self.num_networks, num_worlds=self.num_networks)
...         self.env.reset(seed=0)
...     def train(self, episodes):
...         for _ in range(100):  # 100 steps: one episode of every arm, 8 per learner
...             self.env.step(np.zeros((16, 6), np.float32))
...     def evaluate(self, field_gain):
...         return run_test_reaches(lambda obs, t: np.zeros((len(obs), 6), np.float32), 2, field_gain)
...     def state_dict(self):
...         return {"env": self.env.get_state()}
...     def load_state_dict(self, state):
...         self.env.set_state(state["env"])
>>> envs = ProtocolEnvs(paper_schedule(batches={"NF1": 1, "FF1": 1}))
>>> still = Still(envs)
>>> still.train(8)
>>> envs.check(updates=1)   # one update of 8 episodes per learner done, as the schedule says
>>> still.evaluate(0.0).hand_position.shape
(2, 8, 100, 2)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import gymnasium as gym
import numpy as np

import savings_gym  # noqa: F401  (registers the ids)
from savings_gym.envs import ArmCurlFieldVectorEnv, task_params
from savings_gym.schedule import PAPER_BATCH_SIZE, Schedule
from savings_gym.task import N_TEST_TARGETS, TaskParams

if TYPE_CHECKING:
    from savings_gym.differentiable import DifferentiableArmEnv


@dataclass
class ReachRecord:
    """The 8 test reaches of K learners, as host arrays.

    Attributes:
        hand_position: (K, 8, T, 2) fingertip after each of the T steps (m).
        target: (8, 2) test targets (m).
        field_gain: the curl gain tested under (N*s/m).
        hidden: (K, 8, T, H) recurrent state after each step, for agents that have one, else None.
        endpoint_force: (K, 8, T, 2) force the muscles put on the hand (N), where recorded.
        hand_velocity: (K, 8, T, 2) fingertip velocity after each step (m/s), where recorded (the
            adaptation index of channel test reaches needs it).
        channel: whether the reaches were made in the error-clamp channel (no field).
    """

    hand_position: np.ndarray
    target: np.ndarray
    field_gain: float
    hidden: np.ndarray | None = None
    endpoint_force: np.ndarray | None = None
    hand_velocity: np.ndarray | None = None
    channel: bool = False


@runtime_checkable
class Agent(Protocol):
    """K learners living through a hidden schedule, in envs from a :class:`ProtocolEnvs` (see the module docstring)."""

    num_networks: int

    def train(self, episodes: int) -> None:
        """Trains every learner on ``episodes`` more episodes of its schedule: one update (the protocol
        asks for the preset's reaches per update, 8 unless the preset or ``--reaches-per-update`` says
        otherwise; always a multiple of 8)."""

    def evaluate(self, field_gain: float) -> ReachRecord:
        """The 8 test reaches of every learner under ``field_gain``, leaving the learners unchanged."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume identically, the envs' ``get_state()`` included."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`."""


@runtime_checkable
class Resettable(Protocol):
    """An :class:`Agent` the reset control can take back to an earlier learner state (optional).

    The protocol's reset control (``--control reset``, :func:`benchmarks.savings.protocol.reset_learners`)
    keeps ``learner_state()`` of a copy of the learners at NF1's start; at FF2's start it gives the
    copy the main run's whole :meth:`Agent.state_dict` (its envs where the schedule stands, its random
    streams) and then ``load_learner_state`` of the kept state: the same learners with no memory of
    anything since NF1, by construction. A learner of your own offers them by returning (copies of)
    its weights and optimiser state, e.g. ``copy.deepcopy({key: self.state_dict()[key] for key in
    ("nets", "optimizer")})``, and loading them back (as ``examples/reinforce.py`` does).
    """

    def learner_state(self) -> dict[str, Any]:
        """A copy of everything the learners have learnt (weights, optimiser state, normalisation
        statistics, recurrent state, replay buffers), nothing of their envs or random streams."""

    def load_learner_state(self, state: dict[str, Any]) -> None:
        """Restores :meth:`learner_state`, leaving the envs (schedule counters) and random streams alone."""


class ScheduleMismatchError(RuntimeError):
    """An agent's envs have not completed the episodes the schedule says (see :meth:`ProtocolEnvs.check`)."""


ENV_OPTIONS = ("autoreset_mode", "backend", "device", "differentiable", "hand_written_grads", "render_mode")
"""What an agent may choose about the envs it asks for; the schedule, id and task constants are the protocol's."""


class ProtocolEnvs:
    """The envs of one protocol run: built on an agent's request from the run's hidden schedule, env
    id and task constants, and checked by the protocol before every batch.

    Args:
        schedule: the hidden schedule (the preset's, or the practice control's).
        env_id: the registered id the run is in (``ArmCurlField-v0``, ``ArmCurlFieldCued-v0``, a
            paradigm id such as ``ArmCurlFieldSpontaneousRecovery-v0``, or ``ArmReach-v0`` for
            pretraining).
        task: task constants replacing the id's defaults (:class:`savings_gym.task.TaskParams` fields).
        cued: show the field gain in the observation (default: the id's; ``ArmReach-v0`` pretraining
            of a learner for ``ArmCurlFieldCued-v0`` sets it).

    Raises:
        ValueError: for an unknown id or task constant.

    The agent sees the envs only as envs: ``schedule`` is here for the experimenter's tools
    (loggers), and nothing about the phase reaches observations or info.
    """

    def __init__(
        self,
        schedule: Schedule,
        env_id: str = "ArmCurlField-v0",
        task: Mapping[str, Any] | None = None,
        cued: bool | None = None,
    ):
        if not isinstance(schedule, Schedule):
            raise ValueError(f"schedule must be a savings_gym.Schedule, got {type(schedule).__name__}")
        if cued not in (None, True, False):
            raise ValueError(f"cued must be True, False or None (the id's default), got {cued!r}")
        self.schedule = schedule
        self.env_id = env_id
        self.task = dict(task or {})
        self.params: TaskParams = task_params(env_id, **self.task)  # validates the id and the constants
        self.built: list[Any] = []
        self.env_kwargs = {**self.task, **({} if cued is None else {"cued": cued})}
        """What every env built here gets besides the schedule: the task constants (and ``cued``)."""

    def _options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        refused = sorted(set(options) - set(ENV_OPTIONS))
        if refused:
            raise ValueError(
                f"{refused}: the protocol sets the schedule, env id and task constants of the envs it builds; "
                f"an agent may choose only {list(ENV_OPTIONS)}"
            )
        return {"schedule": self.schedule, **self.env_kwargs, **options}

    def single(self, **options: Any) -> gym.Env:
        """One arm: ``gym.make(env_id)`` on the run's schedule (with its 100-step time limit)."""
        env = gym.make(self.env_id, **self._options(options))
        self.built.append(env)
        return env

    def vector(self, num_envs: int, num_worlds: int = 1, **options: Any) -> ArmCurlFieldVectorEnv:
        """``num_envs`` arms in one batched simulation, split into ``num_worlds`` worlds with their own
        schedule counters (one per learner: ``num_envs = 8 * K, num_worlds = K`` trains K learners a
        batch of 8 episodes per 100 steps). ``options``: see :data:`ENV_OPTIONS`."""
        env = gym.make_vec(
            self.env_id,
            num_envs=num_envs,
            vectorization_mode="vector_entry_point",
            num_worlds=num_worlds,
            **self._options(options),
        )
        self.built.append(env)
        return env

    def differentiable(self, num_envs: int, num_worlds: int = 1, **options: Any) -> DifferentiableArmEnv:
        """The same as :meth:`vector` as torch tensors with gradients (:mod:`savings_gym.differentiable`)."""
        from savings_gym.differentiable import DifferentiableArmEnv

        env = DifferentiableArmEnv(num_envs, env_id=self.env_id, num_worlds=num_worlds, **self._options(options))
        self.built.append(env)
        return env

    @property
    def episodes_completed(self) -> int:
        """Training episodes per world of the first env built (0 before any)."""
        return self.built[0].unwrapped.episodes_completed if self.built else 0

    def check(self, updates: int, reaches_per_update: int = PAPER_BATCH_SIZE) -> None:
        """Refuses envs that are not where the schedule says after ``updates`` updates of
        ``reaches_per_update`` training episodes each (the protocol's ``train(reaches_per_update)``
        calls; 8: one batch per update): every env built must have completed ``updates *
        reaches_per_update`` training episodes per world.

        Raises:
            ScheduleMismatchError: naming the env, its count and the expected one, when the agent built no
                env, trained somewhere else, trained another number of episodes per update, or did
                not restore its envs' state on resume.
        """
        expected = updates * reaches_per_update
        if not self.built:
            if updates == 0:  # an agent may build its envs when it first trains
                return
            raise ScheduleMismatchError(
                "the agent built no env from the ProtocolEnvs it was given: a learner must train in "
                "envs.single(), envs.vector() or envs.differentiable(), so that it lives through the run's schedule"
            )
        for i, env in enumerate(self.built):
            done = env.unwrapped.episodes_completed
            if done != expected:
                unit, units = ("batch", "batches") if reaches_per_update == PAPER_BATCH_SIZE else ("update", "updates")
                raise ScheduleMismatchError(
                    f"before {unit} {updates + 1}: env {i} ({type(env.unwrapped).__name__}) has completed {done} "
                    f"training episodes per world, the schedule says {expected} ({updates} {units} x "
                    f"{reaches_per_update}). Its curve would be labelled with phases it did not train in: train "
                    f"{reaches_per_update} episodes per learner per train({reaches_per_update}) call in the envs you "
                    "were given (one world per learner: num_worlds=K), and on resume restore them "
                    "(env.set_state(saved) from env.get_state()); play test reaches with run_test_reaches, not in an "
                    "env from ProtocolEnvs"
                )


def as_protocol_envs(
    envs: ProtocolEnvs | Schedule, env_id: str | None = None, env_kwargs: Mapping[str, Any] | None = None
) -> ProtocolEnvs:
    """What an agent's constructor takes as its envs: a :class:`ProtocolEnvs` as given (the protocol's;
    an ``env_id`` or ``env_kwargs`` contradicting it is refused), or a schedule, for an agent used on
    its own (pretraining, tests), wrapped with ``env_id`` (default ``ArmCurlField-v0``) and
    ``env_kwargs`` (task constants, and ``cued``).

    Raises:
        ValueError: for anything else, or a contradiction.
    """
    env_kwargs = dict(env_kwargs or {})
    if isinstance(envs, ProtocolEnvs):
        if env_id not in (None, envs.env_id) or (env_kwargs and env_kwargs != envs.env_kwargs):
            raise ValueError(
                f"env_id={env_id!r}, env arguments {env_kwargs} contradict the ProtocolEnvs given ({envs.env_id!r}, "
                f"{envs.env_kwargs}): the protocol's envs decide them"
            )
        return envs
    if not isinstance(envs, Schedule):
        raise ValueError(f"envs must be a ProtocolEnvs or a Schedule, got {type(envs).__name__}")
    cued = env_kwargs.pop("cued", None)
    return ProtocolEnvs(envs, env_id or "ArmCurlField-v0", env_kwargs, cued)


def run_test_reaches(
    policy: Callable[[np.ndarray, int], np.ndarray],
    num_networks: int,
    field_gain: float,
    env_id: str = "ArmCurlField-v0",
    eval_seed: int = 0,
    channel: bool = False,
    **env_kwargs: Any,
) -> ReachRecord:
    """Runs the 8 test reaches for K learners through a native vector env of 8K arms.

    Args:
        policy: maps observations (8K, obs) and the step index to actions (8K, 6); rows
            8k..8k+7 belong to learner k. Keep any recurrent state inside it.
        num_networks: K.
        field_gain: curl gain to test under (N*s/m).
        env_id, eval_seed, env_kwargs: the env the learners live in.
        channel: make the reaches in the error-clamp channel (then ``field_gain`` must be 0).
    """
    arms = num_networks * N_TEST_TARGETS
    venv = gym.make_vec(env_id, num_envs=arms, vectorization_mode="vector_entry_point", **env_kwargs)
    options = {"mode": "test", "field_gain": field_gain, "eval_seed": eval_seed} | (
        {"channel": True} if channel else {}
    )
    obs, _ = venv.reset(seed=0, options=options)
    positions, velocities = [], []
    for t in range(venv.unwrapped.max_episode_steps):
        obs, _, _, _, info = venv.step(policy(obs, t))
        positions.append(info["hand_position"])
        velocities.append(info["hand_velocity"])
    targets = np.asarray(venv.unwrapped.state.target[:N_TEST_TARGETS])
    hand = np.stack(positions, axis=1).reshape(num_networks, N_TEST_TARGETS, -1, 2)
    velocity = np.stack(velocities, axis=1).reshape(num_networks, N_TEST_TARGETS, -1, 2)
    return ReachRecord(hand, targets, float(field_gain), hand_velocity=velocity, channel=channel)
