"""The savings protocol: pretrain -> NF1 -> FF1 -> NF2 -> FF2 through the env's hidden schedule.

Before every update each learner does the 8 test reaches under the field of the phase it is in;
the mean signed lateral deviation per update is its learning curve (as the paper, whose update is
one batch of 8 reaches; :attr:`Preset.reaches_per_update` makes it more, phases still counted in
batches of 8 reaches). Beside the main run, the practice control (curves ``NFC``, ``FFC``) and the
reset control (``FFR``: the learners of NF1's start meet FF2; :func:`reset_learners`) can run. The
runner only talks to agents through :class:`agents.interface.Agent`, checkpoints every few minutes,
and writes its results atomically:

* ``result.json``: config, package versions, seeds, the phases in updates and in reaches
  (``updates``), the learning curves per phase and network,
  the reach quality of every curve point (``reach_curves``: endpoint error and hand path length of
  the same test reaches, so that a curve that falls because the learner stopped reaching is seen:
  :func:`benchmarks.savings.metrics.reach_held`) and the savings metrics (:func:`benchmarks.savings.metrics.savings`,
  over the networks that pass the competence gate and whose reach held);
* ``curves.npz``: the deviation of every test reach (phase -> (K, batches, 8));
* ``figures/``: learning curves, hand paths, savings index per network (:mod:`benchmarks.savings.figures`);
* ``phase_ends/<phase>.pt``: the learners' state at the end of each phase (for ``savings-gym latent``).

A killed run resumed with the same command ends with the same curves as an uninterrupted one.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.interface import Agent, ProtocolEnvs, ReachRecord
from agents.serialization import atomic_torch_save, load_checkpoint
from benchmarks.safe_io import atomic_write_bytes, atomic_write_json
from benchmarks.savings.metrics import (
    COLLAPSE_ENDPOINT_FACTOR,
    COLLAPSE_MIN_ENDPOINT_ERROR,
    COLLAPSE_MIN_PATH_FRACTION,
    COLLAPSE_WINDOW,
    COMPETENCE_MAX_ENDPOINT_ERROR,
    REACH_DIGITS,
    REACH_RADIUS,
    RESET_PHASE,
    channel_adaptation_index,
    competent,
    lateral_deviation,
    paradigm_metrics,
    reach_held,
    reach_quality,
    savings,
)
from savings_gym import TRIAL_STEPS
from savings_gym.schedule import (
    PAPER_BATCH_SIZE,
    PRACTICE_PHASES,
    Schedule,
    gradual_schedule,
    interference_schedule,
    paper_schedule,
    practice_control_schedule,
    spontaneous_recovery_schedule,
)
from savings_gym.task import start_hand_position

PHASES = ("NF1", "FF1", "NF2", "FF2")
PARADIGM_PHASES = ("FFB", "EC")
"""Phases of the paradigms beyond A-B-A besides :data:`PHASES`: the opposite field -A and the
error-clamp block (:mod:`savings_gym.schedule`)."""
RESULT_VERSION = 1
RESULT_UNITS = {
    "lengths": "m (learning curves, first errors, endpoint errors, path lengths); the CLI, report and board show cm",
    "times": "s",
    "field_gain": "N*s/m",
    "rates": "per window of metrics.window curve points",
    "curve_points": "one per update, from the test reaches before it; an update is updates.reaches_per_update "
    "training reaches per learner (8: one batch of the paper's protocol), so batch counts in metrics (windows, "
    "batches to half error, the early batches) count updates",
}
"""What a result file's numbers are in, written into every result file."""
# hand paths kept for the figures: (label, phase, which batch of it)
SNAPSHOTS = (
    ("NF1 end", "NF1", -1),
    ("FF1 start", "FF1", 0),
    ("FF1 end", "FF1", -1),
    ("NF2 end", "NF2", -1),
    ("FF2 start", "FF2", 0),
)


