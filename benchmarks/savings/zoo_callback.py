"""The savings protocol's measurements inside an rl-zoo3 run: a Stable-Baselines3 callback.

``python -m rl_zoo3.train --env ArmCurlField-v0`` trains an SB3 model on the env's hidden schedule
but measures nothing the protocol measures. :class:`ProtocolCallback` does, without touching the
training: before every batch of 8 training episodes it plays the protocol's 8 test reaches under the
field of the phase the schedule is in (:func:`agents.sb3.learner.evaluate_models`), records them as
a point of that phase's learning curve with its reach quality (:func:`benchmarks.savings.protocol.record_point`),
takes the competence gate before FF1's first batch, and at the end of training writes the run's
``result.json``, ``curves.npz`` and ``figures/`` as ``savings-gym run`` does
(:func:`benchmarks.savings.protocol.finish`). rl-zoo3 loads it by its import path from the hyperparameter
file (``callback:``, read by ``rl_zoo3.utils.get_callback_list``)::

    ArmCurlField-v0:
      ...
      callback:
        - benchmarks.savings.zoo_callback.ProtocolCallback:
            out: runs/zoo-ppo

One rl-zoo3 run is one learner (one seed): one network of the result file. The board needs at
least 5 networks on one of its presets, which an rl-zoo3 run is not; the route to the board for an
algorithm tuned with rl-zoo3 is ``savings-gym run --agent sb3:<Algo> --hyperparams zoo.yml``
(its K seeds, the protocol's presets and pretraining, resumable).

rl-zoo3 builds ``n_envs`` separate envs (``gym.make``), each counting its own episodes in its own
copy of the schedule, so one batch (8 episodes of the learner) is ``8 / n_envs`` episodes of each
arm, and a phase of ``E`` episodes per arm lasts ``E * n_envs / 8`` batches: with ``n_envs: 8``, give
the phases in batches (``--env-kwargs "phase_episodes:dict(NF1=240, FF1=120, NF2=120, FF2=120)"`` for
the quick preset's lengths; the env's default, the paper's episode counts, is then 8x the paper's
batches). The callback reads the phase from the envs, as an experimenter would; the model never
sees it. It does not resume: rl-zoo3's ``-i`` continues training, not the callback's record.
"""

from __future__ import annotations

import dataclasses
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

from agents.interface import ReachRecord
from agents.sb3.learner import evaluate_models
from agents.sb3.spec import check_rollout_fits_a_batch
from benchmarks.savings.presets import PHASES
from benchmarks.savings.protocol import competence_of, finish, record_point
from benchmarks.savings.results import RunState
from savings_gym import TRIAL_STEPS
from savings_gym.envs import task_overrides
from savings_gym.schedule import PAPER_BATCH_SIZE, Schedule

BATCH_TIMESTEPS = PAPER_BATCH_SIZE * TRIAL_STEPS
"""SB3 timesteps (arm steps, summed over the arms) of one batch of 8 episodes."""


