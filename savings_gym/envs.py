"""Gymnasium environments: a muscle-driven arm reaching through a hidden force-field schedule.

Six ids share one task (:mod:`savings_gym.task`) and one engine (:mod:`savings_gym.world`):

| id | schedule | targets | observation |
|---|---|---|---|
| ``ArmCurlField-v0`` | NF1 -> FF1 -> NF2 -> FF2 (the paper's) | 8 centre-out | 17 dims, no field information |
| ``ArmCurlFieldCued-v0`` | the same | 8 centre-out | 18 dims: the field gain is appended |
| ``ArmReach-v0`` | null field only | random start and target | 17 dims |
| ``ArmCurlFieldSpontaneousRecovery-v0`` | NF1 -> FF1 (A) -> FFB (-A, short) -> EC (channels) | centre-out | 17 dims |
| ``ArmCurlFieldInterference-v0`` | NF1 -> FF1 (A) -> FFB (-A, no washout) | 8 centre-out | 17 dims |
| ``ArmCurlFieldGradual-v0`` | NF1 -> FF1 (A ramped up, then held) -> NF2 -> FF2 (A, abrupt) | 8 centre-out | 17 dims |

``gym.make(id)`` gives :class:`ArmCurlFieldEnv` (one arm, NumPy); ``gym.make_vec(id, num_envs=N)``
gives :class:`ArmCurlFieldVectorEnv`: one batched simulation of N arms, not N copies.

Over 500 lines because each env class carries the full docstring the style asks for (spaces,
rewards, arguments, force field), beside the single and vector classes that share one step.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from savings_gym.backend import NUMPY, make_backend
from savings_gym.schedule import (
    Phase,
    Schedule,
    as_schedule,
    gradual_schedule,
    interference_schedule,
    null_schedule,
    paper_schedule,
    spontaneous_recovery_schedule,
)
from savings_gym.task import N_MUSCLES, TaskParams, observation_bounds
from savings_gym.world import World, check_action, generators

ScheduleLike = Schedule | Iterable[Phase | tuple[str, float, int | None]]

CUED = {"cued": True}
REACH = {"schedule": null_schedule(), "targets": "random"}
SPONTANEOUS_RECOVERY = {"paradigm": spontaneous_recovery_schedule}
INTERFERENCE = {"paradigm": interference_schedule}
GRADUAL = {"paradigm": gradual_schedule}
VARIANTS = {
    "ArmCurlField-v0": {},
    "ArmCurlFieldCued-v0": CUED,
    "ArmReach-v0": REACH,
    "ArmCurlFieldSpontaneousRecovery-v0": SPONTANEOUS_RECOVERY,
    "ArmCurlFieldInterference-v0": INTERFERENCE,
    "ArmCurlFieldGradual-v0": GRADUAL,
}
"""What each registered id changes from the defaults: the one place an id's defaults are written.
``schedule`` is a fixed schedule; ``paradigm`` builds the default one from ``field_gain`` (k of
field A, N*s/m), as :func:`~savings_gym.schedule.paper_schedule` does for ``ArmCurlField-v0``."""
_NOT_TASK = ("schedule", "cued", "paradigm")


def _variant_params(variant: dict[str, Any], overrides: dict[str, Any]) -> TaskParams:
    return TaskParams().replace(**({k: v for k, v in variant.items() if k not in _NOT_TASK} | overrides))


def default_schedule(env_id: str, field_gain: float | None = None) -> Schedule:
    """The hidden schedule a registered id runs by default, with field A's gain ``field_gain``
    (N*s/m; default 8) where the id has a field.

    Raises:
        ValueError: for an unknown id, or a ``field_gain`` for an id without a field (``ArmReach-v0``).
    """
    if env_id not in VARIANTS:
        raise ValueError(f"env_id must be one of {sorted(VARIANTS)}, got {env_id!r}")
    variant = VARIANTS[env_id]
    return build_schedule(variant.get("schedule"), field_gain, None, variant.get("paradigm", paper_schedule))


def task_params(env_id: str, **overrides: Any) -> TaskParams:
    """The task constants a registered id runs with: its defaults, then ``overrides`` (the env's
    ``**task_params``), e.g. for a result file to record what its curves were measured under.

    Raises:
        ValueError: for an id that is not one of :data:`VARIANTS`, or a bad parameter.
    """
    if env_id not in VARIANTS:
        raise ValueError(f"env_id must be one of {sorted(VARIANTS)}, got {env_id!r}")
    return _variant_params(VARIANTS[env_id], overrides)


def task_overrides(env_id: str, recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The constants of ``recorded`` (a result file's ``config/task``, read back from JSON) that
    differ from the id's defaults: what to pass as ``**task_params`` to measure as the run did.
    Names the defaults lack are kept (so that :func:`task_params` refuses them).

    Raises:
        ValueError: for an unknown id.
    """
    # through JSON, as the recorded ones went: tuples come back as lists
    defaults = json.loads(json.dumps(dataclasses.asdict(task_params(env_id))))
    return {key: value for key, value in recorded.items() if key not in defaults or defaults[key] != value}