@dataclass(frozen=True)
class Preset:
    """Phase lengths and learning settings of a protocol.

    Attributes:
        name: preset name.
        batches: adaptation batches (of 8 centre-out reaches) per phase.
        field_gain: curl gain of the FF phases (N*s/m).
        lr: SGD learning rate after pretraining.
        pretrain_batches: batches of pretraining when no shipped pretrained network fits.
        use_shipped_pretrained: start from the project's pretrained networks when they fit.
        bptt_pretrained: the file in ``agents/pretrained/`` that BPTT runs of this preset start
            from when its cell and size match the run's (default: ``<cell><hidden>.pt``).
        imitation_steps: SB3 learners pretrained by the run (no shipped weights fit) first imitate
            the shipped GRU-128 networks for this many gradient steps, when their policy can
            (:func:`agents.sb3.imitation.imitate`; PPO from scratch does not learn to reach at these
            budgets); 0: RL from scratch. BPTT networks ignore it.
        description: what it is for.
        reaches_per_update: training reaches per learner between two points of the learning curve,
            i.e. per update (a positive multiple of 8; default 8, the paper's batch). Phases stay
            counted in batches of 8 reaches, so a phase of B batches is 8B / R updates (curve points)
            whatever R: learners of different R get the same experience per phase. BPTT agents take
            only 8 (the paper's update is one batch of the 8 targets); RL learners need more
            (issue 19). Checked by :func:`check_reaches_per_update`.
        sb3_hyperparams: SB3 algorithm name -> hyperparameters this preset sets for it, over the
            shipped ``agents/hyperparams`` yaml and under the command line's ``--hyperparams``
            (:meth:`sb3_overrides`); an algorithm not named keeps its yaml's.
    """

    name: str
    batches: dict[str, int]
    field_gain: float = 8.0
    lr: float = 5e-3
    pretrain_batches: int = 20010
    use_shipped_pretrained: bool = False
    bptt_pretrained: str | None = None
    imitation_steps: int = 0
    description: str = ""
    reaches_per_update: int = PAPER_BATCH_SIZE
    sb3_hyperparams: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_reaches_per_update(self.reaches_per_update)
        if self.reaches_per_update != PAPER_BATCH_SIZE:  # whole batches are whole updates of 8
            check_reaches_per_update(self.reaches_per_update, self.schedule(), f"preset {self.name!r}")

    def schedule(self) -> Schedule:
        return paper_schedule(self.field_gain, self.batches)

    def sb3_overrides(self, algo: str, hyperparams: Any = None) -> Any:
        """The hyperparameter layers of an ``sb3:<algo>`` run of this preset: the preset's for
        ``algo`` first, then ``hyperparams`` (the command line's: a dict, a yaml path or a list of
        those, see :func:`agents.sb3.spec.make_spec`), which win."""
        own = self.sb3_hyperparams.get(algo)
        if not own:
            return hyperparams
        from agents.sb3.hyperparams import hyperparam_layers

        return [dict(own), *hyperparam_layers(hyperparams)]

    def practice_schedule(self) -> Schedule:
        """The practice control's schedule (:func:`savings_gym.schedule.practice_control_schedule`)."""
        return practice_control_schedule(self.field_gain, self.batches)

    def with_changes(
        self,
        batches: Mapping[str, int] | None = None,
        lr: float | None = None,
        reaches_per_update: int | None = None,
    ) -> Preset:
        """A copy with some phases' batch counts, the SGD rate and/or the reaches per update replaced,
        named after the change (``quick:lr=0.005,reaches_per_update=64,NF1=240``) so that its results
        are never mistaken for the preset's own (the board refuses them). A value equal to the
        preset's own is no change.

        Raises:
            ValueError: for a name that is not one of :data:`PHASES`, a count that is not an integer
                >= 0, a learning rate that is not a positive finite number, or reaches per update
                that :func:`check_reaches_per_update` refuses.
        """
        batches = dict(batches or {})
        for phase, count in batches.items():
            if phase not in PHASES:
                raise ValueError(f"phase batches: unknown phase {phase!r}; the phases are {list(PHASES)}")
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise ValueError(f"phase batches: {phase} must be an integer >= 0, got {count!r}")
        if lr is not None and (isinstance(lr, bool) or not isinstance(lr, int | float) or not 0 < lr < math.inf):
            raise ValueError(f"lr must be a positive finite number, got {lr!r}")
        if reaches_per_update == self.reaches_per_update:
            reaches_per_update = None
        if reaches_per_update is not None:
            check_reaches_per_update(reaches_per_update)
        changes = (
            ([f"lr={lr:g}"] if lr is not None else [])
            + ([f"reaches_per_update={reaches_per_update}"] if reaches_per_update is not None else [])
            + [f"{phase}={n}" for phase, n in batches.items()]
        )
        if not changes:
            return self
        return replace(
            self,
            name=f"{self.name}:{','.join(changes)}",
            batches={**self.batches, **batches},
            lr=self.lr if lr is None else float(lr),
            reaches_per_update=self.reaches_per_update if reaches_per_update is None else reaches_per_update,
        )

    @property
    def total_batches(self) -> int:
        return sum(self.batches.values())


def check_reaches_per_update(reaches: Any, schedule: Schedule | None = None, where: str = "the run") -> None:
    """Refuses reaches per update (:attr:`Preset.reaches_per_update`) that are not a positive
    multiple of 8 or, with ``schedule``, that do not make every finite phase a whole number of updates.

    Raises:
        ValueError: naming the value, the argument (``--reaches-per-update``) and the phase.
    """
    if isinstance(reaches, bool) or not isinstance(reaches, int) or reaches < 1 or reaches % PAPER_BATCH_SIZE:
        raise ValueError(
            f"reaches_per_update (--reaches-per-update) must be a positive multiple of {PAPER_BATCH_SIZE} (whole "
            f"batches of the 8 centre-out targets), got {reaches!r}"
        )
    for phase in [] if schedule is None else schedule.phases:
        if phase.n_episodes is not None and phase.n_episodes % reaches:
            raise ValueError(
                f"reaches_per_update={reaches} (--reaches-per-update): phase {phase.name} of {where} is "
                f"{phase.n_episodes / PAPER_BATCH_SIZE:g} batches = {phase.n_episodes} reaches, not a whole number of "
                f"updates of {reaches} reaches; give it a multiple of {reaches // PAPER_BATCH_SIZE} batches "
                "(--phases) or choose another --reaches-per-update"
            )


_QUICK_WITHOUT_NF1 = Preset(
    "quick",
    {"NF1": 0, "FF1": 120, "NF2": 120, "FF2": 120},
    # 4x the paper's SGD rate compresses each phase ~4x: chosen by measurement (benchmarks/RESULTS.md)
    lr=2e-2,
    pretrain_batches=2000,
    use_shipped_pretrained=True,
    imitation_steps=1500,
    description="quick before 2026-12-02 (issue 18): no NF1, so part of its savings is practice",
)

