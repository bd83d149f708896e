"""N arms living through one hidden schedule: the engine behind every environment front-end.

A :class:`World` owns the batch state, one random generator per arm, the episode counter of the
schedule and the reset options. The single-arm Gymnasium env, the native vector env and the
differentiable torch env are thin front-ends over it, so the three cannot drift apart.

Randomness: arm ``i`` draws its trials and noise from its own generator only (uniform trial draws,
then the whole trial's noise at reset), so arm ``i`` of a batch seeded ``s + i`` lives exactly the
life of a single arm seeded ``s + i``, whatever the batch size.

Worlds: ``num_worlds`` splits the batch into equal groups that each live through the schedule on
their own (one per independent learner trained in lockstep, e.g. K networks by BPTT). The
schedule counts episodes per world, so the experience in each phase does not depend on batch size.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from gymnasium.utils import seeding

from savings_gym.backend import Array, Backend
from savings_gym.field import MAX_FIELD_GAIN
from savings_gym.schedule import Schedule
from savings_gym.task import (
    N_MUSCLES,
    N_TEST_TARGETS,
    NOISE_WIDTH,
    UNIFORMS_PER_TRIAL,
    ReachTask,
    TaskParams,
    TaskState,
    Trials,
    TrialSampler,
)

RESET_OPTIONS = ("mode", "field_gain", "target", "eval_seed", "trials", "channel")
TRIAL_OVERRIDES = ("target", "go_time", "catch")


@dataclass(frozen=True)
class ResetOptions:
    """Parsed ``reset(options=...)``; see :func:`parse_reset_options`."""

    mode: str = "train"
    field_gain: float = 0.0
    target: np.ndarray | None = None
    eval_seed: int = 0
    trials: Mapping[str, np.ndarray] | None = None
    channel: bool = False


def parse_reset_options(options: Mapping[str, Any] | None, num_envs: int, params: TaskParams) -> ResetOptions:
    """Checks the per-episode options every env front-end accepts.

    Keys:
        mode: ``"train"`` (default: the next episode of the schedule) or ``"test"`` (the 8 test
            reaches of the paper, outside the schedule: fixed start and go time, no catch trials,
            never counted as schedule episodes).
        field_gain: test mode only: the curl gain (N*s/m) to test under (default 0.0).
        target: test mode only: test-target index 0-7, one int or one per arm (default: arm i
            reaches target i % 8).
        eval_seed: test mode only: arm i draws its noise from a generator seeded ``eval_seed + i``
            (default 0), so every test is reproducible and leaves the training streams untouched.
        trials: train mode only: a dict overriding the drawn ``target`` (index 0-7, centre-out
            only), ``go_time`` (s) and/or ``catch`` (bool), each one value or one per arm.
        channel: test mode only: True plays the test reaches in the error-clamp channel (no
            field: ``field_gain`` must then be 0), to measure the adaptation index.

    Raises:
        ValueError: naming the bad key or value.
    """
    if options is None:
        return ResetOptions()
    if not isinstance(options, Mapping):
        raise ValueError(f"options must be a dict or None, got {type(options).__name__}")
    unknown = sorted(set(options) - set(RESET_OPTIONS))
    if unknown:
        raise ValueError(f"unknown reset option(s) {unknown}; valid options are {list(RESET_OPTIONS)}")
    mode = options.get("mode", "train")
    if mode not in ("train", "test"):
        raise ValueError(f"options['mode'] must be 'train' or 'test', got {mode!r}")
    test_only = [k for k in ("field_gain", "target", "eval_seed", "channel") if k in options]
    if mode == "train" and test_only:
        raise ValueError(f"options {test_only} apply to test episodes only; add options['mode'] = 'test'")
    if mode == "test" and "trials" in options:
        raise ValueError("options['trials'] applies to training episodes only; test reaches are fixed")

    field_gain = options.get("field_gain", 0.0)
    if (
        isinstance(field_gain, bool)
        or not isinstance(field_gain, int | float | np.number)
        or not np.isfinite(field_gain)
        or abs(field_gain) > MAX_FIELD_GAIN
    ):
        raise ValueError(
            f"options['field_gain'] must be a finite number within +-{MAX_FIELD_GAIN} (N*s/m), got {field_gain!r}"
        )
    eval_seed = options.get("eval_seed", 0)
    if isinstance(eval_seed, bool) or not isinstance(eval_seed, int | np.integer) or eval_seed < 0:
        raise ValueError(f"options['eval_seed'] must be a non-negative int, got {eval_seed!r}")
    target = None
    if mode == "test":
        target = _per_env("target", options.get("target", np.arange(num_envs) % N_TEST_TARGETS), num_envs, "i")
        if target.min() < 0 or target.max() >= N_TEST_TARGETS:
            raise ValueError(f"options['target'] must be test-target indices in 0..{N_TEST_TARGETS - 1}, got {target}")
    channel = options.get("channel", False)
    if not isinstance(channel, bool | np.bool_):
        raise ValueError(f"options['channel'] must be True or False, got {channel!r}")
    if channel and field_gain != 0:
        raise ValueError(
            f"options['channel']=True plays test reaches in the channel, which has no field: "
            f"options['field_gain'] must be 0, got {field_gain!r}"
        )
    trials = None
    if "trials" in options:
        trials = _parse_trial_overrides(options["trials"], num_envs, params)
    return ResetOptions(mode, float(field_gain), target, int(eval_seed), trials, bool(channel))


def _per_env(name: str, value: Any, num_envs: int, kind: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in (("b",) if kind == "b" else ("i", "u") if kind == "i" else ("f", "i", "u")):
        expected = {"b": "booleans", "i": "integers", "f": "numbers"}[kind]
        raise ValueError(f"options {name!r} must be {expected}, got {value!r}")
    if array.ndim == 0:
        array = np.full(num_envs, array)
    if array.shape != (num_envs,):
        raise ValueError(f"options {name!r} must be one value or {num_envs} (one per arm), got shape {array.shape}")
    if kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"options {name!r} must be finite, got {value!r}")
    return array


def _parse_trial_overrides(trials: Any, num_envs: int, params: TaskParams) -> dict[str, np.ndarray]:
    if not isinstance(trials, Mapping):
        raise ValueError(f"options['trials'] must be a dict, got {type(trials).__name__}")
    unknown = sorted(set(trials) - set(TRIAL_OVERRIDES))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in options['trials']; valid keys are {list(TRIAL_OVERRIDES)}")
    parsed = {}
    if "target" in trials:
        if params.targets != "centre_out":
            raise ValueError("options['trials']['target'] needs targets='centre_out' (random targets have no index)")
        parsed["target"] = _per_env("trials['target']", trials["target"], num_envs, "i")
        if parsed["target"].min() < 0 or parsed["target"].max() >= N_TEST_TARGETS:
            raise ValueError(f"options['trials']['target'] must be in 0..{N_TEST_TARGETS - 1}")
    if "go_time" in trials:
        parsed["go_time"] = _per_env("trials['go_time']", trials["go_time"], num_envs, "f").astype(np.float32)
        if parsed["go_time"].min() < 0:
            raise ValueError("options['trials']['go_time'] must be >= 0 (s)")
    if "catch" in trials:
        parsed["catch"] = _per_env("trials['catch']", trials["catch"], num_envs, "b")
    return parsed


def check_action(action: Any, shape: tuple[int, ...], xp: Backend) -> Array:
    """Validates an action batch and returns it as a float32 backend array.

    Raises:
        ValueError: for a non-numeric dtype, the wrong shape, or NaN/inf values.
    """
    if xp.name == "torch" and xp._torch.is_tensor(action):
        if not (action.dtype.is_floating_point or action.dtype in (xp._torch.int32, xp._torch.int64)):
            raise ValueError(f"action must hold real numbers, got dtype {action.dtype}")
        if tuple(action.shape) != shape:
            raise ValueError(f"action must have shape {shape} (muscle excitations), got {tuple(action.shape)}")
        if not xp.all_finite(action):
            raise ValueError(
                "action contains NaN or inf; excitations must be finite (values outside [0, 1] are clipped)"
            )
        return action.to(dtype=xp._torch.float32, device=xp.device)
    array = np.asarray(action)
    if array.dtype.kind not in ("f", "i", "u"):
        raise ValueError(f"action must hold real numbers, got dtype {array.dtype}")
    if array.shape != shape:
        raise ValueError(f"action must have shape {shape} (muscle excitations), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError("action contains NaN or inf; excitations must be finite (values outside [0, 1] are clipped)")
    return xp.asarray(array)


def generators(seed: int | Sequence[int | None] | None, num_envs: int) -> list[np.random.Generator]:
    """One generator per arm, as Gymnasium seeds sub-environments: arm i gets ``seed + i`` (or
    ``seed[i]`` for a list; ``None`` draws fresh entropy).

    Raises:
        ValueError: for a negative or non-integer seed (1.5, True) or a list of the wrong length.
    """
    if seed is None or isinstance(seed, int | np.integer):
        if seed is not None and (isinstance(seed, bool) or seed < 0):
            raise ValueError(f"seed must be a non-negative int, got {seed!r}")
        seeds = [None if seed is None else int(seed) + i for i in range(num_envs)]
    else:
        if not isinstance(seed, Sequence | np.ndarray) or isinstance(seed, str):
            raise ValueError(f"seed must be a non-negative int, a list of them or None, got {seed!r}")
        seeds = list(seed)
        bad = [
            s for s in seeds if s is not None and (isinstance(s, bool) or not isinstance(s, int | np.integer) or s < 0)
        ]
        if bad:
            raise ValueError(f"seeds must be non-negative ints or None, got {bad[:3]!r}")
        if len(seeds) != num_envs:
            raise ValueError(f"seed must be an int or a list of {num_envs} seeds, got {len(seeds)}")
    return [seeding.np_random(s)[0] for s in seeds]


class World:
    """A batch of arms living through one hidden schedule.

    Args:
        num_envs: arms in the batch.
        schedule: the hidden schedule.
        params: the task's constants.
        backend: where the arrays live.
        cued: show the field gain in the observation.
        num_worlds: independent groups the batch is split into, each with its own schedule counter.
    """

    def __init__(
        self,
        num_envs: int,
        schedule: Schedule,
        params: TaskParams,
        backend: Backend,
        cued: bool = False,
        num_worlds: int = 1,
    ):
        for name, value in (("num_envs", num_envs), ("num_worlds", num_worlds)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if num_envs % num_worlds:
            raise ValueError(f"num_envs={num_envs} must be a multiple of num_worlds={num_worlds}")
        self.num_envs = int(num_envs)
        self.num_worlds = int(num_worlds)
        self.envs_per_world = self.num_envs // self.num_worlds
        self.schedule = schedule
        self.params = params
        self.xp = backend
        self.task = ReachTask(params, backend, cued)
        self.sampler = TrialSampler(params)
        self.episodes_completed = 0
        self.mode: str | None = None
        self.state: TaskState | None = None
        self._episode_gains = np.zeros(self.num_envs, np.float32)
        self._rngs: list[np.random.Generator] | None = None
        self._before_draw: list[dict] | None = None  # the generators before the current training draw
        self._noise_rngs: list[np.random.Generator] | None = []
        # the test reaches' noise is drawn afresh from generators seeded eval_seed + i at every
        # test reset: the same draws each time, so the last ones are kept, keyed by (eval_seed,
        # steps) (a test batch every update; drawing 320 arms' noise took ~8 ms of a ~215 ms K=40
        # batch on the 2-core machine)
        self._test_noise: tuple[tuple[int, int], np.ndarray] | None = None
        self._test_seed = 0
        self._noise: Array | None = None

    def restart(self, rngs: Sequence[np.random.Generator]) -> None:
        """Starts a fresh run of the schedule with one generator per arm."""
        if len(rngs) != self.num_envs:
            raise ValueError(f"need {self.num_envs} generators, got {len(rngs)}")
        self._rngs = list(rngs)
        self.episodes_completed = 0
        self.state = None

    @property
    def phase(self) -> str:
        """Name of the schedule's current phase: that of the training episode in progress or, between
        episodes, of the next one (the same episodes :attr:`field_gains` describes)."""
        return self.schedule.phase_at(self.episodes_completed).name

    @property
    def between_episodes(self) -> bool:
        """True before the first reset, after :meth:`set_state`, and once a training episode has run
        its trial (until the next reset): the schedule has moved on to the next episodes."""
        return self.state is None or (self.mode == "train" and self.state.step >= self.params.trial_steps)

    @property
    def field_gains(self) -> np.ndarray:
        """(num_envs,) curl gain k (N*s/m) of each arm's current episode (test episodes: the gain asked
        for); between training episodes, of each arm's next one, so that it agrees with :attr:`phase`."""
        if self.between_episodes:
            return self.schedule.field_gains_at(self.episodes_completed + self._slots()).astype(np.float32)
        return self._episode_gains

    def _slots(self) -> np.ndarray:
        """Each arm's place among its world's current episodes."""
        return np.tile(np.arange(self.envs_per_world), self.num_worlds)

    def reset(self, options: Mapping[str, Any] | None = None) -> tuple[Array, dict[str, Array]]:
        """Starts a new episode in every arm (see :func:`parse_reset_options` for ``options``)."""
        if self._rngs is None:
            raise RuntimeError("World.restart(rngs) must be called before the first reset")
        opts = parse_reset_options(options, self.num_envs, self.params)
        steps = self.params.trial_steps + 1
        if opts.mode == "train":
            gains, channels = self.schedule.trials_at(self.episodes_completed + self._slots())
            self._before_draw = [rng.bit_generator.state for rng in self._rngs]
            uniforms = np.empty((self.num_envs, UNIFORMS_PER_TRIAL))
            for i, rng in enumerate(self._rngs):
                uniforms[i] = rng.random(UNIFORMS_PER_TRIAL)
            trials = self.sampler.training(uniforms, gains, channels)
            if opts.trials:
                trials = self._override(trials, opts.trials)
            self._noise_rngs = self._rngs
        else:
            trials = self.sampler.test(opts.target, opts.field_gain, opts.channel)
            # arm i's generator is seeded eval_seed + i, made by _draw_noise when drawing
            self._noise_rngs, self._test_seed, self._noise = None, opts.eval_seed, None
        if opts.mode == "train":
            noise = self._draw_noise(steps)
        elif self._test_noise is not None and self._test_noise[0] == (opts.eval_seed, steps):
            noise = self._test_noise[1]
        else:
            noise = self._draw_noise(steps)
            self._test_noise = ((opts.eval_seed, steps), noise)
        self._noise = self.xp.asarray(noise)
        self.mode = opts.mode
        self._episode_gains = trials.field_gain
        self.state, obs, info = self.task.reset(trials, self._noise[:, 0])
        return obs, info

    def step(self, action: Array) -> tuple[Array, Array, dict[str, Array]]:
        """Steps every arm with a validated (B, 6) action; returns observation, reward and info."""
        if self.state is None:
            raise RuntimeError("call reset before step")
        t = self.state.step + 1
        if t >= self._noise.shape[1]:  # the episode runs past its trial: draw noise for another trial's length
            self._noise = self.xp.concat([self._noise, self.xp.asarray(self._draw_noise(self.params.trial_steps))], 1)
        self.state, obs, reward, info = self.task.step(self.state, action, self._noise[:, t])
        if self.mode == "train" and t == self.params.trial_steps:
            self.episodes_completed += self.envs_per_world
        return obs, reward, info

    @property
    def channel_trials(self) -> np.ndarray:
        """(num_envs,) whether each arm's current episode is an error-clamp (channel) trial; between
        training episodes, its next one (as :attr:`field_gains`)."""
        if self.between_episodes:
            return self.schedule.channels_at(self.episodes_completed + self._slots())
        channel = self.state.channel
        return np.zeros(self.num_envs, bool) if channel is None else self.xp.to_numpy(channel) > 0

    @property
    def channel_force(self) -> np.ndarray:
        """(num_envs,) lateral force (N) the arm pushes into the channel at the current step, K d +
        D v_perp along the start-target line's normal (:meth:`ReachTask.channel_force`); 0 on
        trials without a channel and before the channel acts (go time + go-cue delay).

        Raises:
            RuntimeError: before the first reset.
        """
        state = self.state
        if state is None:
            raise RuntimeError("call reset before reading the channel force")
        if state.channel is None:
            return np.zeros(self.num_envs, np.float32)
        force = self.task.channel_force(state.arm.hand, state.start, state.target)
        lateral = -self.xp.sum(force * self.task.channel_normal(state.start, state.target), axis=1)
        acting = self.xp.to_numpy(state.channel) * (self.xp.to_numpy(state.onset) <= state.step + 1e-3)
        return (self.xp.to_numpy(lateral) * acting).astype(np.float32)

    @property
    def episode_noise(self) -> Array:
        """(B, trial_steps + 1, NOISE_WIDTH) standard-normal noise of the current episode: column 0
        was used at reset, column t is what step t uses (see :meth:`ReachTask.step`)."""
        if self._noise is None:
            raise RuntimeError("call reset before reading the episode's noise")
        return self._noise

    def advance(self, state: TaskState) -> None:
        """Adopts a state that a learner reached by stepping the pure dynamics itself
        (:meth:`ReachTask.step` from :attr:`state` with :attr:`episode_noise`), and counts a
        finished training episode as :meth:`step` would have.

        Raises:
            ValueError: for a state from no step of this episode.
        """
        if self.state is None:
            raise RuntimeError("call reset before advance")
        if not isinstance(state.step, int) or not self.state.step <= state.step <= self.params.trial_steps:
            raise ValueError(
                f"advance needs a state {self.state.step}..{self.params.trial_steps} steps into this episode, "
                f"got step {state.step!r}"
            )
        finished = self.mode == "train" and self.state.step < self.params.trial_steps == state.step
        self.state = state
        if finished:
            self.episodes_completed += self.envs_per_world

    def get_state(self) -> dict[str, Any]:
        """The schedule counter and every arm's generator state, for checkpoints: ``{"episodes_completed":
        int, "rngs": [one bit-generator state per arm] or None before the first seeding}``.

        Between training episodes (see :attr:`between_episodes`) the generators are those the next reset
        draws from. While a training episode is in progress they are those from before its draw, so
        that :meth:`set_state` and a reset replay that episode from its start (its steps are not saved).
        """
        rngs = None if self._rngs is None else [g.bit_generator.state for g in self._rngs]
        if self.mode == "train" and not self.between_episodes:
            rngs = self._before_draw
        return {"episodes_completed": self.episodes_completed, "rngs": rngs}

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`get_state`; the next reset continues exactly where the saved run would have.

        Raises:
            ValueError: for a state that is not one from :meth:`get_state` of a world of this size.
        """
        if not isinstance(state, Mapping) or set(state) != {"episodes_completed", "rngs"}:
            raise ValueError(
                "state must be a dict from get_state() with keys 'episodes_completed' and 'rngs', got "
                f"{sorted(state) if isinstance(state, Mapping) else type(state).__name__}"
            )
        completed = state["episodes_completed"]
        if isinstance(completed, bool) or not isinstance(completed, int | np.integer) or completed < 0:
            raise ValueError(f"state['episodes_completed'] must be a non-negative int, got {completed!r}")
        if state["rngs"] is not None:
            if len(state["rngs"]) != self.num_envs:
                raise ValueError(
                    f"saved state holds {len(state['rngs'])} generators, this world has {self.num_envs} arms"
                )
            self._rngs = [np.random.Generator(np.random.PCG64()) for _ in state["rngs"]]
            for generator, saved in zip(self._rngs, state["rngs"], strict=True):
                generator.bit_generator.state = saved
        self.episodes_completed = int(completed)
        self.state = None
        self.mode = None

    @property
    def episode_steps(self) -> int:
        """Steps taken in the current episode."""
        return 0 if self.state is None else self.state.step

    def _draw_noise(self, steps: int) -> np.ndarray:
        if self._noise_rngs is None:  # a test episode: arm i's generator seeded eval_seed + i
            self._noise_rngs = [np.random.default_rng(self._test_seed + i) for i in range(self.num_envs)]
            if self._noise is not None:  # the episode's noise so far came from the cache: replay it
                self._draw_noise(self._noise.shape[1])
        noise = np.empty((self.num_envs, steps, NOISE_WIDTH), np.float32)
        for i, rng in enumerate(self._noise_rngs):
            rng.standard_normal(out=noise[i], dtype=np.float32)
        return noise

    def _override(self, trials: Trials, overrides: Mapping[str, np.ndarray]) -> Trials:
        target = self.sampler.targets[overrides["target"]] if "target" in overrides else trials.target
        return Trials(
            start_joint=trials.start_joint,
            target=target,
            go_time=overrides.get("go_time", trials.go_time),
            catch=overrides.get("catch", trials.catch),
            field_gain=trials.field_gain,
            channel=trials.channel,
        )


ACTION_SIZE = N_MUSCLES