def build_schedule(
    schedule: ScheduleLike | None,
    field_gain: float | None,
    phase_episodes: Mapping[str, int | None] | None,
    paradigm: Callable[[float], Schedule] = paper_schedule,
) -> Schedule:
    """The schedule an env runs: ``schedule`` if given, else ``paradigm`` (default the paper's) with
    ``field_gain`` (default 8 N*s/m), with ``phase_episodes`` replacing the episode counts of named
    phases.

    Raises:
        ValueError: for ``field_gain`` with a custom schedule (ambiguous), or any invalid schedule.
    """
    if schedule is None:
        built = paradigm(8.0 if field_gain is None else field_gain)
    else:
        if field_gain is not None:
            raise ValueError(
                "field_gain sets the gain of the default schedule; with a custom schedule, put the gains in it"
            )
        built = as_schedule(schedule)
    return built.with_episodes(phase_episodes) if phase_episodes else built


class _Configured:
    """What every front-end shares: parse the arguments, build the world, and the experimenter's
    view of it (never part of observations or info)."""

    variant: dict[str, Any] = {}
    _world: World

    @property
    def phase(self) -> str:
        """Name of the schedule's current phase (per world; worlds advance in lockstep)."""
        return self._world.phase

    @property
    def field_gains(self) -> np.ndarray:
        """Curl gain k (N*s/m) of each arm's current episode, (num_envs,); between training episodes
        (after one has run its trial, before the next reset), of the next one, as :attr:`phase`."""
        return self._world.field_gains

    @property
    def field_gain(self) -> float:
        """Curl gain k (N*s/m) of the current episode (test episodes: the one asked for); between
        training episodes, of the next one, as :attr:`phase`.

        Raises:
            ValueError: when the arms' episodes differ in gain (a phase boundary falls inside the
                batch): read :attr:`field_gains` then.
        """
        gains = self._world.field_gains
        if (gains != gains[0]).any():
            raise ValueError(
                f"the arms' current episodes differ in field gain ({sorted(set(gains.tolist()))}): a phase "
                "boundary falls inside this batch; read field_gains (one per arm)"
            )
        return float(gains[0])

    @property
    def channel_trials(self) -> np.ndarray:
        """Whether each arm's current episode is an error-clamp (channel) trial, (num_envs,) bool;
        between training episodes, of the next one, as :attr:`field_gains`. Never observed."""
        return self._world.channel_trials

    @property
    def channel_force(self) -> np.ndarray:
        """Lateral force (N) each arm pushes into the error-clamp channel at the current step,
        (num_envs,): K d + D v_perp along the start-target line's normal (d the hand's distance from
        the line, v_perp its lateral velocity; K, D the ``channel_stiffness`` and ``channel_damping``
        task parameters); 0 where there is no channel or it does not act yet. The experimenter's
        measurement, as a force transducer in the handle; never in observations or info."""
        return self._world.channel_force

    def get_state(self) -> dict[str, Any]:
        """The schedule counter and the training random streams (one per arm), for checkpoints.

        Save it between batches; :meth:`set_state` on an env built with the same arguments, then
        ``reset()`` (without a seed), continues exactly as the saved env would have. Saved while a
        training episode is in progress, it replays that episode from its start. Test episodes
        draw from their own generators and need no state. Plain values only (ints, dicts of ints):
        ``torch.save`` and ``json.dumps`` take it as it is.

        Returns:
            ``{"episodes_completed": int, "rngs": [bit-generator state per arm] or None}``.
        """
        return self._world.get_state()

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`get_state`; the next ``reset()`` (no seed) draws what the saved env's would have.

        Raises:
            ValueError: naming what does not fit (keys, counter, number of arms).
        """
        self._world.set_state(state)

    @property
    def episodes_completed(self) -> int:
        """Training episodes run to the end since the schedule started (per world)."""
        return self._world.episodes_completed

    @property
    def num_worlds(self) -> int:
        """Independent groups of arms, each with its own schedule counter (1 for a single env)."""
        return self._world.num_worlds

    @property
    def episode_mode(self) -> str | None:
        """``"train"`` or ``"test"`` for the current episodes; ``None`` before the first reset."""
        return self._world.mode

    @property
    def state(self):
        """The batch's :class:`~savings_gym.task.TaskState` (arrays of the backend), ``None`` before reset."""
        return self._world.state

    def _configure(
        self,
        num_envs: int,
        schedule: ScheduleLike | None,
        field_gain: float | None,
        phase_episodes: Mapping[str, int | None] | None,
        cued: bool | None,
        task_params: dict[str, Any],
        backend: Any = NUMPY,
        num_worlds: int = 1,
    ) -> World:
        schedule = self.variant.get("schedule") if schedule is None else schedule
        cued = self.variant.get("cued", False) if cued is None else cued
        if not isinstance(cued, bool):
            raise ValueError(f"cued must be True or False, got {cued!r}")
        self.params = _variant_params(self.variant, task_params)
        paradigm = self.variant.get("paradigm", paper_schedule)
        self.schedule = build_schedule(schedule, field_gain, phase_episodes, paradigm)
        self.cued = cued
        world = World(num_envs, self.schedule, self.params, backend, cued=cued, num_worlds=num_worlds)
        self.single_observation_space = gym.spaces.Box(*observation_bounds(cued), dtype=np.float32)
        self.single_action_space = gym.spaces.Box(0.0, 1.0, (N_MUSCLES,), dtype=np.float32)
        return world