PRESETS = {
    "paper": Preset(
        "paper",
        {"NF1": 10001, "FF1": 3201, "NF2": 10001, "FF2": 3201},
        imitation_steps=1500,
        description="the paper's exact protocol: 20,010 pretraining batches, then 26,404 adaptation batches",
    ),
    # NF1 240: after it, 240 more null-field batches no longer speed up learning the field (the
    # practice control of that run: benchmarks/RESULTS.md, "NF1 and the practice control")
    "quick": replace(
        _QUICK_WITHOUT_NF1,
        batches={"NF1": 240, "FF1": 120, "NF2": 120, "FF2": 120},
        description="from the shipped pretrained networks: NF1 240, FF1, NF2, FF2 120 batches each, SGD lr 0.02",
    ),
    # the paper's SGD rate at lengths this machine affords (calibration: benchmarks/RESULTS.md, "A
    # faithful preset"): at 5e-3, NF2 600 brings the washout within 0.1 cm of NF1's level and FF1 600
    # bends the curve; NF1 480 is the quick preset's 120 (where practice stopped mattering) at a
    # quarter of its rate
    "faithful": Preset(
        "faithful",
        {"NF1": 480, "FF1": 600, "NF2": 600, "FF2": 600},
        lr=5e-3,
        pretrain_batches=5000,
        use_shipped_pretrained=True,
        bptt_pretrained="gru128-faithful.pt",
        imitation_steps=1500,
        description="the paper's SGD rate 5e-3: NF1 480, FF1 600, NF2 600, FF2 600 batches, from 40 GRU-128 "
        "networks pretrained for 5,000 batches",
    ),
    # RL learners at 64 reaches per update (issue 19; calibration: benchmarks/RESULTS.md, "RecurrentPPO
    # at 64 reaches per update"): at lr 3e-4 the shipped RecurrentPPO learners remove about half their
    # FF1 error in 50 updates with their reach held, and need about twice that to wash out; at 6e-4
    # their reach collapses already in NF1. BPTT agents refuse it (one batch of 8 per update). An
    # update's 64 reaches are one episode of 64 arms (3-4x faster to train than 8 episodes of 8 arms,
    # `savings-gym bench rl`; the runs before 2026-12-03 evening used 8 arms, as their config says).
    "rl": Preset(
        "rl",
        {"NF1": 16, "FF1": 400, "NF2": 800, "FF2": 400},
        use_shipped_pretrained=True,
        imitation_steps=1500,
        reaches_per_update=64,
        sb3_hyperparams={
            algo: {"n_envs": 64, "batch_size": 3200, "learning_rate": 3e-4, "n_epochs": 4, "exploration_std": 0.01}
            for algo in ("RecurrentPPO", "PPO")
        },
        description="SB3 learners from the shipped RL weights, one update per 64 reaches (one episode of 64 arms, "
        "batch 3,200, lr 3e-4, 4 epochs, action std 0.01): NF1 2, FF1 50, NF2 100, FF2 50 updates",
    ),
    "smoke": Preset(
        "smoke",
        {"NF1": 2, "FF1": 15, "NF2": 5, "FF2": 15},
        pretrain_batches=5,
        use_shipped_pretrained=True,
        imitation_steps=20,
        description="37 batches that exercise every stage (tests; 18 s for the template's 5 networks on one "
        "thread here, minutes with more threads than free cores); its numbers mean nothing",
    ),
}


RETIRED_PRESETS = (_QUICK_WITHOUT_NF1,)
"""Earlier definitions of a preset name whose results are still read (the board lists them, marked)."""


def find_preset(
    name: str, batches: Mapping[str, int], reaches_per_update: int = PAPER_BATCH_SIZE
) -> tuple[Preset | None, bool]:
    """The preset a result file names, by name, phase lengths and reaches per update (a file without
    them: 8): (preset, retired), with retired True for one of :data:`RETIRED_PRESETS`; (None, False)
    when neither knows it."""
    current = PRESETS.get(name)
    if current is not None and (current.batches, current.reaches_per_update) == (batches, reaches_per_update):
        return current, False
    for old in RETIRED_PRESETS:
        if (old.name, old.batches, old.reaches_per_update) == (name, batches, reaches_per_update):
            return old, True
    return None, False


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ``ValueError`` lists the valid names."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets are {sorted(PRESETS)}")
    return PRESETS[name]


@dataclass
class RunState:
    """What a checkpoint holds besides the agent."""

    batch: int = 0
    deviations: dict[str, list[list[float]]] = field(default_factory=lambda: {p: [] for p in PHASES})
    snapshots: dict[str, dict] = field(default_factory=dict)
    competence: dict[str, Any] | None = None
    # phase -> {"endpoint_error": [...], "path_length": [...]}, per batch the (K,) means over the
    # test reaches (m); None in a checkpoint from before reach quality was recorded
    reach: dict[str, dict[str, list[list[float]]]] | None = field(default_factory=dict)
    adaptation: dict[str, list[list[float]]] = field(default_factory=dict)
    """phase -> per batch, the (K,) mean adaptation index of the channel test reaches (channel phases)."""
    reset_from: dict[str, Any] | None = None
    """The reset control's learner state at NF1's start, kept until FF2 restores it (then None)."""


REACH_KEYS = ("endpoint_error", "path_length")


