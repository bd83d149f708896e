"""The hidden schedule: which force field each episode of an experiment is played in.

A :class:`Schedule` is an ordered list of :class:`Phase` objects, each a name, a curl-field gain
and a number of episodes. Episode ``i`` of a run (counted from 0, per world) is played in the
phase that holds it; after the last phase ends its field stays on. Environments count the
episodes themselves and never show the phase or the gain to the agent.

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
from dataclasses import dataclass

import numpy as np

from savings_gym.field import MAX_FIELD_GAIN

# The paper's adaptation phases: (name, curl gain in N*s/m, batches of 8 reaches).
PAPER_GAIN = 8.0
PAPER_BATCHES = {"NF1": 10001, "FF1": 3201, "NF2": 10001, "FF2": 3201}
PAPER_BATCH_SIZE = 8
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,31}$")


@dataclass(frozen=True)
class Phase:
    """One phase of a schedule.

    Attributes:
        name: a short label such as ``"FF1"`` (a letter, then letters, digits, ``_`` or ``-``).
        field_gain: curl-field gain k (N*s/m); 0 is the null field.
        n_episodes: episodes in the phase; ``None`` (last phase only) means it never ends.
    """

    name: str
    field_gain: float
    n_episodes: int | None

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


MAX_PHASE_EPISODES = 2**40
"""Most episodes a phase may hold: ~1e12, 10^6 times the paper's protocol, and far enough below
2**63 that the phases' running totals never overflow the int64 arrays they are compared in
(``2**63`` episodes once wrapped round to a negative total and started the arm in FF2)."""


class Schedule:
    """An ordered, immutable sequence of phases.

    Args:
        phases: :class:`Phase` objects or ``(name, field_gain, n_episodes)`` tuples, in order.

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
        counts = [p.n_episodes for p in parsed[:-1]]
        self._starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]) if counts else np.zeros(1, np.int64)

    @property
    def names(self) -> tuple[str, ...]:
        """Phase names, in order."""
        return tuple(p.name for p in self.phases)

    @property
    def total_episodes(self) -> int | None:
        """Episodes until the last phase ends; ``None`` if it never does."""
        last = self.phases[-1].n_episodes
        return None if last is None else int(self._starts[-1]) + last

    def start_of(self, name: str) -> int:
        """Index of the first episode of phase ``name``."""
        return int(self._starts[self._index(name)])

    def phase_at(self, episode: int) -> Phase:
        """The phase that plays episode ``episode`` (0-based); the last phase once the schedule is over."""
        return self.phases[self._phase_index(episode)]

    def field_gains_at(self, episodes: np.ndarray) -> np.ndarray:
        """Curl gains (N*s/m) of a batch of episode indices, as float32."""
        episodes = np.asarray(episodes)
        gains = np.array([p.field_gain for p in self.phases], dtype=np.float32)
        return gains[np.searchsorted(self._starts, episodes, side="right") - 1]

    def with_episodes(self, overrides: Mapping[str, int | None]) -> Schedule:
        """A copy with the episode counts of the named phases replaced.

        Raises:
            ValueError: for a name that is not a phase of this schedule.
        """
        unknown = sorted(set(overrides) - set(self.names))
        if unknown:
            raise ValueError(f"unknown phase name(s) {unknown}; this schedule's phases are {list(self.names)}")
        return Schedule(Phase(p.name, p.field_gain, overrides.get(p.name, p.n_episodes)) for p in self.phases)

    def to_list(self) -> list[tuple[str, float, int | None]]:
        """The phases as plain ``(name, field_gain, n_episodes)`` tuples, e.g. for a result file."""
        return [(p.name, p.field_gain, p.n_episodes) for p in self.phases]

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
    counts = dict(PAPER_BATCHES)
    if batches:
        unknown = sorted(set(batches) - set(counts))
        if unknown:
            raise ValueError(f"unknown phase name(s) {unknown}; the paper's phases are {list(counts)}")
        counts.update(batches)
    return Schedule(
        (name, field_gain if name.startswith("FF") else 0.0, n * PAPER_BATCH_SIZE) for name, n in counts.items()
    )


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


def null_schedule() -> Schedule:
    """A single null-field phase that never ends (pretraining)."""
    return Schedule([("NF", 0.0, None)])


def as_schedule(schedule: Schedule | Iterable[Phase | tuple[str, float, int | None]]) -> Schedule:
    """Accepts a :class:`Schedule` or anything its constructor takes."""
    return schedule if isinstance(schedule, Schedule) else Schedule(schedule)
