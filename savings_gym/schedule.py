"""The hidden schedule: which force field each episode of an experiment is played in.

A :class:`Schedule` is an ordered list of :class:`Phase` objects, each a name, a curl-field gain
and a number of episodes. Episode ``i`` of a run (counted from 0, per world) is played in the
phase that holds it; after the last phase ends its field stays on. Environments count the
episodes themselves and never show the phase or the gain to the agent.

Beyond a constant field, a phase may be a block of error-clamp (force-channel) trials
(``kind="channel"``), interleave channel trials among its field trials (``channel_every``), or
ramp its gain up gradually (``ramp_episodes``); an opposite field is a negative gain. The
paradigms built from these (spontaneous recovery, anterograde interference, gradual
introduction) are the functions at the end of this module, one home for every schedule.

>>> schedule = paper_schedule()
>>> [(p.name, p.field_gain, p.n_episodes) for p in schedule.phases]
[('NF1', 0.0, 80008), ('FF1', 8.0, 25608), ('NF2', 0.0, 80008), ('FF2', 8.0, 25608)]
>>> schedule.phase_at(80008).name
'FF1'
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from savings_gym.field import MAX_FIELD_GAIN

# The paper's adaptation phases: (name, curl gain in N*s/m, batches of 8 reaches).
PAPER_GAIN = 8.0
PAPER_BATCHES = {"NF1": 10001, "FF1": 3201, "NF2": 10001, "FF2": 3201}
PAPER_BATCH_SIZE = 8
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,31}$")


PHASE_KINDS = ("field", "channel")
"""What a phase plays: ``"field"`` trials (a curl field of the phase's gain, 0 the null field) or
``"channel"`` trials (error-clamp: a stiff spring-damper holds the hand on the start-target line
and the lateral force the arm pushes into it is measured; see :mod:`savings_gym.task`)."""


@dataclass(frozen=True)
class Phase:
    """One phase of a schedule.

    Attributes:
        name: a short label such as ``"FF1"`` (a letter, then letters, digits, ``_`` or ``-``).
        field_gain: curl-field gain k (N*s/m); 0 is the null field, a negative gain the opposite
            field (-A). A channel phase must have 0: its trials have no field.
        n_episodes: episodes in the phase; ``None`` (last phase only) means it never ends. With
            interleaved channel trials that do not count (``channel_counts=False``) it counts the
            field trials only, and the phase lasts :attr:`length` episodes.
        kind: one of :data:`PHASE_KINDS`: ``"field"`` (default) or ``"channel"`` (every trial an
            error-clamp trial).
        channel_every: 0 (default): no channel trials in a field phase; m >= 2: one trial in m is a
            channel trial, the phase's trials m-1, 2m-1, ... (counted from 0 in the phase).
        channel_counts: whether interleaved channel trials take up the phase's ``n_episodes``
            (True, default: n_episodes trials, 1 in m of them channels) or come on top of them
            (False: after every m-1 field trials one channel trial is inserted).
        ramp_episodes: 0 (default): the gain is ``field_gain`` from the first trial; r >= 1: the gain
            of the phase's j-th field trial is ``field_gain * min(1, (j + 1) / r)``, a linear ramp
            reaching full strength at trial r-1 (gradual introduction).
    """

    name: str
    field_gain: float
    n_episodes: int | None
    kind: str = "field"
    channel_every: int = 0
    channel_counts: bool = True
    ramp_episodes: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                f"phase name must be a letter followed by up to 31 letters, digits, '_' or '-', got {self.name!r}"
            )
        if isinstance(self.field_gain, bool) or not isinstance(self.field_gain, int | float | np.floating | np.integer):
            raise ValueError(f"phase {self.name!r}: field_gain must be a number (N*s/m), got {self.field_gain!r}")
        if not math.isfinite(self.field_gain) or abs(self.field_gain) > MAX_FIELD_GAIN:
            raise ValueError(
                f"phase {self.name!r}: field_gain must be finite and within +-{MAX_FIELD_GAIN} N*s/m, "
                f"got {self.field_gain!r}"
            )
        object.__setattr__(self, "field_gain", float(self.field_gain))
        if self.n_episodes is not None:
            if isinstance(self.n_episodes, bool) or not isinstance(self.n_episodes, int | np.integer):
                raise ValueError(f"phase {self.name!r}: n_episodes must be an integer or None, got {self.n_episodes!r}")
            if not 0 <= self.n_episodes <= MAX_PHASE_EPISODES:
                raise ValueError(
                    f"phase {self.name!r}: n_episodes must be >= 0 and <= 2**40, got {self.n_episodes} "
                    "(episode counts are summed in int64 arrays: larger ones overflow)"
                )
            object.__setattr__(self, "n_episodes", int(self.n_episodes))
        self._check_paradigm_options()

    def _check_paradigm_options(self) -> None:
        if self.kind not in PHASE_KINDS:
            raise ValueError(f"phase {self.name!r}: kind must be one of {list(PHASE_KINDS)}, got {self.kind!r}")
        for name in ("channel_every", "ramp_episodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"phase {self.name!r}: {name} must be an integer >= 0, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.channel_every == 1:
            raise ValueError(
                f"phase {self.name!r}: channel_every must be 0 (none) or >= 2 (one trial in m); "
                "for a phase of channel trials only, use kind='channel'"
            )
        if not isinstance(self.channel_counts, bool):
            raise ValueError(f"phase {self.name!r}: channel_counts must be True or False, got {self.channel_counts!r}")
        if self.kind == "channel":
            if self.field_gain != 0.0:
                raise ValueError(
                    f"phase {self.name!r}: a channel phase has no field, so field_gain must be 0.0, "
                    f"got {self.field_gain!r}"
                )
            if self.channel_every or self.ramp_episodes:
                raise ValueError(
                    f"phase {self.name!r}: channel_every and ramp_episodes apply to field phases, not kind='channel'"
                )

    @property
    def length(self) -> int | None:
        """Episodes the phase lasts: ``n_episodes``, plus the inserted channel trials when they do not
        count (one after every ``channel_every - 1`` field trials); ``None`` if it never ends."""
        if self.n_episodes is None or self.channel_counts or not self.channel_every:
            return self.n_episodes
        return self.n_episodes + self.n_episodes // (self.channel_every - 1)

    @property
    def plain(self) -> bool:
        """True for a constant-field phase with no channel trials (the paper's kind)."""
        return self.kind == "field" and not self.channel_every and not self.ramp_episodes

    def options(self) -> dict[str, Any]:
        """The paradigm options that differ from the defaults (``{}`` for a plain phase)."""
        defaults = {"kind": "field", "channel_every": 0, "channel_counts": True, "ramp_episodes": 0}
        return {key: getattr(self, key) for key, default in defaults.items() if getattr(self, key) != default}

    def gains_and_channels(self, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The curl gain (N*s/m, float32) and whether it is a channel trial (bool) of the phase's
        trials ``offsets`` (counted from 0 at the phase's start). Channel trials have gain 0."""
        offsets = np.asarray(offsets, dtype=np.int64)
        if self.kind == "channel":
            return np.zeros(offsets.shape, np.float32), np.ones(offsets.shape, bool)
        m = self.channel_every
        channel = (offsets % m == m - 1) if m else np.zeros(offsets.shape, bool)
        gain = np.full(offsets.shape, self.field_gain, np.float64)
        if self.ramp_episodes:
            field_trials = offsets - (offsets // m if m else 0)  # the field trials before this one
            gain = gain * np.minimum(1.0, (field_trials + 1) / self.ramp_episodes)
        return np.where(channel, 0.0, gain).astype(np.float32), channel


MAX_PHASE_EPISODES = 2**40
"""Most episodes a phase may hold: ~1e12, 10^6 times the paper's protocol, and far enough below
2**63 that the phases' running totals never overflow the int64 arrays they are compared in
(``2**63`` episodes once wrapped round to a negative total and started the arm in FF2)."""


def _phase_with_options(i: int, name: Any, field_gain: Any, n_episodes: Any, options: Any) -> Phase:
    allowed = ("kind", "channel_every", "channel_counts", "ramp_episodes")
    if not isinstance(options, Mapping):
        raise ValueError(f"schedule entry {i}: the fourth element must be a dict of phase options, got {options!r}")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"schedule entry {i}: unknown phase option(s) {unknown}; valid options are {list(allowed)}")
    return Phase(name, field_gain, n_episodes, **options)


class Schedule:
    """An ordered, immutable sequence of phases.

    Args:
        phases: :class:`Phase` objects or ``(name, field_gain, n_episodes)`` tuples, in order; a
            fourth element, a dict, sets the phase's paradigm options (``{"kind": "channel"}``,
            ``{"channel_every": 8}``, ``{"ramp_episodes": 800}``: see :class:`Phase`).

    Raises:
        ValueError: for an empty schedule, repeated names, a malformed phase, or an unbounded
            (``n_episodes=None``) phase that is not the last.
    """

    def __init__(self, phases: Iterable[Phase | tuple[str, float, int | None]]):
        parsed = []
        for i, phase in enumerate(phases):
            if isinstance(phase, Phase):
                parsed.append(phase)
            elif isinstance(phase, Sequence) and not isinstance(phase, str) and len(phase) == 3:
                parsed.append(Phase(*phase))
            elif isinstance(phase, Sequence) and not isinstance(phase, str) and len(phase) == 4:
                parsed.append(_phase_with_options(i, *phase))
            else:
                raise ValueError(
                    f"schedule entry {i} must be a Phase or a (name, field_gain, n_episodes) tuple, got {phase!r}"
                )
        if not parsed:
            raise ValueError("a schedule needs at least one phase")
        names = [p.name for p in parsed]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"phase names must be unique, repeated: {repeated}")
        for p in parsed[:-1]:
            if p.n_episodes is None:
                raise ValueError(f"only the last phase may have n_episodes=None, but {p.name!r} is not last")
        self.phases: tuple[Phase, ...] = tuple(parsed)
        counts = [p.length for p in parsed[:-1]]
        self._starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]) if counts else np.zeros(1, np.int64)

    @property
    def names(self) -> tuple[str, ...]:
        """Phase names, in order."""
        return tuple(p.name for p in self.phases)

    @property
    def total_episodes(self) -> int | None:
        """Episodes until the last phase ends; ``None`` if it never does."""
        last = self.phases[-1].length
        return None if last is None else int(self._starts[-1]) + last

    @property
    def has_channels(self) -> bool:
        """Whether any phase holds error-clamp (channel) trials."""
        return any(p.kind == "channel" or p.channel_every for p in self.phases)

    def start_of(self, name: str) -> int:
        """Index of the first episode of phase ``name``."""
        return int(self._starts[self._index(name)])

    def phase_at(self, episode: int) -> Phase:
        """The phase that plays episode ``episode`` (0-based); the last phase once the schedule is over."""
        return self.phases[self._phase_index(episode)]

    def end_of(self, name: str) -> int | None:
        """Index one past the last episode of phase ``name``; ``None`` for a phase that never ends."""
        length = self.phases[self._index(name)].length
        return None if length is None else self.start_of(name) + length

    def field_gains_at(self, episodes: np.ndarray) -> np.ndarray:
        """Curl gains (N*s/m) of a batch of episode indices, as float32 (0 on channel trials)."""
        return self.trials_at(episodes)[0]

    def channels_at(self, episodes: np.ndarray) -> np.ndarray:
        """Whether each of a batch of episode indices is an error-clamp (channel) trial, as bool."""
        return self.trials_at(episodes)[1]

    def trials_at(self, episodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The curl gain (N*s/m, float32) and the channel flag (bool) of a batch of episode indices."""
        episodes = np.asarray(episodes)
        index = np.searchsorted(self._starts, episodes, side="right") - 1
        if all(p.plain for p in self.phases):  # the paper's kind: one gain per phase
            gains = np.array([p.field_gain for p in self.phases], dtype=np.float32)
            return gains[index], np.zeros(episodes.shape, bool)
        gains, channels = np.zeros(episodes.shape, np.float32), np.zeros(episodes.shape, bool)
        for i in np.unique(index):
            where = index == i
            gains[where], channels[where] = self.phases[i].gains_and_channels(episodes[where] - self._starts[i])
        return gains, channels

    def with_episodes(self, overrides: Mapping[str, int | None]) -> Schedule:
        """A copy with the episode counts of the named phases replaced.

        Raises:
            ValueError: for a name that is not a phase of this schedule.
        """
        unknown = sorted(set(overrides) - set(self.names))
        if unknown:
            raise ValueError(f"unknown phase name(s) {unknown}; this schedule's phases are {list(self.names)}")
        return Schedule(replace(p, n_episodes=overrides.get(p.name, p.n_episodes)) for p in self.phases)

    def to_list(self) -> list[tuple]:
        """The phases as plain ``(name, field_gain, n_episodes)`` tuples, e.g. for a result file;
        a phase with paradigm options gets them as a fourth element (a dict), which the
        constructor reads back."""
        return [(p.name, p.field_gain, p.n_episodes) + ((p.options(),) if not p.plain else ()) for p in self.phases]

    def _index(self, name: str) -> int:
        if name not in self.names:
            raise ValueError(f"unknown phase name {name!r}; this schedule's phases are {list(self.names)}")
        return self.names.index(name)

    def _phase_index(self, episode: int) -> int:
        if episode < 0:
            raise ValueError(f"episode index must be >= 0, got {episode}")
        return int(np.searchsorted(self._starts, episode, side="right")) - 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Schedule) and self.phases == other.phases

    def __repr__(self) -> str:
        return f"Schedule({self.to_list()!r})"


def paper_schedule(field_gain: float = PAPER_GAIN, batches: Mapping[str, int] | None = None) -> Schedule:
    """The paper's NF1 -> FF1 -> NF2 -> FF2 schedule, in episodes (batches x 8 reaches).

    Args:
        field_gain: curl gain of the FF phases (N*s/m).
        batches: batch counts per phase name overriding the paper's 10001 / 3201 / 10001 / 3201.
    """
    counts = _counts(PAPER_BATCHES, batches, "the paper's")
    return Schedule(
        (name, field_gain if name.startswith("FF") else 0.0, n * PAPER_BATCH_SIZE) for name, n in counts.items()
    )


def _counts(defaults: Mapping[str, int], batches: Mapping[str, int] | None, whose: str) -> dict[str, int]:
    """``defaults`` (batches per phase name) updated by ``batches``, refusing names it lacks."""
    counts = dict(defaults)
    if batches:
        unknown = sorted(set(batches) - set(counts))
        if unknown:
            raise ValueError(f"unknown phase name(s) {unknown}; {whose} phases are {list(counts)}")
        counts.update(batches)
    return counts


PRACTICE_PHASES = ("NFC", "FFC")
"""The practice control's phases: null field for as many batches as NF1 + FF1 + NF2, then the field."""


def practice_control_schedule(field_gain: float = PAPER_GAIN, batches: Mapping[str, int] | None = None) -> Schedule:
    """The practice control of the paper's schedule: the same networks, the same number of batches,
    but null field through NF1 + FF1 + NF2 (``NFC``) and the field only for FF2's length (``FFC``).

    Its field phase starts after the same amount of centre-out practice as FF2 but with no earlier
    exposure to the field, so FF2 learning faster than FFC is savings that practice cannot explain.

    >>> practice_control_schedule(8.0, {"NF1": 1, "FF1": 2, "NF2": 3, "FF2": 4}).to_list()
    [('NFC', 0.0, 48), ('FFC', 8.0, 32)]
    """
    counts = paper_schedule(field_gain, batches)
    null, field = PRACTICE_PHASES
    episodes = {p.name: p.n_episodes for p in counts.phases}
    return Schedule(
        [(null, 0.0, episodes["NF1"] + episodes["FF1"] + episodes["NF2"]), (field, field_gain, episodes["FF2"])]
    )


# The paradigms beyond A-B-A (issue 21), in batches of 8 reaches like the paper's, so that a
# learner's budget per phase reads as the paper's. FF1 is field A (+k), FFB the opposite field
# -A, EC a block of error-clamp (channel) trials. Lengths not given by the paper are choices:
# FFB is a tenth of FF1, short as in Smith et al. 2006 (20 trials of -A after 384 of A), and
# a fixed schedule cannot stop -A "when the error is back to zero" (the schedule is decided in
# advance and hidden), so choose its length by measurement (``batches``) for a given learner.
SPONTANEOUS_RECOVERY_BATCHES = {"NF1": 10001, "FF1": 3201, "FFB": 320, "EC": 1000}
INTERFERENCE_BATCHES = {"NF1": 10001, "FF1": 3201, "FFB": 3201}
GRADUAL_RAMP_FRACTION = 0.75
"""The gradual paradigm's FF1 ramps its gain up over this fraction of its batches, then holds it."""


def spontaneous_recovery_schedule(
    field_gain: float = PAPER_GAIN, batches: Mapping[str, int] | None = None, channel_every: int = 0
) -> Schedule:
    """Spontaneous recovery (Smith, Ghazizadeh & Shadmehr 2006): NF1 (null) -> FF1 (field A, long) ->
    FFB (the opposite field -A, short) -> EC (error-clamp trials), in episodes (batches x 8).

    In the channel block no error drives learning, and a two-rate learner's adaptation index first
    follows the fast state's decay (towards -A's) and then rebounds towards A as the slow state shows.

    Args:
        field_gain: k of field A (N*s/m); FFB has -k.
        batches: batch counts per phase overriding :data:`SPONTANEOUS_RECOVERY_BATCHES`.
        channel_every: also interleave one channel trial in this many in NF1, FF1 and FFB (counted
            among their episodes); 0 (default): channel trials only in EC.

    >>> spontaneous_recovery_schedule(8.0, {"NF1": 1, "FF1": 2, "FFB": 1, "EC": 1}).to_list()
    [('NF1', 0.0, 8), ('FF1', 8.0, 16), ('FFB', -8.0, 8), ('EC', 0.0, 8, {'kind': 'channel'})]
    """
    counts = _counts(SPONTANEOUS_RECOVERY_BATCHES, batches, "the spontaneous-recovery paradigm's")
    gains = {"NF1": 0.0, "FF1": field_gain, "FFB": -field_gain}
    interleaved = {"channel_every": channel_every} if channel_every else {}
    phases = [(name, gain, counts[name] * PAPER_BATCH_SIZE, interleaved) for name, gain in gains.items()]
    return Schedule([*phases, ("EC", 0.0, counts["EC"] * PAPER_BATCH_SIZE, {"kind": "channel"})])


def interference_schedule(field_gain: float = PAPER_GAIN, batches: Mapping[str, int] | None = None) -> Schedule:
    """Anterograde interference: NF1 (null) -> FF1 (field A) -> FFB (the opposite field -A, no
    washout between), in episodes (batches x 8). FFB learnt slower than a naive learner learns
    a field is interference: a memory of A that opposes -A.

    >>> interference_schedule(8.0, {"NF1": 1, "FF1": 2, "FFB": 3}).to_list()
    [('NF1', 0.0, 8), ('FF1', 8.0, 16), ('FFB', -8.0, 24)]
    """
    counts = _counts(INTERFERENCE_BATCHES, batches, "the interference paradigm's")
    gains = {"NF1": 0.0, "FF1": field_gain, "FFB": -field_gain}
    return Schedule((name, gain, counts[name] * PAPER_BATCH_SIZE) for name, gain in gains.items())


def gradual_schedule(
    field_gain: float = PAPER_GAIN, batches: Mapping[str, int] | None = None, ramp_batches: int | None = None
) -> Schedule:
    """Gradual introduction: the paper's NF1 -> FF1 -> NF2 -> FF2 with FF1's gain ramped linearly
    from 0 up to ``field_gain`` over ``ramp_batches`` batches, then held; FF2 comes abruptly. Compare
    with :func:`paper_schedule` of the same lengths (the abrupt version): NF2's first batches show
    the after-effect, FF2 the savings.

    Args:
        field_gain: k at full strength (N*s/m).
        batches: batch counts per phase overriding the paper's.
        ramp_batches: batches the ramp lasts (default: :data:`GRADUAL_RAMP_FRACTION` of FF1, at
            least 1); must not exceed FF1.

    >>> gradual_schedule(8.0, {"NF1": 1, "FF1": 4, "NF2": 1, "FF2": 1}, ramp_batches=2).to_list()[1]
    ('FF1', 8.0, 32, {'ramp_episodes': 16})
    """
    counts = _counts(PAPER_BATCHES, batches, "the gradual paradigm's")
    if ramp_batches is None:
        ramp_batches = max(1, round(GRADUAL_RAMP_FRACTION * counts["FF1"]))
    if isinstance(ramp_batches, bool) or not isinstance(ramp_batches, int) or ramp_batches < 1:
        raise ValueError(f"ramp_batches must be an integer >= 1, got {ramp_batches!r}")
    if ramp_batches > max(counts["FF1"], 1):
        raise ValueError(f"ramp_batches={ramp_batches} is longer than FF1 ({counts['FF1']} batches)")
    abrupt = paper_schedule(field_gain, counts)
    ramp = {"ramp_episodes": ramp_batches * PAPER_BATCH_SIZE}
    return Schedule(replace(p, **ramp) if p.name == "FF1" else p for p in abrupt.phases)


def null_schedule() -> Schedule:
    """A single null-field phase that never ends (pretraining)."""
    return Schedule([("NF", 0.0, None)])


def as_schedule(schedule: Schedule | Iterable[Phase | tuple[str, float, int | None]]) -> Schedule:
    """Accepts a :class:`Schedule` or anything its constructor takes."""
    return schedule if isinstance(schedule, Schedule) else Schedule(schedule)