def protocol_schedule(env_id: str, preset: Preset, batches: Mapping[str, int] | None = None) -> Schedule:
    """The hidden schedule a protocol run of ``env_id`` lives through, at the preset's lengths.

    ``ArmCurlField-v0`` and ``ArmCurlFieldCued-v0``: the preset's (:meth:`Preset.schedule`). The
    paradigms take the preset's phases where they share them, and: spontaneous recovery a tenth of
    FF1 (at least 1 batch) of -A (``FFB``) and NF2's length of channel trials (``EC``);
    interference FF2's length of -A (``FFB``); gradual the preset's phases with FF1 ramped
    (:func:`savings_gym.schedule.gradual_schedule`).

    Args:
        env_id: a registered id with a field.
        preset: phase lengths and field gain.
        batches: batch counts of the paradigm's own phases (``FFB``, ``EC``) replacing those.

    Raises:
        ValueError: for an id the protocol does not run, or a phase the paradigm lacks.
    """
    b, k = preset.batches, preset.field_gain
    extra = dict(batches or {})
    builders = {
        "ArmCurlFieldSpontaneousRecovery-v0": lambda: spontaneous_recovery_schedule(
            k, {"NF1": b["NF1"], "FF1": b["FF1"], "FFB": max(1, b["FF1"] // 10), "EC": b["NF2"]} | extra
        ),
        "ArmCurlFieldInterference-v0": lambda: interference_schedule(
            k, {"NF1": b["NF1"], "FF1": b["FF1"], "FFB": b["FF2"]} | extra
        ),
        "ArmCurlFieldGradual-v0": lambda: gradual_schedule(k, {**b, **extra}),
    }
    if env_id in ("ArmCurlField-v0", "ArmCurlFieldCued-v0"):
        if extra:
            raise ValueError(f"{env_id} has no phase(s) {sorted(extra)}; its phases are {list(PHASES)}")
        return preset.schedule()
    if env_id not in builders:
        raise ValueError(f"the protocol runs {['ArmCurlField-v0', 'ArmCurlFieldCued-v0', *builders]}, got {env_id!r}")
    return builders[env_id]()


def batch_test(schedule: Schedule, batch: int, reaches_per_update: int = PAPER_BATCH_SIZE) -> tuple[float, bool]:
    """What the protocol's test reaches before update ``batch`` (of ``reaches_per_update`` training
    reaches; 8: a batch) are played under: the curl gain of the update's first field trial (N*s/m; it
    ramps in a gradual phase) and, for an update of channel trials only, the channel (gain 0)."""
    gains, channels = schedule.trials_at(batch * reaches_per_update + np.arange(reaches_per_update))
    if channels.all():
        return 0.0, True
    return float(gains[np.argmax(~channels)]), False


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    import gymnasium
    import motornet
    import scipy

    import savings_gym

    return {
        "savings_gym": savings_gym.__version__,
        "motornet": getattr(motornet, "__version__", "?"),
        "gymnasium": gymnasium.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
    }


def run_protocol(
    make_agent: Callable[[ProtocolEnvs], Agent],
    preset: Preset,
    out: str | Path,
    config: dict[str, Any],
    checkpoint_seconds: float = 120.0,
    progress: bool = True,
    stop_after: int | None = None,
    practice_control: bool = False,
    env_id: str | None = None,
    task: Mapping[str, Any] | None = None,
    command: str | None = None,
    schedule: Schedule | None = None,
    reset_control: bool = False,
) -> dict | None:
    """Runs (or resumes) the protocol and writes the result files.

    Args:
        make_agent: builds the agent (already pretrained as its config says) from the
            :class:`~agents.interface.ProtocolEnvs` of its schedule, in which it must train.
        preset: phase lengths.
        out: output folder; a ``checkpoint.pt`` there is resumed if its config matches.
        config: how the agent was made (written to the result and checked on resume).
        checkpoint_seconds: seconds between checkpoints.
        progress: show a progress line.
        stop_after: stop (with a checkpoint) once this many updates (curve points) are done; for tests.
        practice_control: also run the practice control: a second copy of the same learners,
            built by ``make_agent`` on envs of :meth:`Preset.practice_schedule`, in the null field for
            NF1 + FF1 + NF2 batches (curve ``NFC``) and then in the field for FF2's (``FFC``),
            batch by batch beside the main run. FF2 against FFC is savings net of practice.
        reset_control: also run the reset control, the learners with no memory by construction: a
            further copy built by ``make_agent`` on the main schedule, which keeps its learner state
            at NF1's start (after pretraining) and at FF2's start takes the main run's state with that
            learner state restored (:func:`reset_learners`); its FF2 curve is ``FFR``. FF2 against FFR
            is savings against no memory; FFR against FF1 shows none by construction (NF1 apart). The
            learners must offer :class:`agents.interface.Resettable`'s methods.
        env_id: the registered id the envs are made of (default: ``config["env_id"]``, else
            ``ArmCurlField-v0``).
        task: task constants replacing the id's defaults (:class:`savings_gym.task.TaskParams` fields).
        command: the command line that made the run (recorded as ``command`` in the result).
        schedule: the hidden schedule (default the preset's; a paradigm's from
            :func:`protocol_schedule`). Before a batch of channel trials the test reaches are made in
            the channel and their adaptation index is recorded (``adaptation_index`` in the result).

    Every learner trains ``preset.reaches_per_update`` (R) reaches per update, ``train(R)``, after the
    test reaches that make the update's curve point; a phase of B batches is 8B / R updates.

    Returns:
        The result dict, or None when stopped early.

    A folder whose ``result.json`` holds this run's config is complete: its result is returned and
    nothing runs. A finished run leaves no ``checkpoint.pt`` (``phase_ends/`` keeps the learners).

    Raises:
        ValueError: when the folder holds a checkpoint or a finished result of a different run
            (naming the config fields that differ), for reaches per update that do not make every
            phase of the schedule a whole number of updates, or for a reset control of learners
            without ``learner_state`` / ``load_learner_state``.
        agents.interface.ScheduleMismatchError: when an agent's envs are not where the schedule says
            before a batch (it trains elsewhere, or its resumed state skips batches).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env_id = env_id or config.get("env_id", "ArmCurlField-v0")
    main = preset.schedule() if schedule is None else schedule
    for control, wanted in (("practice", practice_control), ("reset", reset_control)):
        if wanted and main != preset.schedule():
            raise ValueError(f"the {control} control is defined for the paper's schedule; run it with ArmCurlField-v0")
    if main.total_episodes is None or "FF1" not in main.names:
        raise ValueError(f"the protocol needs a finite schedule with an FF1 phase, got {main!r}")
    reaches = preset.reaches_per_update
    check_reaches_per_update(reaches, main, f"preset {preset.name!r}")
    checkpoint = out / "checkpoint.pt"
    full_config = {
        **config,
        "preset": asdict(preset),
        "practice_control": practice_control,
        "reset_control": reset_control,
    }
    finished = _finished_result(out, full_config)
    if finished is not None:
        return finished
    schedules = [main] + ([preset.practice_schedule()] if practice_control else [])
    runs = []
    for schedule in schedules:
        envs = ProtocolEnvs(schedule, env_id, task)
        runs.append((envs, make_agent(envs)))
    if practice_control:
        _check_independent(runs[0][1], runs[1][1])
    reset = None
    if reset_control:  # a copy of the main run's learners, on its schedule; it waits until FF2
        envs = ProtocolEnvs(main, env_id, task)
        reset = (envs, make_agent(envs))
        _check_resettable(reset[1])
        _check_independent(runs[0][1], reset[1])
    agents = {"agent": runs[0][1]} | ({"control": runs[1][1]} if practice_control else {})
    agents |= {"reset_control": reset[1]} if reset is not None else {}
    state = RunState(deviations={name: [] for name in main.names})
    if practice_control:
        state.deviations.update({name: [] for name in PRACTICE_PHASES})
    if reset_control:
        state.deviations[RESET_PHASE] = []
    if checkpoint.exists():
        state = _resume(checkpoint, full_config, agents)
    if reset is not None and state.batch == 0:
        state.reset_from = reset[1].learner_state()  # NF1's start, after pretraining
    total = main.total_episodes // reaches  # updates, one curve point each
    started, last_save = time.time(), time.time()
    bar = _progress(total, state.batch, progress, "updates" if reaches != PAPER_BATCH_SIZE else "batches")
    while state.batch < total:
        done = state.batch * reaches  # training episodes per learner so far
        if done == main.start_of("FF1") and state.competence is None:
            state.competence = measure_competence(runs[0][1], runs[0][0].params.dt)
        if reset is not None and done == main.start_of("FF2"):  # before the main run's first FF2 update
            if state.reset_from is None:
                raise RuntimeError("the reset control reached FF2 without the learner state of NF1's start")
            reset_learners(reset[1], runs[0][1], state.reset_from)
            state.reset_from = None
        resetting = reset is not None and done >= main.start_of("FF2")
        for i, (envs, agent) in enumerate(runs + ([reset] if resetting else [])):
            envs.check(state.batch, reaches)
            phase = envs.schedule.phase_at(done)
            name = RESET_PHASE if reset is not None and agent is reset[1] else phase.name
            if name != RESET_PHASE:  # the reset control's phases before FF2 are the main run's
                _save_phase_ends(out, envs.schedule, agent, done)
            gain, channel = batch_test(envs.schedule, state.batch, reaches)
            record = evaluate_then_train(agent, gain, channel, reaches)
            # the hand-path figures and the progress line follow the main run
            deviation = record_point(state, name, record, envs.params.dt, envs.schedule if i == 0 else None, reaches)
            if channel:
                index = _channel_index(record, envs.params, reference_gain=preset.field_gain)
                state.adaptation.setdefault(name, []).append(index.tolist())
            if i == 0:
                shown = (phase.name, deviation.mean())
        state.batch += 1
        bar(state.batch, *shown)
        stopping = stop_after is not None and state.batch >= stop_after
        if time.time() - last_save > checkpoint_seconds or stopping:
            _save_checkpoint(checkpoint, full_config, agents, state)
            last_save = time.time()
        if stopping and state.batch < total:
            return None
    for envs, agent in runs:
        envs.check(state.batch, reaches)
        _save_phase_ends(out, envs.schedule, agent, state.batch * reaches)
    if reset is not None and main.start_of("FF2") < main.total_episodes:  # it took over at FF2's start
        reset[0].check(state.batch, reaches)
    result = finish(out, state, full_config, time.time() - started, runs[0][0].params.reach_distance, command)
    checkpoint.unlink(missing_ok=True)  # result.json and phase_ends/ hold everything a finished run keeps
    return result


def record_point(
    state: RunState,
    phase: str,
    record: ReachRecord,
    dt: float,
    schedule: Schedule | None = None,
    reaches_per_update: int = PAPER_BATCH_SIZE,
) -> np.ndarray:
    """Adds one point of the learning curves to ``state``: the lateral deviation of each test reach
    and (where ``state`` records it) the reach quality, under ``phase``; with ``schedule`` (in
    training episodes, ``reaches_per_update`` per point), also the hand paths at the protocol's
    landmarks (:data:`SNAPSHOTS`).

    Returns:
        (K, 8) signed lateral deviation of the test reaches (m).
    """
    deviation = lateral_deviation(record.hand_position, record.target[None])
    state.deviations[phase].append(deviation.tolist())
    if state.reach is not None:
        quality = reach_quality(record.hand_position, record.target, dt)
        row = state.reach.setdefault(phase, {key: [] for key in REACH_KEYS})
        for key in REACH_KEYS:
            row[key].append(np.round(quality[key], REACH_DIGITS).tolist())
    if schedule is not None:
        _keep_snapshot(state, schedule, phase, record, reaches_per_update)
    return deviation


def finish(
    out: Path,
    state: RunState,
    config: dict,
    seconds: float,
    reach_distance: float,
    command: str | None = None,
    submission: dict | None = None,
) -> dict:
    """The result of a run whose points are in ``state`` (:func:`make_result`, with ``submission``
    metadata), written to ``out`` (:func:`write_result`) and returned."""
    curves = {phase: np.asarray(d).mean(-1).T for phase, d in state.deviations.items() if len(d)}
    reach = None
    if state.reach is not None:
        reach = {
            phase: {key: np.asarray(rows[key]).T for key in REACH_KEYS} for phase, rows in state.reach.items() if rows
        }
    adaptation = {phase: np.asarray(a).T for phase, a in state.adaptation.items() if len(a)}
    result = make_result(
        config,
        curves,
        seconds,
        submission=submission,
        command=command,
        competence=state.competence,
        reach_curves=reach,
        reach_distance=reach_distance,
        adaptation=adaptation or None,
    )
    write_result(out, result, state)
    return result


def measure_competence(agent: Agent, dt: float = 0.01) -> dict[str, Any]:
    """The competence gate's measurements: every network's 8 null-field test reaches, taken where
    the protocol calls it (before FF1's first update), as :func:`benchmarks.savings.metrics.reach_quality`
    (m, s) and :func:`benchmarks.savings.metrics.competent`. Leaves the agent unchanged (``evaluate``)."""
    return competence_of(agent.evaluate(0.0), dt)


def competence_of(record: ReachRecord, dt: float = 0.01) -> dict[str, Any]:
    """:func:`measure_competence` of null-field test reaches already played."""
    quality = reach_quality(record.hand_position, record.target, dt)
    return {
        "measured": "the 8 null-field test reaches before FF1's first update",
        "criterion": {"max_endpoint_error_m": COMPETENCE_MAX_ENDPOINT_ERROR, "reach_radius_m": REACH_RADIUS},
        "per_network": {
            **{name: values.tolist() for name, values in quality.items()},
            "competent": [bool(v) for v in competent(quality["endpoint_error"])],
        },
    }


def _check_independent(main: Agent, control: Agent) -> None:
    """Refuses a practice control whose learner shares weights with the main run's (``make_agent``
    must build a new learner on every call): the two would train one network in both schedules.
    Seen through ``state_dict()``: learners whose state dicts are copies are not checked here."""

    def tensors(tree: Any) -> list[torch.Tensor]:
        if isinstance(tree, torch.Tensor):
            return [tree] if tree.numel() else []
        if isinstance(tree, dict):
            return [t for value in tree.values() for t in tensors(value)]
        if isinstance(tree, list | tuple):
            return [t for value in tree for t in tensors(value)]
        return []

    # both state dicts held at once: a copy freed early could hand its address to the other's tensors
    main_state, control_state = main.state_dict(), control.state_dict()
    main_storage = {t.untyped_storage().data_ptr() for t in tensors(main_state)}
    if main_storage & {t.untyped_storage().data_ptr() for t in tensors(control_state)}:
        raise ValueError(
            "make_agent returned learners that share weights (the practice control would train the main "
            "run's networks); build new weights on every call"
        )


ADDED_CONFIG_DEFAULTS = {"reset_control": False}
"""Config keys added after files were written, at the value a file without them means."""
ADDED_PRESET_DEFAULTS = {"reaches_per_update": PAPER_BATCH_SIZE, "sb3_hyperparams": {}}
"""Likewise for the config's ``preset`` block."""


def comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's config as checks of "the same run" compare it (a checkpoint's, a sweep cell's): its JSON
    form without the keys of :data:`ADDED_CONFIG_DEFAULTS` and :data:`ADDED_PRESET_DEFAULTS` at
    their defaults, so that checkpoints and results written before those keys existed still match."""
    plain = json.loads(json.dumps(config))
    for key, default in ADDED_CONFIG_DEFAULTS.items():
        if plain.get(key, default) == default:
            plain.pop(key, None)
    preset = plain.get("preset")
    if isinstance(preset, dict):
        for key, default in ADDED_PRESET_DEFAULTS.items():
            if preset.get(key, default) == default:
                preset.pop(key, None)
    return plain


def reset_learners(control: Agent, main: Agent, learner_state: Mapping[str, Any]) -> None:
    """The reset control at FF2's start: ``control``, a copy of ``main``'s learners built on the same
    schedule, takes the main run's whole state (its envs where the schedule stands, its random
    streams) and then the ``learner_state`` it kept at NF1's start
    (:class:`agents.interface.Resettable`): the learners as they were after pretraining, with no memory
    of NF1, FF1 or NF2, living FF2 as the main run does."""
    control.load_state_dict(main.state_dict())
    control.load_learner_state(copy.deepcopy(learner_state))


def _check_resettable(agent: Agent) -> None:
    missing = [name for name in ("learner_state", "load_learner_state") if not callable(getattr(agent, name, None))]
    if missing:
        raise ValueError(
            f"{type(agent).__name__} has no {' / '.join(missing)}: the reset control (--control reset) restores the "
            "learner state of NF1's start at FF2's start; offer agents.interface.Resettable's two methods "
            "(weights and optimiser state out and back in)"
        )


def _resume(checkpoint: Path, config: dict, agents: Mapping[str, Agent]) -> RunState:
    """The run state of a checkpoint, its learners loaded into ``agents`` (by their checkpoint keys,
    :func:`_save_checkpoint`)."""
    saved = load_checkpoint(checkpoint)
    if not isinstance(saved, dict) or not {"config", "agent", "batch", "deviations", "snapshots"} <= saved.keys():
        raise ValueError(f"{checkpoint} is not a savings-gym run checkpoint (keys missing); delete it to start over")
    differences = config_differences(comparable(saved["config"]), comparable(config))
    if differences:
        raise ValueError(
            f"{checkpoint} belongs to another run: {differences}. To continue that run, run its own command "
            f"(with the learner's source as it was); to start this one, use another --out or delete {checkpoint}"
        )
    try:
        for key, agent in agents.items():
            agent.load_state_dict(saved[key])
        # a checkpoint from before reach quality was recorded resumes without it (None), not with a part
        reach = saved.get("reach") if "reach" in saved or saved["batch"] == 0 else None
        return RunState(
            saved["batch"],
            saved["deviations"],
            saved["snapshots"],
            saved.get("competence"),
            reach,
            saved.get("adaptation", {}),
            saved.get("reset_from"),
        )
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
        raise ValueError(
            f"{checkpoint} does not fit this run's learners ({type(error).__name__}: {str(error)[:200]}); "
            "delete it to start over"
        ) from error


def config_differences(old: Any, new: Any, limit: int = 4) -> str:
    """The fields where two run configs differ, dotted (``learner.source_sha256``), each with its two
    values (was, now; cut short), at most ``limit`` of them; empty when the configs are equal."""

    def walk(a: Any, b: Any, where: str) -> list[str]:
        if isinstance(a, dict) and isinstance(b, dict):
            keys = sorted(a.keys() | b.keys(), key=str)
            return [d for k in keys for d in walk(a.get(k, _ABSENT), b.get(k, _ABSENT), f"{where}.{k}".lstrip("."))]
        return [] if a == b else [f"{where or 'config'} (was {_cut(a)}, now {_cut(b)})"]

    found = walk(old, new, "")
    shown = "; ".join(found[:limit]) + (f"; and {len(found) - limit} more" if len(found) > limit else "")
    if any(d.startswith("learner.source_sha256 ") for d in found):
        shown += " (the learner's source file changed)"
    return f"differs in {shown}" if found else ""


_ABSENT = object()


def _cut(value: Any, limit: int = 40) -> str:
    text = "absent" if value is _ABSENT else json.dumps(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _finished_result(out: Path, config: dict) -> dict | None:
    """The result of the finished run in ``out`` if it is this run (same config), else None when
    there is none; refuses a finished run of another config (its phase_ends/ would be mixed up)."""
    path = out / "result.json"
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text())
        recorded = result["config"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a savings-gym result ({error!r}); use another --out") from None
    differences = config_differences(comparable(recorded), comparable(config))
    if differences:
        raise ValueError(
            f"{out} holds a finished run of another config: {differences}. Use another --out for this one "
            f"(or delete {out}: its result.json and phase_ends/ are that run's)"
        )
    print(f"the run in {out} is complete ({path}); nothing to do. To run it again, use another --out")
    return result


def evaluate_then_train(
    agent: Agent, field_gain: float, channel: bool = False, episodes: int = PAPER_BATCH_SIZE
) -> ReachRecord:
    """One point of the learning curve and one update: the test reaches under ``field_gain`` (in the
    error-clamp channel when ``channel``), then ``episodes`` training episodes per learner
    (``train(episodes)``; 8: a batch). An agent that can do both from the same weights in one pass
    offers ``evaluate_then_train`` (:class:`agents.bptt.BPTTAgent` does), used for other than 8
    episodes only when it takes an ``episodes`` keyword; others are asked in turn.

    Raises:
        ValueError: for ``channel`` with an agent whose ``evaluate`` takes no ``channel`` keyword or
            whose record has no ``hand_velocity`` (the adaptation index needs both).
    """
    if channel and "channel" not in inspect.signature(agent.evaluate).parameters:
        raise ValueError(
            f"{type(agent).__name__}.evaluate takes no channel keyword: a paradigm with channel trials "
            "needs test reaches in the channel (evaluate(0.0, channel=True), e.g. through "
            "agents.interface.run_test_reaches(..., channel=True))"
        )
    both = getattr(agent, "evaluate_then_train", None)
    takes = set() if both is None else set(inspect.signature(both).parameters)
    fits = (not channel or "channel" in takes) and (episodes == PAPER_BATCH_SIZE or "episodes" in takes)
    if both is not None and fits:
        extra = ({"channel": True} if channel else {}) | ({"episodes": episodes} if "episodes" in takes else {})
        record = both(field_gain, **extra)
    else:
        record = agent.evaluate(field_gain, channel=True) if channel else agent.evaluate(field_gain)
        agent.train(episodes)
    if channel and record.hand_velocity is None:
        raise ValueError(f"{type(agent).__name__}.evaluate(channel=True) recorded no hand_velocity")
    return record


def _channel_index(record: ReachRecord, params: Any, reference_gain: float) -> np.ndarray:
    """(K,) mean over the test reaches of their adaptation index against field A (``reference_gain``),
    from the step the channel acts (go time + go-cue delay, as the field) to the end."""
    onset = int(math.ceil((params.test_go_time + params.go_cue_delay) / params.dt))
    index = channel_adaptation_index(
        record.hand_position,
        record.hand_velocity,
        start_hand_position(params),
        record.target,
        reference_gain,
        params.channel_stiffness,
        params.channel_damping,
        first_step=onset,
    )
    return np.nanmean(index, axis=-1)


PHASE_ENDS = "phase_ends"


def _save_phase_ends(out: Path, schedule: Schedule, agent: Agent, episodes: int) -> None:
    """The learners as each phase ends (a phase of no batches ends where it starts), for analyses
    such as ``savings-gym latent``, once they have trained ``episodes`` episodes each; written once,
    atomically, in ``out/phase_ends/<phase>.pt``."""
    for phase in schedule.phases:
        if phase.n_episodes is None:
            continue
        end = schedule.start_of(phase.name) + phase.n_episodes
        path = out / PHASE_ENDS / f"{phase.name}.pt"
        if episodes >= end and not path.exists():
            atomic_torch_save(agent.state_dict(), path)


def _keep_snapshot(state: RunState, schedule: Schedule, phase: str, record: ReachRecord, reaches: int) -> None:
    done = len(state.deviations[phase])
    n = next(p.n_episodes for p in schedule.phases if p.name == phase) // reaches
    for label, snap_phase, which in SNAPSHOTS:
        if snap_phase == phase and done - 1 == (which % n):
            state.snapshots[label] = {"hand_position": record.hand_position.tolist(), "target": record.target.tolist()}


def _save_checkpoint(path: Path, config: dict, agents: Mapping[str, Agent], state: RunState) -> None:
    """Writes the run's state and every agent's (``agent``: the main run's; ``control``: the practice
    control's; ``reset_control``)."""
    saved = {
        "config": json.loads(json.dumps(config)),
        **{key: agent.state_dict() for key, agent in agents.items()},
        "batch": state.batch,
        "deviations": state.deviations,
        "snapshots": state.snapshots,
        "competence": state.competence,
        "reach": state.reach,
        "adaptation": state.adaptation,
    }
    if state.reset_from is not None:
        saved["reset_from"] = state.reset_from
    atomic_torch_save(saved, path)


def make_result(
    config: dict,
    curves: dict[str, np.ndarray],
    seconds: float,
    submission: dict | None = None,
    command: str | None = None,
    competence: dict[str, Any] | None = None,
    reach_curves: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    reach_distance: float | None = None,
    adaptation: Mapping[str, np.ndarray] | None = None,
) -> dict:
    """The self-describing result of a run (the leaderboard's submission format, version 1).

    Args:
        config: how the run was made; must hold ``agent``, ``networks``, ``seed``, ``env_id``, ``preset``.
        curves: phase -> (K, batches) mean signed lateral deviation per network and batch (m).
        seconds: wall time of this session of the run.
        submission: leaderboard metadata (``name``, ``description``, ``link``, ``code_version``);
            defaults are derived from the config.
        command: the command line that made the run (of the session that finished it), if known.
        competence: the competence gate's measurements (:func:`measure_competence`); the metrics
            are then over the competent networks only. None: not measured.
        reach_curves: phase -> ``{"endpoint_error", "path_length"}`` -> (K, batches) (m), the reach
            quality of every curve point; with ``competence`` and ``reach_distance``, the metrics
            are also only over the networks whose reach held (:func:`benchmarks.savings.metrics.reach_held`).
        reach_distance: the test reaches' start-to-target distance (m).
        adaptation: channel phase -> (K, batches) adaptation index of the channel test reaches.

    A run of a paradigm beyond A-B-A (phases other than :data:`PHASES`, or an adaptation index)
    also gets ``adaptation_index`` and ``paradigm_metrics``
    (:func:`benchmarks.savings.metrics.paradigm_metrics`); its ``metrics`` (the savings of FF2 against FF1)
    are empty.
    """
    name = f"{config['agent']}-{config['hidden']}" if config.get("hidden") else str(config["agent"])
    meta = {"name": name, "description": "", "link": "", "code_version": code_version()} | (submission or {})
    held = reach = None
    if reach_curves is not None and competence is not None and reach_distance is not None:
        stored = {
            phase: {key: np.round(np.asarray(rows[key], np.float64), REACH_DIGITS) for key in REACH_KEYS}
            for phase, rows in reach_curves.items()
        }
        verdict = reach_held(stored, competence["per_network"]["endpoint_error"], reach_distance)
        held = [bool(v) for v in verdict["held"]]
        reach = {
            "reach_curves": {p: {k: v.tolist() for k, v in rows.items()} for p, rows in stored.items()},
            "reach_held": {
                "criterion": reach_criterion(reach_distance),
                "per_network": {"held": held, "collapsed_in": verdict["collapsed_in"]},
            },
        }
    gate = None if competence is None else competence["per_network"]["competent"]
    included = gate if held is None else [g and h for g, h in zip(gate, held, strict=True)]
    paradigm = adaptation is not None or bool(set(curves) - set(PHASES) - set(PRACTICE_PHASES) - {RESET_PHASE})
    ramped = config.get("env_id") == "ArmCurlFieldGradual-v0"
    paradigm = paradigm or ramped
    extra = {}
    if paradigm:
        extra = {
            "adaptation_index": {p: np.asarray(a).tolist() for p, a in (adaptation or {}).items()},
            "paradigm_metrics": paradigm_metrics(curves, adaptation, competence=included),
        }
    preset = config.get("preset")
    reaches = preset.get("reaches_per_update", PAPER_BATCH_SIZE) if isinstance(preset, dict) else PAPER_BATCH_SIZE
    steps = (config.get("task") or {}).get("trial_steps", TRIAL_STEPS)
    result = {
        "format": "savings-gym-result",
        "version": RESULT_VERSION,
        "submission": meta,
        "config": config,
        "versions": versions(),
        "seconds_this_session": seconds,
        "command": command,
        "units": dict(RESULT_UNITS),  # a copy: a result changed later must not change the constant
        "updates": updates_block(curves, reaches, steps),
        "learning_curves": {p: np.asarray(c).tolist() for p, c in curves.items()},  # phase -> [network][batch]
        "competence": competence,
        **(reach or {}),
        **extra,
    }
    # a gradual FF1 ramps up from k = 0: no exponential to fit, so no savings of FF2 against it
    fitted = {"FF1", "FF2"} <= set(curves) and not ramped
    result["metrics"] = savings(curves, competence=gate, reach=held) if fitted else {}
    return result


def updates_block(curves: Mapping[str, np.ndarray], reaches_per_update: int, steps_per_reach: int) -> dict[str, Any]:
    """A result's ``updates``: its phases in both units, curve points (updates) and training
    experience per learner (reaches, env steps); ``reaches_per_update`` 8 is one batch per update."""
    per_phase = {}
    for phase, curve in curves.items():
        n = int(np.shape(curve)[-1]) if np.ndim(curve) else 0
        per_phase[phase] = {
            "updates": n,
            "reaches": n * reaches_per_update,
            "env_steps": n * reaches_per_update * steps_per_reach,
        }
    return {
        "reaches_per_update": int(reaches_per_update),
        "steps_per_reach": int(steps_per_reach),
        "env_steps_per_update": int(reaches_per_update * steps_per_reach),
        "per_phase": per_phase,
    }


def reach_criterion(reach_distance: float) -> dict[str, float]:
    """The numbers of :func:`benchmarks.savings.metrics.reach_held`'s criterion, as a result file records them."""
    return {
        "window_batches": COLLAPSE_WINDOW,
        "max_endpoint_error_factor": COLLAPSE_ENDPOINT_FACTOR,
        "max_endpoint_error_floor_m": COLLAPSE_MIN_ENDPOINT_ERROR,
        "min_path_fraction": COLLAPSE_MIN_PATH_FRACTION,
        "reach_distance_m": float(reach_distance),
    }


def code_version() -> str:
    """The package version and, in a git checkout, the commit."""
    import subprocess

    import savings_gym

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return savings_gym.__version__ + (f"+{commit}" if commit else "")


def write_result(out: Path, result: dict, state: RunState) -> None:
    """Writes result.json, curves.npz and the figures, each atomically."""
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{p: np.asarray(d).transpose(1, 0, 2) for p, d in state.deviations.items() if d})
    atomic_write_bytes(out / "curves.npz", buffer.getvalue())
    from benchmarks.savings.figures import write_figures

    write_figures(out / "figures", result, state.snapshots)
    atomic_write_json(out / "result.json", result)


def _progress(total: int, start: int, enabled: bool, unit: str = "batches") -> Callable[[int, str, float], None]:
    """A one-line progress bar on a terminal; a line every 5% of the run elsewhere (logs); ``total``
    and the rate count ``unit`` (updates: curve points)."""
    import sys

    began, first, tty = time.time(), start, sys.stdout.isatty()
    one = {"batches": "batch", "updates": "update"}.get(unit, unit)
    every = max(1, -(-total // 20))  # at most 20 lines in a log, however short the run

    def update(done: int, phase: str, deviation: float) -> None:
        if not enabled or (not tty and done % every and done != total):
            return
        rate = (done - first) / max(time.time() - began, 1e-9)
        eta = (total - done) / rate if rate > 0 else float("nan")
        filled = int(30 * done / total)
        line = (
            f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {unit}  {phase}  "
            f"deviation {deviation * 100:+.2f} cm  {rate:.2f} {one}/s  eta {eta:.0f} s"
        )
        print("\r" + line if tty else line, end="" if tty and done < total else "\n", flush=True)

    return update