class ProtocolCallback(BaseCallback):
    """Plays the protocol's test reaches before every batch of an SB3 / rl-zoo3 run and writes its result.

    Args:
        out: folder for ``result.json``, ``curves.npz`` and ``figures/`` (written at the end of training).
        name: the result's submission name (default: ``zoo-<algo>``).
        verbose: 1 prints a line per phase change.

    Raises (when training starts):
        ValueError: for a training env that is not a savings-gym protocol env (``ArmCurlField-v0`` or
            ``ArmCurlFieldCued-v0``, one ``gym.make`` env per arm), arms that do not divide a batch,
            a phase whose length is not a whole number of batches, or a collection of the algorithm
            that does not fit a batch (its curve points would fall mid-rollout).
    """

    def __init__(self, out: str | Path = "runs/zoo", name: str | None = None, verbose: int = 0):
        super().__init__(verbose)
        self.out = Path(out)
        self.name = name
        self.state = RunState()
        self.batches = 0
        self.written: dict | None = None
        self._measured_at = -1
        self._started = time.time()

    def _init_callback(self) -> None:
        env = self.training_env
        n_envs = env.num_envs
        ids = {spec.id if spec is not None else None for spec in env.get_attr("spec")}
        if ids - {"ArmCurlField-v0", "ArmCurlFieldCued-v0"} or len(ids) != 1:
            raise ValueError(
                f"ProtocolCallback measures savings in ArmCurlField-v0 or ArmCurlFieldCued-v0 (one gym.make env "
                f"per arm, as rl-zoo3 builds them); the training env runs {sorted(map(str, ids))}"
            )
        if PAPER_BATCH_SIZE % n_envs:
            raise ValueError(f"n_envs={n_envs}: the arms must divide a batch of {PAPER_BATCH_SIZE} episodes")
        if isinstance(self.model, OnPolicyAlgorithm):  # its rollout (off-policy ones have n_steps too: n-step returns)
            values = {"n_steps": self.model.n_steps}
        else:  # off-policy: SB3 has made train_freq a TrainFreq by now
            values = {"train_freq": (self.model.train_freq.frequency, self.model.train_freq.unit.value)}
        check_rollout_fits_a_batch(type(self.model), values, n_envs)
        self.env_id = ids.pop()
        schedule: Schedule = env.get_attr("schedule")[0]
        per_arm = PAPER_BATCH_SIZE // n_envs  # each arm's episodes per batch
        uneven = [p.name for p in schedule.phases if p.n_episodes is not None and p.n_episodes % per_arm]
        if uneven or [p.name for p in schedule.phases] != list(PHASES):
            raise ValueError(
                f"the env's schedule {schedule.to_list()} must have the phases {list(PHASES)}, each a whole number of "
                f"batches: {per_arm} episodes per arm each (n_envs={n_envs}); {uneven or 'other phases'} are not"
            )
        # the schedule in the learner's episodes (8 per batch), as the protocol's figures read it
        self.schedule = Schedule(
            [(p.name, p.field_gain, None if p.n_episodes is None else p.n_episodes * n_envs) for p in schedule.phases]
        )
        params = env.get_attr("params")[0]
        self.dt, self.reach_distance = params.dt, params.reach_distance
        self.task = dataclasses.asdict(params)
        self.env_kwargs = {**task_overrides(self.env_id, self.task), "cued": bool(env.get_attr("cued")[0])}
        self.state.deviations = {phase: [] for phase in PHASES}

    def _on_rollout_start(self) -> None:
        """Before a collection that starts a batch: one point of the learning curve (and the gate before FF1)."""
        steps = self.model.num_timesteps  # the model's own count (the callback's is updated only in on_step)
        if steps % BATCH_TIMESTEPS or steps == self._measured_at:
            return
        self._measured_at = steps
        phases = set(self.training_env.get_attr("phase"))
        assert len(phases) == 1, f"the arms disagree on the phase: {phases}"  # they step in lockstep
        phase = phases.pop()
        if phase == "FF1" and self.state.competence is None:
            self.state.competence = competence_of(self._evaluate(0.0), self.dt)
        gain = next(p.field_gain for p in self.schedule.phases if p.name == phase)
        record_point(self.state, phase, self._evaluate(gain), self.dt, self.schedule)
        self.batches += 1
        if self.verbose and len(self.state.deviations[phase]) == 1:
            print(f"ProtocolCallback: {phase} starts at batch {self.batches - 1} ({steps} timesteps)")

    def _evaluate(self, field_gain: float) -> ReachRecord:
        """The 8 test reaches of the model's deterministic policy under ``field_gain``, changing nothing."""
        return evaluate_models(
            [(self.model, self.model.get_vec_normalize_env())], field_gain, self.env_id, **self.env_kwargs
        )

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        """Writes the result once (rl-zoo3 calls this a second time on its first callback)."""
        if self.written is not None:
            return
        missing = [phase for phase in ("FF1", "FF2") if not self.state.deviations.get(phase)]
        if missing:
            import warnings

            # the whole schedule (an open-ended last phase: its first batch)
            needed = sum(p.n_episodes or PAPER_BATCH_SIZE for p in self.schedule.phases) // PAPER_BATCH_SIZE
            warnings.warn(
                f"ProtocolCallback: no result written: training ended after {self.batches} batches without "
                f"{missing}; the env's schedule lasts {needed} batches, so train for at least "
                f"{needed * BATCH_TIMESTEPS} timesteps (rl-zoo3's -n)",
                UserWarning,
                stacklevel=2,
            )
            self.written = {}
            return
        self.written = finish(
            self.out,
            self.state,
            self._config(),
            time.time() - self._started,
            self.reach_distance,
            command=shlex.join(["python", *sys.argv]),
            submission={"name": self.name or f"zoo-{type(self.model).__name__}"},
        )
        if self.verbose:
            print(f"ProtocolCallback: wrote {self.out / 'result.json'} ({self.batches} batches)")

    def _config(self) -> dict[str, Any]:
        """What the result records of the run (the protocol's config keys; the preset is the env's schedule)."""
        model = self.model
        algo = type(model).__name__
        lstm = getattr(model.policy, "lstm_hidden_state_shape", None)
        seed = model.seed if model.seed is not None else 0
        batches = {phase: len(self.state.deviations[phase]) for phase in PHASES}
        gains = [p.field_gain for p in self.schedule.phases if p.field_gain]
        return {
            "agent": f"sb3:{algo}",
            "hidden": int(lstm[-1]) if lstm else None,
            "networks": 1,
            "seed": int(seed),
            "seeds": [int(seed)],
            "device": str(model.device),
            "env_id": self.env_id,
            "task": self.task,
            "preset": {
                "name": "rl-zoo3",
                "batches": batches,
                "field_gain": gains[0] if gains else math.nan,
                "lr": float(model.lr_schedule(1.0)),
                "description": "an rl-zoo3 run: curve points before each batch of 8 episodes of the env's schedule",
            },
            "rl_zoo3": {"n_envs": self.training_env.num_envs, "n_timesteps": int(model.num_timesteps)},
        }
