import numpy as np
import pytest

from savings_gym.schedule import PAPER_BATCHES, Phase, Schedule, null_schedule, paper_schedule


def test_paper_schedule_is_the_papers_batches_times_eight():
    schedule = paper_schedule()
    assert schedule.to_list() == [("NF1", 0.0, 80008), ("FF1", 8.0, 25608), ("NF2", 0.0, 80008), ("FF2", 8.0, 25608)]
    assert schedule.total_episodes == 8 * sum(PAPER_BATCHES.values())


def test_phase_boundaries():
    schedule = Schedule([("A", 0.0, 3), ("B", 8.0, 2), ("C", -4.0, 1)])
    names = [schedule.phase_at(i).name for i in range(8)]
    assert names == ["A", "A", "A", "B", "B", "C", "C", "C"]  # the last phase holds after its end
    np.testing.assert_array_equal(schedule.field_gains_at(np.arange(8)), [0, 0, 0, 8, 8, -4, -4, -4])
    assert schedule.start_of("B") == 3 and schedule.total_episodes == 6


def test_zero_length_phases_are_skipped_and_none_never_ends():
    schedule = Schedule([("A", 0.0, 0), ("B", 8.0, 2), ("C", 0.0, None)])
    assert schedule.phase_at(0).name == "B"
    assert schedule.phase_at(10**12).name == "C"
    assert schedule.total_episodes is None
    assert null_schedule().phase_at(10**9).field_gain == 0.0


def test_with_episodes_overrides_counts_by_name():
    schedule = paper_schedule().with_episodes({"NF1": 16, "FF1": 8})
    assert schedule.to_list()[:2] == [("NF1", 0.0, 16), ("FF1", 8.0, 8)]
    assert paper_schedule(4.0, batches={"FF2": 1}).to_list()[3] == ("FF2", 4.0, 8)


@pytest.mark.parametrize(
    "phases, message",
    [
        ([], "at least one phase"),
        ([("A", 0.0, -1)], ">= 0"),
        ([("A", 0.0, 1.5)], "integer"),
        ([("A", "8", 1)], "number"),
        ([("A", float("nan"), 1)], "finite"),
        ([("A", 1000.0, 1)], "within"),
        ([("A", 0.0, 1), ("A", 8.0, 1)], "unique"),
        ([("A", 0.0, None), ("B", 8.0, 1)], "only the last"),
        ([("", 0.0, 1)], "phase name"),
        ([("FF 1", 0.0, 1)], "phase name"),
        ([("A", 0.0)], "tuple"),
    ],
)
def test_invalid_schedules_fail_with_a_clear_message(phases, message):
    with pytest.raises(ValueError, match=message):
        Schedule(phases)


def test_unknown_phase_names_are_rejected():
    with pytest.raises(ValueError, match=r"unknown phase name.*'FF3'"):
        paper_schedule().with_episodes({"FF3": 10})
    with pytest.raises(ValueError, match="unknown phase name"):
        paper_schedule(batches={"NF3": 1})
    with pytest.raises(ValueError, match="unknown phase name"):
        paper_schedule().start_of("XX")


def test_phase_objects_and_tuples_are_equivalent():
    assert Schedule([Phase("A", 0, 2)]) == Schedule([("A", 0.0, 2)])
    with pytest.raises(ValueError, match=">= 0"):
        paper_schedule().phase_at(-1)


def test_episode_counts_that_would_overflow_are_refused():
    from savings_gym.schedule import paper_schedule

    with pytest.raises(ValueError, match="n_episodes must be >= 0 and <= 2"):
        paper_schedule(8.0, {"NF1": 2**63})
