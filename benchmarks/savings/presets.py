"""The protocol's phases and presets: how many batches each phase lasts, how many reaches an update
takes, the learning rates, and what a result file's numbers are in (:data:`RESULT_UNITS`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from savings_gym.schedule import (
    PAPER_BATCH_SIZE,
    Schedule,
    paper_schedule,
    practice_control_schedule,
)

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
