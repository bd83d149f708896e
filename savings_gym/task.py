"""The reaching task: trials, sensing with delays and noise, the curl field, cost and observation.

Everything here follows the paper's task (see SPEC.md, "The task"): a 1 s trial of 100 steps of
0.01 s; the arm starts at rest; a target is shown from the first step; after a random go time the
go cue turns on and the hand should move to the target; in catch trials the cue never comes and the
hand must stay put. The curl field acts only from go time + 70 ms.

:class:`ReachTask` holds the constants on one backend and offers two pure functions,
:meth:`ReachTask.reset` and :meth:`ReachTask.step`, over an immutable :class:`TaskState`
(gymnax style). The single, vector and differentiable environments all call these.

The 8 test reaches (:func:`centre_out_targets`) are the ones every learning curve is measured on.

Over 500 lines because the reach task's constants, trial draws, observation layout and pure step
form one state machine that reads best in one place.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import numpy as np

from savings_gym.arm import N_MUSCLES, ArmParams, ArmState, arm_at_rest, arm_step, hand_kinematics, make_effector
from savings_gym.backend import NUMPY, Array, Backend
from savings_gym.field import MAX_FIELD_GAIN, curl_force

N_TEST_TARGETS = 8
NOISE_WIDTH = N_MUSCLES + 2 * N_MUSCLES + 2  # per step: action (6), proprioception (12), vision (2)
UNIFORMS_PER_TRIAL = 7  # target direction, go time, catch, start joint (2), target joint (2)
_ACTION, _PROPRIO, _VISION = slice(0, 6), slice(6, 18), slice(18, 20)
TARGET_MODES = ("centre_out", "random")


# (low, high, unit) of each TaskParams number: see the class docstring
PHYSICAL_RANGES: dict[str, tuple[float, float, str]] = {
    "dt": (1e-4, 0.1, "s"),
    "trial_steps": (1, 10_000, "steps"),
    "vision_delay": (0.0, 1.0, "s"),
    "proprioception_delay": (0.0, 1.0, "s"),
    "action_noise": (0.0, 1.0, "(excitation)"),
    "proprioception_noise": (0.0, 1.0, "(normalised)"),
    "vision_noise": (0.0, 1.0, "m"),
    "go_time_range": (0.0, 100.0, "s"),
    "go_cue_delay": (0.0, 1.0, "s"),
    "reach_distance": (1e-3, 1.0, "m"),
    "start_joint_angles": (-2 * math.pi, 2 * math.pi, "rad"),
    "test_go_time": (0.0, 100.0, "s"),
    "position_weight": (0.0, 1e12, "per m"),
    "jerk_weight": (0.0, 1e12, "per (m/s)^2"),
    "force_weight": (0.0, 1e12, "per N"),
    "force_change_weight": (0.0, 1e12, "per N^2"),
    "reward_scale": (1e-6, 1e12, "(cost units)"),
    "channel_stiffness": (1e-6, 1e6, "N/m"),
    "channel_damping": (0.0, 1e4, "N*s/m"),
}


@dataclass(frozen=True)
class TaskParams:
    """Constants of the task. Defaults are the paper's (SPEC.md, "The task").

    Attributes:
        dt: time step (s).
        trial_steps: steps in a trial (100 = 1 s).
        vision_delay: delay of the fingertip position feedback (s), a multiple of ``dt``.
        proprioception_delay: delay of muscle length and velocity feedback (s), a multiple of ``dt``.
        action_noise: std of Gaussian noise added to each muscle excitation.
        proprioception_noise: std of Gaussian noise on normalised muscle length and velocity.
        vision_noise: std of Gaussian noise on the fingertip position (m).
        go_time_range: training go times are uniform in this range (s).
        go_cue_delay: the go-cue input and the force field both start this long after the go time (s).
        catch_probability: probability that a training trial is a catch trial (no go cue).
        targets: ``"centre_out"``: start at ``start_joint_angles``, target one of 8 directions at
            ``reach_distance``; ``"random"``: start and target drawn uniformly over the joint ranges.
        reach_distance: centre-out reach length (m).
        start_joint_angles: shoulder and elbow angles of the centre-out start (rad).
        test_go_time: go time of the 8 test reaches (s). 0.10 s, inside the training go times; the
            paper's code used 0.10 s until 2024-05-23 and 0.44 s at its last run (README, "Where this
            differs": both measured).
        position_weight: cost per metre of L1 distance between hand and desired position, per step.
        jerk_weight: cost per (m/s)^2 of the squared second difference of hand velocity.
        force_weight: cost per newton of summed muscle force.
        force_change_weight: cost per N^2 of the squared change of muscle force.
        reward_scale: reward = -cost / reward_scale.
        channel_stiffness: lateral stiffness of the error-clamp channel (N/m), > 0.
        channel_damping: lateral damping of the channel (N*s/m), >= 0.

    The channel (error-clamp trials, :data:`~savings_gym.schedule.PHASE_KINDS`) is a spring-damper
    pulling the hand back onto the straight start-target line, F = -(K d + D v_perp) n with n the
    line's unit normal, d the hand's distance from the line and v_perp its lateral velocity. Why
    K = 6,000 N/m and D = 100 N*s/m: a full-strength field pushes sideways with k v ~ 8 N*s/m x
    0.6 m/s (a competent 10 cm reach's peak speed) ~ 5 N, which K holds to ~1 mm, inside the 2 mm
    a channel may allow. Explicit Euler with the force computed from the last step's state is a
    discrete spring-damper x' = x + v dt, v' = v - (K x + D v) dt / m whose determinant is
    1 - (D - K dt) dt / m: stable only for D > K dt (60 N*s/m at dt = 0.01 s), and for D < 2 m / dt
    + K dt / 2, which D = 100 meets for any effective hand mass m above 0.35 kg.
    tests/test_channel.py measures both on the arm driven by a shipped GRU-128 reaching in the
    channel with a full-strength field added (max lateral deviation ~1.1 mm), and that D = 30
    diverges.

    Every number must also lie in :data:`PHYSICAL_RANGES` (refused at construction otherwise):
    ranges wide enough for any experiment with a human-sized arm, narrow enough that the
    simulation's floats stay meaningful (start angles of 1e30 rad, a reward scale of 1e-300 or
    1e9 steps per trial gave NaN rewards or exhausted memory).
    """

    dt: float = 0.01
    trial_steps: int = 100
    vision_delay: float = 0.07
    proprioception_delay: float = 0.02
    action_noise: float = 1e-4
    proprioception_noise: float = 1e-3
    vision_noise: float = 1e-4
    go_time_range: tuple[float, float] = (0.1, 0.3)
    go_cue_delay: float = 0.07
    catch_probability: float = 0.5
    targets: str = "centre_out"
    reach_distance: float = 0.10
    start_joint_angles: tuple[float, float] = (1.047, 1.570)
    test_go_time: float = 0.10
    position_weight: float = 1e3
    jerk_weight: float = 1e5
    force_weight: float = 1e-1
    force_change_weight: float = 3e-4
    reward_scale: float = 1e3
    channel_stiffness: float = 6000.0
    channel_damping: float = 100.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "targets":
                if value not in TARGET_MODES:
                    raise ValueError(f"targets must be one of {TARGET_MODES}, got {value!r}")
                continue
            values = value if isinstance(value, tuple) else (value,)
            for v in values:
                if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                    raise ValueError(f"{f.name} must be a finite number (or a pair of them), got {value!r}")
        positive = ("dt", "reward_scale", "reach_distance", "channel_stiffness")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        nonnegative = (
            "vision_delay",
            "proprioception_delay",
            "action_noise",
            "proprioception_noise",
            "vision_noise",
            "go_cue_delay",
            "test_go_time",
            "position_weight",
            "jerk_weight",
            "force_weight",
            "force_change_weight",
            "channel_damping",
        )
        for name in nonnegative:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name, (low, high, unit) in PHYSICAL_RANGES.items():
            for v in getattr(self, name) if name in ("go_time_range", "start_joint_angles") else (getattr(self, name),):
                if not low <= v <= high:
                    raise ValueError(f"{name} must be within [{low:g}, {high:g}] {unit}, got {getattr(self, name)!r}")
        if not isinstance(self.trial_steps, int) or self.trial_steps < 1:
            raise ValueError(f"trial_steps must be a positive integer, got {self.trial_steps!r}")
        if not 0.0 <= self.catch_probability <= 1.0:
            raise ValueError(f"catch_probability must be in [0, 1], got {self.catch_probability!r}")
        for name in ("go_time_range", "start_joint_angles"):
            if len(getattr(self, name)) != 2:
                raise ValueError(f"{name} must be a pair, got {getattr(self, name)!r}")
        low, high = self.go_time_range
        if not 0 <= low <= high:
            raise ValueError(f"go_time_range must satisfy 0 <= low <= high, got {self.go_time_range!r}")
        for name in ("vision_delay", "proprioception_delay"):
            steps = getattr(self, name) / self.dt
            if abs(steps - round(steps)) > 1e-6:
                raise ValueError(f"{name}={getattr(self, name)} s is not a whole number of dt={self.dt} s steps")

    @property
    def vision_delay_steps(self) -> int:
        """Vision delay in steps: the observation at step t shows the hand at step t - this."""
        return round(self.vision_delay / self.dt)

    @property
    def proprioception_delay_steps(self) -> int:
        """Proprioceptive delay in steps."""
        return round(self.proprioception_delay / self.dt)

    def replace(self, **changes: Any) -> TaskParams:
        """A copy with some fields changed.

        Raises:
            TypeError: for a name that is not a field, listing the valid ones.
        """
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise TypeError(f"unknown task parameter(s) {unknown}; valid ones are {[f.name for f in fields(self)]}")
        return TaskParams(**{**asdict(self), **changes})


def start_hand_position(params: TaskParams) -> np.ndarray:
    """Hand position (m) at the centre-out start posture, shape (2,)."""
    arm = ArmParams.from_effector(make_effector(params.dt))
    joint = np.array([[*params.start_joint_angles, 0.0, 0.0]], dtype=np.float32)
    return hand_kinematics(arm, NUMPY, joint)[0, :2]


def centre_out_targets(params: TaskParams) -> np.ndarray:
    """The 8 centre-out (and test) targets (m), shape (8, 2): ``reach_distance`` from the start
    position, at 0, 45, ..., 315 degrees counter-clockwise from +x."""
    angles = np.deg2rad(np.arange(N_TEST_TARGETS) * 360.0 / N_TEST_TARGETS)
    offsets = params.reach_distance * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return (start_hand_position(params)[None, :] + offsets).astype(np.float32)


@dataclass(frozen=True)
class Trials:
    """What varies between the episodes of a batch, as host (NumPy) arrays of length B.

    Attributes:
        start_joint: (B, 4) starting joint angles (rad) and velocities (rad/s).
        target: (B, 2) target position (m).
        go_time: (B,) go time (s); ignored in catch trials.
        catch: (B,) True where the go cue never comes.
        field_gain: (B,) curl gain (N*s/m).
        channel: (B,) True for an error-clamp (channel) trial; None: no channel trial in the batch.
    """

    start_joint: np.ndarray
    target: np.ndarray
    go_time: np.ndarray
    catch: np.ndarray
    field_gain: np.ndarray
    channel: np.ndarray | None = None

    @property
    def size(self) -> int:
        return len(self.go_time)

    @staticmethod
    def concatenate(parts: list[Trials]) -> Trials:
        channel = None
        if any(p.channel is not None for p in parts):
            channel = np.concatenate([np.zeros(p.size, bool) if p.channel is None else p.channel for p in parts])
        plain = [f.name for f in fields(Trials) if f.name != "channel"]
        return Trials(*(np.concatenate([getattr(p, name) for p in parts]) for name in plain), channel=channel)


class TrialSampler:
    """Turns random draws into trials; host-side (NumPy) and the same for every backend."""

    def __init__(self, params: TaskParams):
        self.params = params
        self._arm = ArmParams.from_effector(make_effector(params.dt))
        self.targets = centre_out_targets(params)
        self.start_joint = np.array([*params.start_joint_angles, 0.0, 0.0], dtype=np.float32)
        self._joint_low = self._arm.pos_lower[0].astype(np.float64)
        self._joint_high = self._arm.pos_upper[0].astype(np.float64)

    def training(self, uniforms: np.ndarray, field_gain: np.ndarray, channel: np.ndarray | None = None) -> Trials:
        """Training trials from uniform draws.

        Args:
            uniforms: (B, UNIFORMS_PER_TRIAL) uniform [0, 1) numbers, one row per trial (each
                environment draws its row from its own generator, whatever the target mode).
            field_gain: (B,) curl gain of each trial (N*s/m).
            channel: (B,) True for channel trials; None: none (channel trials draw nothing more).
        """
        p = self.params
        n = len(uniforms)
        go_time = p.go_time_range[0] + uniforms[:, 1] * (p.go_time_range[1] - p.go_time_range[0])
        catch = uniforms[:, 2] < p.catch_probability
        if p.targets == "centre_out":
            start_joint = np.tile(self.start_joint, (n, 1))
            target = self.targets[np.minimum((uniforms[:, 0] * N_TEST_TARGETS).astype(int), N_TEST_TARGETS - 1)]
        else:
            span = self._joint_high - self._joint_low
            zeros = np.zeros((n, 2))
            start_joint = np.concatenate([self._joint_low + uniforms[:, 3:5] * span, zeros], axis=1)
            target_joint = np.concatenate([self._joint_low + uniforms[:, 5:7] * span, zeros], axis=1)
            target = hand_kinematics(self._arm, NUMPY, target_joint.astype(np.float32))[:, :2]
        return Trials(
            start_joint=start_joint.astype(np.float32),
            target=np.asarray(target, np.float32),
            go_time=go_time.astype(np.float32),
            catch=catch,
            field_gain=np.asarray(field_gain, np.float32),
            channel=None if channel is None or not np.any(channel) else np.asarray(channel, bool),
        )

    def test(self, target_index: np.ndarray, field_gain: float, channel: bool = False) -> Trials:
        """The test reaches to ``target_index`` (each 0-7): fixed start and go time, no catch; in the
        channel when ``channel`` (then with no field: ``field_gain`` must be 0)."""
        n = len(target_index)
        return Trials(
            start_joint=np.tile(self.start_joint, (n, 1)),
            target=self.targets[target_index],
            go_time=np.full(n, self.params.test_go_time, np.float32),
            catch=np.zeros(n, bool),
            field_gain=np.full(n, field_gain, np.float32),
            channel=np.ones(n, bool) if channel else None,
        )


class TaskState(NamedTuple):
    """Everything that changes over time in a batch of trials (all arrays of one backend).

    Attributes:
        arm: the arms' state.
        step: steps taken since reset (the same for the whole batch).
        start: (B, 2) hand position at reset (m): the desired position until the go cue.
        target: (B, 2) target position (m).
        onset: (B,) go time + go-cue delay, in steps (inf in catch trials).
        field_gain: (B,) curl gain (N*s/m).
        load: (B, 2) field force to apply during the next step (N).
        vision: the last ``vision_delay_steps + 1`` noisy fingertip readings, oldest first.
        proprioception: the last ``proprioception_delay_steps + 1`` noisy muscle readings.
        velocity_1: (B, 2) hand velocity one step ago (m/s), for the jerk cost.
        velocity_2: (B, 2) hand velocity two steps ago (m/s).
        force_1: (B, 6) muscle force one step ago (N), for the force-change cost.
        channel: (B,) 1.0 on error-clamp (channel) trials, else 0.0 (float, so that functional
            transforms can treat every field alike); None when the batch has no channel trial,
            which leaves the dynamics exactly those of a batch without channels.
    """

    arm: ArmState
    step: int
    start: Array
    target: Array
    onset: Array
    field_gain: Array
    load: Array
    vision: tuple[Array, ...]
    proprioception: tuple[Array, ...]
    velocity_1: Array
    velocity_2: Array
    force_1: Array
    channel: Array | None = None


def channel_normal(start: Array, target: Array, xp: Backend = NUMPY) -> Array:
    """(B, 2) unit normal of the start-target line: its direction rotated 90 degrees
    counter-clockwise (the channel's lateral axis)."""
    direction = target - start
    length = xp.sum(direction * direction, axis=1)[:, None] ** 0.5
    return xp.stack([-direction[:, 1], direction[:, 0]], axis=1) / length


def channel_force(hand: Array, start: Array, target: Array, stiffness: Any, damping: Any, xp: Backend = NUMPY) -> Array:
    """The error-clamp channel's force on the hand (N), (B, 2): -(K d + D v_perp) n, with n the unit
    normal of the start-target line (:func:`channel_normal`), d = (x - start) . n the hand's distance
    from the line (m) and v_perp = v . n its lateral velocity (m/s). The arm pushes into the channel
    with the opposite force, K d + D v_perp along n: what a force transducer in the handle reads.

    Args:
        hand: (B, 4) hand position (m) and velocity (m/s).
        start, target: (B, 2) the line's ends (m).
        stiffness, damping: K (N/m) and D (N*s/m).
        xp: the arrays' backend.
    """
    normal = channel_normal(start, target, xp)
    d = xp.sum((hand[:, 0:2] - start) * normal, axis=1)
    v = xp.sum(hand[:, 2:4] * normal, axis=1)
    return -(stiffness * d + damping * v)[:, None] * normal


class ReachTask:
    """The task's dynamics on one backend: pure :meth:`reset` and :meth:`step` over :class:`TaskState`.

    Args:
        params: the task's constants.
        backend: where the arrays live.
        cued: append the field gain to the observation (the control condition with context).
    """

    def __init__(self, params: TaskParams, backend: Backend = NUMPY, cued: bool = False):
        self.params = params
        self.xp = backend
        self.cued = cued
        self.arm = ArmParams.from_effector(make_effector(params.dt), backend)
        self.observation_size = 2 + 2 * N_MUSCLES + 2 + 1 + int(cued)
        s = backend.scalar
        self._std_action = s(params.action_noise)
        self._std_proprio = s(params.proprioception_noise)
        self._std_vision = s(params.vision_noise)
        self._w_position = s(params.position_weight / params.reward_scale)
        self._w_jerk = s(params.jerk_weight / params.reward_scale)
        self._w_force = s(params.force_weight / params.reward_scale)
        self._w_force_change = s(params.force_change_weight / params.reward_scale)
        self._channel_k = s(params.channel_stiffness)
        self._channel_d = s(params.channel_damping)

    def reset(self, trials: Trials, noise: Array) -> tuple[TaskState, Array, dict[str, Array]]:
        """Starts a batch of trials.

        Args:
            trials: what each trial is.
            noise: (B, NOISE_WIDTH) standard-normal noise for the first sensory reading.

        Returns:
            The state, the first observation (B, obs) and the info dict (see :meth:`step`).
        """
        xp, p = self.xp, self.params
        arm = arm_at_rest(self.arm, xp, xp.asarray(trials.start_joint))
        onset = np.where(trials.catch, np.inf, (trials.go_time + p.go_cue_delay) / p.dt)
        vision, proprio = self._sense(arm, noise)
        velocity = arm.hand[:, 2:4]
        state = TaskState(
            arm=arm,
            step=0,
            start=arm.hand[:, 0:2],
            target=xp.asarray(trials.target),
            onset=xp.asarray(onset),
            field_gain=xp.asarray(trials.field_gain),
            load=velocity * xp.c(0.0),
            vision=(vision,) * (p.vision_delay_steps + 1),
            proprioception=(proprio,) * (p.proprioception_delay_steps + 1),
            velocity_1=velocity,
            velocity_2=velocity,
            force_1=arm.force,
            channel=None if trials.channel is None else xp.asarray(trials.channel.astype(np.float32)),
        )
        cue = state.onset < xp.c(-1.0)  # all False: the cue is never on at reset
        return state, self._observe(state, cue), self._info(state, cue)

    def step(self, state: TaskState, action: Array, noise: Array) -> tuple[TaskState, Array, Array, dict[str, Array]]:
        """Advances a batch of trials by one step.

        Args:
            state: the current state.
            action: (B, 6) muscle excitations (clipped to [0.001, 1] inside the arm).
            noise: (B, NOISE_WIDTH) standard-normal noise for this step.

        Returns:
            The new state; the observation (B, obs); the reward (B,); and the info dict with
            (B, .) arrays ``hand_position`` (m), ``hand_velocity`` (m/s), ``desired_position`` (m)
            and ``muscle_force`` (N), the quantities the cost is made of.
        """
        xp = self.xp
        arm = arm_step(self.arm, xp, state.arm, action + noise[:, _ACTION] * self._std_action, state.load)
        t = state.step + 1
        # In steps, so that the test go time of 0.10 s gives the paper's onsets: the field pushes
        # from step 17 on (its force acts in the step after it is computed), the cue shows from 18.
        if isinstance(t, int):
            field_on, cue = state.onset <= xp.c(t + 1e-3), state.onset < xp.c(t - 1e-3)
        else:  # a 0-d tensor: a compiled rollout passes the step as data so as not to specialise on it
            field_on, cue = state.onset <= t + 1e-3, state.onset < t - 1e-3
        velocity = arm.hand[:, 2:4]
        load = curl_force(velocity, xp.where(field_on, state.field_gain, xp.c(0.0)), xp)
        if state.channel is not None:
            # the channel, like the field, acts from go time + go-cue delay: until then a channel
            # trial cannot be told from any other
            on = xp.where(field_on, state.channel, xp.c(0.0))
            load = load + on[:, None] * self.channel_force(arm.hand, state.start, state.target)
        vision, proprio = self._sense(arm, noise)
        new = state._replace(
            arm=arm,
            step=t,
            load=load,
            vision=state.vision[1:] + (vision,),
            proprioception=state.proprioception[1:] + (proprio,),
            velocity_1=velocity,
            velocity_2=state.velocity_1,
            force_1=arm.force,
        )
        info = self._info(new, cue)
        jerk = velocity - xp.c(2.0) * state.velocity_1 + state.velocity_2
        force_change = arm.force - state.force_1
        cost = (
            self._w_position * xp.sum(xp.abs(info["hand_position"] - info["desired_position"]), axis=1)
            + self._w_jerk * xp.sum(jerk * jerk, axis=1)
            + self._w_force * xp.sum(arm.force, axis=1)
            + self._w_force_change * xp.sum(force_change * force_change, axis=1)
        )
        return new, self._observe(new, cue), -cost, info

    def channel_force(self, hand: Array, start: Array, target: Array) -> Array:
        """The error-clamp channel's force on the hand (N), (B, 2): :func:`channel_force` with the
        task's ``channel_stiffness`` and ``channel_damping``."""
        return channel_force(hand, start, target, self._channel_k, self._channel_d, self.xp)

    def channel_normal(self, start: Array, target: Array) -> Array:
        """(B, 2) unit normal of the start-target line (:func:`channel_normal`)."""
        return channel_normal(start, target, self.xp)

    def _sense(self, arm: ArmState, noise: Array) -> tuple[Array, Array]:
        vision = arm.hand[:, 0:2] + noise[:, _VISION] * self._std_vision
        muscle = self.xp.concat([arm.muscle_length / self.arm.l0_ce, arm.muscle_velocity / self.arm.vmax], axis=1)
        return vision, muscle + noise[:, _PROPRIO] * self._std_proprio

    def _observe(self, state: TaskState, cue: Array) -> Array:
        xp = self.xp
        parts = [state.vision[0], state.proprioception[0], state.target, xp.as_float(cue)[:, None]]
        if self.cued:
            parts.append(state.field_gain[:, None])
        return xp.concat(parts, axis=1)

    def _info(self, state: TaskState, cue: Array) -> dict[str, Array]:
        hand = state.arm.hand
        return {
            "hand_position": hand[:, 0:2],
            "hand_velocity": hand[:, 2:4],
            "desired_position": self.xp.where(cue[:, None], state.target, state.start),
            "muscle_force": state.arm.force,
        }


# (first index, last index, quantity, unit, low, high). Bounds hold by construction: the arm is
# 0.642 m long; over the joint ranges a muscle's length stays within 0.14-1.36 optimal lengths; the
# joint-velocity clip of MotorNet (1000 rad/s) bounds muscle velocity below 84 max velocities;
# sensory noise (std <= 1e-3) stays far inside the margins.
OBSERVATION_LAYOUT = (
    (0, 1, "fingertip x, y (delayed by vision_delay, noisy)", "m", -1.0, 1.0),
    (2, 7, "muscle length / optimal length, 6 muscles (delayed by proprioception_delay, noisy)", "1", 0.0, 2.0),
    (8, 13, "muscle velocity / max velocity, 6 muscles (delayed by proprioception_delay, noisy)", "1", -100.0, 100.0),
    (14, 15, "target x, y", "m", -1.0, 1.0),
    (16, 16, "go cue: 1 once the trial time exceeds go time + go_cue_delay, else 0", "1", 0.0, 1.0),
)
CUE_LAYOUT = (
    17,
    17,
    "curl-field gain k of the current episode (cued variant only)",
    "N*s/m",
    -MAX_FIELD_GAIN,
    MAX_FIELD_GAIN,
)


def observation_bounds(cued: bool) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of one arm's observation, from :data:`OBSERVATION_LAYOUT`."""
    layout = OBSERVATION_LAYOUT + ((CUE_LAYOUT,) if cued else ())
    size = layout[-1][1] + 1
    low, high = np.empty(size, np.float32), np.empty(size, np.float32)
    for first, last, _, _, lo, hi in layout:
        low[first : last + 1], high[first : last + 1] = lo, hi
    return low, high