class ArmCurlFieldEnv(_Configured, gym.Env[np.ndarray, np.ndarray]):
    """A two-joint arm driven by six muscles reaches to targets while a curl force field comes and goes.

    ## Description
    The arm is MotorNet's ``RigidTendonArm26`` (shoulder and elbow, six Hill-type muscles with
    rigid tendons), integrated with Euler steps of 0.01 s. Each episode is one 1 s reaching trial:
    the arm starts at rest with the hand at the start position, the target is shown from the first
    step, and after a random go time the go cue turns on and the hand should move to the target
    and stay there. Half of the training trials are catch trials: the cue never comes and the hand
    must not move. The environment runs a hidden schedule of force-field phases (null field, curl
    field, washout, curl field again, as in Shahbazi et al. 2026) and never tells the agent which
    phase it is in: an agent that relearns the field faster the second time shows *savings*.

    ## Action Space
    ``Box(0, 1, (6,), float32)``: the excitation of pectoralis, deltoid, brachioradialis, lateral
    triceps, biceps, long triceps. Values outside [0, 1] are clipped (MotorNet clips to
    [0.001, 1]); Gaussian noise (std ``action_noise`` = 1e-4) is added before the clip. NaN, inf,
    a wrong shape or a non-numeric dtype raise ``ValueError``.

    ## Observation Space
    ``Box((17,), float32)``:

    | index | quantity | unit | bounds |
    |---|---|---|---|
    | 0-1 | fingertip x, y, as seen 70 ms ago (vision delay), noise std 1e-4 | m | [-1, 1] |
    | 2-7 | muscle length / optimal length, as felt 20 ms ago, noise std 1e-3 | 1 | [0, 2] |
    | 8-13 | muscle velocity / max velocity, as felt 20 ms ago, noise std 1e-3 | 1 | [-100, 100] |
    | 14-15 | target x, y | m | [-1, 1] |
    | 16 | go cue: 1 once the trial time exceeds go time + 70 ms, else 0 | 1 | [0, 1] |

    The bounds hold by construction (the arm is 0.642 m long, muscles stay within 0.14-1.36
    optimal lengths over the joint ranges, MotorNet clips joint velocity at 1000 rad/s); see
    ``savings_gym.task.OBSERVATION_LAYOUT``. Muscle order: pectoralis, deltoid,
    brachioradialis, lateral triceps, biceps, long triceps.

    Delays are exact: the observation after step t shows the fingertip of step t - 7 and the
    muscles of step t - 2 (before step 7, the reading taken at reset). The field gain and the
    phase are not observed. ``ArmCurlFieldCued-v0`` appends the gain as index 17.

    ## Rewards
    The negative of the paper's per-step cost, divided by ``reward_scale`` (1000):

        r_t = -( 1e3 * |x_t - d_t|_1 + 1e5 * |v_t - 2 v_{t-1} + v_{t-2}|^2
                 + 1e-1 * sum_m f_t,m + 3e-4 * |f_t - f_{t-1}|^2 ) / 1000

    with x the hand position (m), d the desired position (the start until the go cue, the target
    after it), v the hand velocity (m/s), f the six muscle forces (N); index t-1 and t-2 at the
    first steps refer to the state at reset. So the position term is the L1 distance in metres per
    step: a competent reach earns about -2 to -3 per episode, holding still on a 10 cm reach about
    -10. ``info`` carries x, v, d and f (``hand_position``, ``hand_velocity``, ``desired_position``,
    ``muscle_force``) so the cost can be recomputed.

    ## Starting State
    Centre-out training trials start at rest at shoulder 1.047 rad, elbow 1.570 rad, with the
    target 10 cm away in one of 8 directions (every 45 degrees), drawn uniformly; go time uniform
    in [0.1, 0.3] s; catch with probability 0.5. Muscles start at activation 0.001 with the force
    that matches the posture.

    ## Episode End
    No termination. Truncation after 100 steps (1 s) by the registered ``max_episode_steps``; the
    env itself returns ``truncated=False``. An episode counts towards the schedule once it has
    run its 100 steps.

    ## Force field
    F = k [[0, 1], [-1, 0]] v on the hand (N), k the curl gain (N*s/m), v the hand velocity. It is
    off until go time + 70 ms (so never in catch trials) and acts through MotorNet's
    ``endpoint_load``. k follows the hidden schedule: the default is NF1 (k=0, 80,008 episodes),
    FF1 (k=8, 25,608), NF2 (k=0, 80,008), FF2 (k=8, 25,608), the paper's batches x 8; after the
    last phase its field stays on. The agent cannot see k; the experimenter reads
    ``env.unwrapped.phase`` (the schedule's current phase name), ``env.unwrapped.field_gain`` (k of
    the current episode) and ``env.unwrapped.episodes_completed``. Once a training episode has run
    its 100 steps the schedule has moved on: until the next reset, ``phase`` and ``field_gain``
    both describe the next episode. ``get_state()`` / ``set_state()`` save and restore the
    schedule counter and the training random streams (checkpoints).

    ## Test reaches (evaluation mode)
    ``reset(options={"mode": "test", "target": i, "field_gain": k})`` plays test reach ``i``
    (0-7) under gain ``k``: the centre-out start, go time 0.10 s, no catch trial, noise from a
    generator seeded ``options.get("eval_seed", 0)``. It does not advance or disturb the schedule
    and leaves the training random streams untouched. ``"channel": True`` plays them in the
    error-clamp channel instead (with ``field_gain`` 0; the lateral force is read from
    ``env.unwrapped.channel_force``, see ``ArmCurlFieldSpontaneousRecovery-v0``). Training episodes also accept
    ``options={"trials": {"target": i, "go_time": s, "catch": b}}`` to fix what is otherwise drawn.

    ## Arguments
    | argument | default | meaning |
    |---|---|---|
    | ``schedule`` | the paper's | a :class:`Schedule` or ``(name, gain, n_episodes)`` tuples |
    | ``field_gain`` | 8.0 | curl gain of the default schedule's FF phases (N*s/m) |
    | ``phase_episodes`` | None | ``{phase name: n_episodes}`` overriding the schedule's counts |
    | ``cued`` | False | append the field gain to the observation |
    | ``render_mode`` | None | ``"rgb_array"`` draws the arm, start, target and hand path |
    | ``**task_params`` | | any :class:`TaskParams` field (see below) |

    ``TaskParams`` fields include ``catch_probability``, ``go_time_range``, ``targets``
    (``"centre_out"`` or ``"random"``), the noise levels, the delays, the cost weights and
    ``reward_scale``.

    Unknown arguments raise ``TypeError``; invalid values raise ``ValueError``.

    ## Version History
    * v0: initial version (MotorNet 0.3.0 effector).

    >>> import gymnasium as gym, savings_gym
    >>> env = gym.make("ArmCurlField-v0", phase_episodes={"NF1": 2, "FF1": 2})
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, env.unwrapped.phase
    ((17,), 'NF1')
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 100}

    def __init__(
        self,
        schedule: ScheduleLike | None = None,
        *,
        field_gain: float | None = None,
        phase_episodes: Mapping[str, int | None] | None = None,
        cued: bool | None = None,
        render_mode: str | None = None,
        **task_params: Any,
    ):
        self._world = self._configure(1, schedule, field_gain, phase_episodes, cued, task_params)
        self.observation_space = self.single_observation_space
        self.action_space = self.single_action_space
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.render_mode = render_mode
        self._path: list[np.ndarray] = []

    def set_state(self, state: Mapping[str, Any]) -> None:
        super().set_state(state)
        if self._world._rngs is not None:  # the env's np_random is its arm's generator
            self._np_random = self._world._rngs[0]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None or self._world._rngs is None:
            self._world.restart([self.np_random])  # a seeded reset starts a fresh run of the schedule
        obs, info = self._world.reset(options)
        self._path = [info["hand_position"][0]]
        return obs[0], _first(info)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = check_action(action, (N_MUSCLES,), NUMPY)
        obs, reward, info = self._world.step(action[None])
        self._path.append(info["hand_position"][0])
        return obs[0], float(reward[0]), False, False, _first(info)

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn('call gym.make(..., render_mode="rgb_array") to render')
            return None
        if self.state is None:
            raise RuntimeError("call reset before render")
        from savings_gym.render import draw_arm

        s = self.state
        return draw_arm(
            joint=s.arm.joint[0],
            l1=float(self._world.task.arm.l1),
            l2=float(self._world.task.arm.l2),
            start=s.start[0],
            target=s.target[0],
            path=np.array(self._path),
        )


def _first(info: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {key: value[0] for key, value in info.items()}


class ArmCurlFieldCuedEnv(ArmCurlFieldEnv):
    """``ArmCurlFieldCued-v0``: :class:`ArmCurlFieldEnv` with the field gain in the observation.

    The control condition with context: everything is as in ``ArmCurlField-v0`` except the
    observation, which has an 18th entry.

    ## Observation Space
    ``Box((18,), float32)``: indices 0-16 as in ``ArmCurlField-v0``; index 17 is the curl gain k of
    the current episode (N*s/m, bounds [-100, 100], the largest gain a schedule may use), shown
    from the first step, before the field acts.

    ## Force field
    As in ``ArmCurlField-v0``, but visible to the agent through index 17.

    ## Arguments
    As ``ArmCurlField-v0``; ``cued`` defaults to True.

    ## Version History
    * v0: initial version.
    """

    variant = CUED


class ArmReachEnv(ArmCurlFieldEnv):
    """``ArmReach-v0``: null-field reaches from random starts to random targets, for pretraining.

    The paper's "growing up" phase: as ``ArmCurlField-v0`` but the schedule is a single null-field
    phase that never ends, and each trial draws the starting joint angles and the target joint
    angles uniformly over the joint ranges (shoulder 0-135 deg, elbow 0-155 deg; the target is the
    fingertip of the drawn target posture). Go time, catch trials, observation (17 dims), action,
    reward and episode end are those of ``ArmCurlField-v0``.

    ## Force field
    None: k = 0 throughout (the schedule is ``[("NF", 0.0, None)]``).

    ## Arguments
    As ``ArmCurlField-v0``; ``targets`` defaults to ``"random"``, ``schedule`` to the null schedule.
    ``targets="centre_out"`` pretrains on the 8 centre-out reaches instead.

    ## Version History
    * v0: initial version.
    """

    variant = REACH


class ArmCurlFieldSpontaneousRecoveryEnv(ArmCurlFieldEnv):
    """``ArmCurlFieldSpontaneousRecovery-v0``: field A, a short opposite field, then error-clamp trials.

    Spontaneous recovery (Smith, Ghazizadeh & Shadmehr 2006): after a long exposure to field A, a
    short exposure to -A brings the error back to about zero; in the error-clamp block that follows
    no error drives learning, and a learner with a fast and a slow process shows its adaptation
    first dipping (the fast process, which learnt -A, decays) and then rebounding towards A (the
    slow process still holds A). Task, observation (17 dims), action, reward and episode end are
    those of ``ArmCurlField-v0``.

    ## Force field
    The hidden schedule (:func:`~savings_gym.schedule.spontaneous_recovery_schedule`), in episodes
    (batches of 8 reaches x 8):

    | phase | trials | curl gain k (N*s/m) | episodes |
    |---|---|---|---|
    | NF1 | null field | 0 | 80,008 (10,001 batches) |
    | FF1 | field A | +8 (``field_gain``) | 25,608 (3,201) |
    | FFB | field -A | -8 | 2,560 (320) |
    | EC | error-clamp channel | none | 8,000 (1,000), then EC goes on |

    On a channel trial a spring-damper (``channel_stiffness`` 6,000 N/m, ``channel_damping``
    100 N*s/m, see :class:`~savings_gym.task.TaskParams`) holds the hand on the straight start-target
    line from go time + 70 ms (when the field would act), so a channel trial looks like any other
    until the arm moves. The agent sees neither k nor the channel; the experimenter reads ``phase``,
    ``field_gain(s)``, ``channel_trials`` and ``channel_force`` (the lateral force the arm pushes into
    the channel at the current step, N). FFB's length is a fixed choice (a tenth of FF1): a hidden
    schedule cannot end when the error is back to zero, so tune it with ``phase_episodes``.

    ## Arguments
    As ``ArmCurlField-v0``; ``field_gain`` is k of field A (FFB gets -k); ``phase_episodes`` takes
    ``NF1``, ``FF1``, ``FFB``, ``EC``. Interleaved channel trials in NF1-FFB:
    ``schedule=spontaneous_recovery_schedule(channel_every=8)``.

    ## Version History
    * v0: initial version.
    """

    variant = SPONTANEOUS_RECOVERY


class ArmCurlFieldInterferenceEnv(ArmCurlFieldEnv):
    """``ArmCurlFieldInterference-v0``: field A, then the opposite field -A with no washout between.

    Anterograde interference: having learnt A, a learner may learn -A more slowly than a naive one
    learns a field, the memory of A opposing the new one. Task, observation (17 dims), action,
    reward and episode end are those of ``ArmCurlField-v0``.

    ## Force field
    The hidden schedule (:func:`~savings_gym.schedule.interference_schedule`), in episodes:

    | phase | trials | curl gain k (N*s/m) | episodes |
    |---|---|---|---|
    | NF1 | null field | 0 | 80,008 (10,001 batches) |
    | FF1 | field A | +8 (``field_gain``) | 25,608 (3,201) |
    | FFB | field -A | -8 | 25,608 (3,201), then FFB goes on |

    Hidden as in ``ArmCurlField-v0``: the experimenter reads ``phase`` and ``field_gain(s)``.

    ## Arguments
    As ``ArmCurlField-v0``; ``field_gain`` is k of field A (FFB gets -k); ``phase_episodes`` takes
    ``NF1``, ``FF1``, ``FFB``.

    ## Version History
    * v0: initial version.
    """

    variant = INTERFERENCE


class ArmCurlFieldGradualEnv(ArmCurlFieldEnv):
    """``ArmCurlFieldGradual-v0``: the paper's schedule with FF1 introduced gradually.

    The field ramps up linearly over the first three quarters of FF1 and is then held at full
    strength; the washout (NF2) and the relearning (FF2, abrupt) follow as in ``ArmCurlField-v0``,
    whose schedule is the abrupt version of the same lengths: compare NF2's first batches (the
    after-effect) and FF2 (savings) between the two. Task, observation (17 dims), action, reward and
    episode end are those of ``ArmCurlField-v0``.

    ## Force field
    The hidden schedule (:func:`~savings_gym.schedule.gradual_schedule`), in episodes:

    | phase | trials | curl gain k (N*s/m) | episodes |
    |---|---|---|---|
    | NF1 | null field | 0 | 80,008 (10,001 batches) |
    | FF1 | field A, ramped | 8 (j + 1) / 19,208 for trial j < 19,208 (2,401 batches), then 8 | 25,608 (3,201) |
    | NF2 | null field (washout) | 0 | 80,008 (10,001) |
    | FF2 | field A, abrupt | 8 | 25,608 (3,201), then FF2 goes on |

    The ramp is stated in episodes: ``phase_episodes`` changes FF1's length but not the ramp's; for
    another ramp pass ``schedule=gradual_schedule(batches=..., ramp_batches=...)``. Hidden as in
    ``ArmCurlField-v0``: ``field_gain(s)`` reads the ramp's current k.

    ## Arguments
    As ``ArmCurlField-v0``; ``field_gain`` is the full strength.

    ## Version History
    * v0: initial version.
    """

    variant = GRADUAL


class ArmCurlFieldVectorEnv(_Configured, VectorEnv):
    """``gym.make_vec(id, num_envs=N)``: N arms in one batched simulation (not N copies).

    Same task, spaces (batched), reward and schedule as the single env; see
    :class:`ArmCurlFieldEnv`. All arms of a world share one schedule, counted in episodes: the
    arms' current episodes are the next ``N / num_worlds`` episodes of the schedule, so the
    experience per phase does not depend on N. Episodes are synchronised (every trial lasts
    ``max_episode_steps`` steps), so all arms truncate and autoreset together.

    Seeding: ``reset(seed=s)`` gives arm i its own generator seeded ``s + i`` (or ``seed[i]`` for a
    list), so arm i lives exactly like ``gym.make(id)`` reset with seed ``s + i``; a seeded reset
    restarts the schedule. ``reset(options=...)`` takes the single env's options, with ``target``
    one index or one per arm (default: arm i reaches test target i % 8).

    Args:
        num_envs: arms in the batch.
        schedule, field_gain, phase_episodes, cued, **task_params: as :class:`ArmCurlFieldEnv`.
        max_episode_steps: steps before truncation (set by the registration to 100).
        autoreset_mode: ``AutoresetMode.NEXT_STEP`` (default) or ``AutoresetMode.SAME_STEP``
            (then ``info["final_obs"]`` and ``info["final_info"]`` hold the last step of the episode).
        num_worlds: independent groups of arms, each with its own schedule counter (for K learners
            trained in lockstep); must divide ``num_envs``.
        backend: ``"numpy"`` (default, fastest on the CPU) or ``"torch"``.
        device: torch device for ``backend="torch"``.

    The experimenter's view: ``phase`` (the schedule's current phase), ``field_gains`` (k of each
    arm's current episode), ``field_gain`` (the same, as one number when all arms agree),
    ``episodes_completed`` (per world), ``state``; ``get_state()`` / ``set_state()`` for checkpoints.
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        schedule: ScheduleLike | None = None,
        *,
        max_episode_steps: int = 100,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        num_worlds: int = 1,
        backend: str = "numpy",
        device: str = "cpu",
        field_gain: float | None = None,
        phase_episodes: Mapping[str, int | None] | None = None,
        cued: bool | None = None,
        render_mode: str | None = None,
        **task_params: Any,
    ):
        self._xp = make_backend(backend, device)
        self._world = self._configure(
            num_envs, schedule, field_gain, phase_episodes, cued, task_params, self._xp, num_worlds
        )
        self.num_envs = self._world.num_envs
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        if isinstance(max_episode_steps, bool) or not isinstance(max_episode_steps, int) or max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be a positive integer, got {max_episode_steps!r}")
        self.max_episode_steps = max_episode_steps
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            mode = None
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP):
            raise ValueError(f"autoreset_mode must be NEXT_STEP or SAME_STEP, got {autoreset_mode!r}")
        self.autoreset_mode = mode
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        if render_mode is not None:
            raise ValueError("the vector env does not render; render a single env (gym.make) instead")
        self.render_mode = None
        self._autoreset_pending = False
        self._done = np.ones(self.num_envs, dtype=bool)
        self._not_done = np.zeros(self.num_envs, dtype=bool)
        self._all = np.ones(self.num_envs, dtype=bool)

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        if seed is not None or self._world._rngs is None:
            self._world.restart(generators(seed, self.num_envs))
        obs, info = self._world.reset(options)
        self._autoreset_pending = False
        return self._host(obs), self._host_info(info)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        actions = check_action(actions, (self.num_envs, N_MUSCLES), self._xp)
        if self._autoreset_pending:  # NEXT_STEP: the step after the last one starts new episodes
            obs, info = self._world.reset()
            self._autoreset_pending = False
            zeros = np.zeros(self.num_envs, np.float32)
            return self._host(obs), zeros, self._not_done, self._not_done, self._host_info(info)
        obs, reward, info = self._world.step(actions)
        info = self._host_info(info)
        obs = self._host(obs)
        truncated = self._world.episode_steps >= self.max_episode_steps
        if truncated and self.autoreset_mode == AutoresetMode.SAME_STEP:
            final_obs = np.empty(self.num_envs, dtype=object)
            final_obs[:] = list(obs)
            new_obs, new_info = self._world.reset()
            info = {
                **self._host_info(new_info),
                "final_obs": final_obs,
                "_final_obs": self._all,
                "final_info": info,
                "_final_info": self._all,
            }
            obs = self._host(new_obs)
        elif truncated:
            self._autoreset_pending = True
        done = self._done if truncated else self._not_done
        return obs, self._host(reward), self._not_done, done, info

    def _host(self, array: Any) -> np.ndarray:
        return self._xp.to_numpy(array)

    def _host_info(self, info: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in info.items():
            out[key] = self._host(value)
            out["_" + key] = self._all
        return out


class ArmCurlFieldCuedVectorEnv(ArmCurlFieldVectorEnv):
    """The vector version of :class:`ArmCurlFieldCuedEnv`."""

    variant = CUED


class ArmReachVectorEnv(ArmCurlFieldVectorEnv):
    """The vector version of :class:`ArmReachEnv`."""

    variant = REACH


class ArmCurlFieldSpontaneousRecoveryVectorEnv(ArmCurlFieldVectorEnv):
    """The vector version of :class:`ArmCurlFieldSpontaneousRecoveryEnv`."""

    variant = SPONTANEOUS_RECOVERY


class ArmCurlFieldInterferenceVectorEnv(ArmCurlFieldVectorEnv):
    """The vector version of :class:`ArmCurlFieldInterferenceEnv`."""

    variant = INTERFERENCE


class ArmCurlFieldGradualVectorEnv(ArmCurlFieldVectorEnv):
    """The vector version of :class:`ArmCurlFieldGradualEnv`."""

    variant = GRADUAL
