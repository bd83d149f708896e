"""The paradigms beyond A-B-A (issue 21): their registered ids and schedules on the real arm.

The conformance checks (Gymnasium and SB3 checkers, seeding, phase hidden, registration) run on
every registered id in tests/test_envs.py; here: what each paradigm's schedule plays."""

import gymnasium as gym
import numpy as np
import pytest

import savings_gym
from savings_gym.differentiable import make_differentiable
from savings_gym.envs import default_schedule
from savings_gym.schedule import (
    gradual_schedule,
    interference_schedule,
    paper_schedule,
    spontaneous_recovery_schedule,
)
from savings_gym.testing import check_vector_matches_single


def _live(env, episodes: int) -> list[tuple[str, float, bool, float]]:
    """(phase, k, channel trial, largest channel force) of each of ``episodes`` training episodes."""
    seen = []
    env.reset(seed=0, options={"trials": {"catch": False}})
    for _ in range(episodes):
        u = env.unwrapped
        phase, gain, channel = u.phase, u.field_gain, bool(u.channel_trials[0])
        force = 0.0
        for t in range(100):
            env.step(np.full(6, 0.05 + 0.04 * np.sin(t / 5 + np.arange(6)), np.float32))
            force = max(force, float(np.abs(u.channel_force).max()))
        seen.append((phase, gain, channel, force))
        env.reset(options={"trials": {"catch": False}})
    return seen


def test_the_paradigm_ids_are_registered_with_their_schedules():
    assert set(savings_gym.PARADIGM_IDS) <= set(savings_gym.ENV_IDS)
    assert default_schedule("ArmCurlFieldSpontaneousRecovery-v0") == spontaneous_recovery_schedule()
    assert default_schedule("ArmCurlFieldInterference-v0", 4.0) == interference_schedule(4.0)
    assert default_schedule("ArmCurlFieldGradual-v0") == gradual_schedule()
    assert default_schedule("ArmCurlField-v0") == paper_schedule()
    assert gym.make("ArmCurlFieldInterference-v0", field_gain=5.0).unwrapped.schedule.to_list()[2][1] == -5.0
    with pytest.raises(ValueError, match="env_id must be one of"):
        default_schedule("ArmCurlFieldSavings-v9")


def test_spontaneous_recovery_plays_a_then_minus_a_then_channel_trials():
    env = gym.make("ArmCurlFieldSpontaneousRecovery-v0", phase_episodes={"NF1": 1, "FF1": 2, "FFB": 1, "EC": 2})
    seen = _live(env, 6)
    assert [(p, k, c) for p, k, c, _ in seen] == [
        ("NF1", 0.0, False),
        ("FF1", 8.0, False),
        ("FF1", 8.0, False),
        ("FFB", -8.0, False),
        ("EC", 0.0, True),
        ("EC", 0.0, True),
    ]
    forces = [f for *_, f in seen]
    assert max(forces[:4]) == 0.0 and min(forces[4:]) > 0.1  # the channel pushes back in EC only


def test_interference_goes_from_a_to_minus_a_without_washout():
    env = gym.make_vec(
        "ArmCurlFieldInterference-v0",
        num_envs=2,
        vectorization_mode="vector_entry_point",
        phase_episodes={"NF1": 2, "FF1": 2, "FFB": 2},
    )
    env.reset(seed=0)
    gains = []
    for _ in range(3):
        gains.append(env.unwrapped.field_gains.tolist())
        for _ in range(101):  # 100 steps and the NEXT_STEP autoreset
            env.step(np.full((2, 6), 0.05, np.float32))
    assert gains == [[0.0, 0.0], [8.0, 8.0], [-8.0, -8.0]]


def test_gradual_ramps_the_field_up_then_holds_and_ff2_is_abrupt():
    schedule = gradual_schedule(8.0, {"NF1": 1, "FF1": 4, "NF2": 1, "FF2": 1}, ramp_batches=2)
    gains = schedule.field_gains_at(np.arange(56))
    np.testing.assert_allclose(gains[8:24], 8.0 * np.arange(1, 17) / 16, rtol=1e-6)  # the ramp over 16 episodes
    assert np.all(gains[24:40] == 8.0) and np.all(gains[40:48] == 0.0) and np.all(gains[48:] == 8.0)
    # the abrupt version: same phases and lengths, no ramp
    assert [p.n_episodes for p in schedule.phases] == [
        p.n_episodes for p in paper_schedule(8.0, {"NF1": 1, "FF1": 4, "NF2": 1, "FF2": 1}).phases
    ]
    env = make_differentiable("ArmCurlFieldGradual-v0", num_envs=4, phase_episodes={"NF1": 0}, differentiable=False)
    env.reset(seed=0)
    np.testing.assert_allclose(env.field_gains, 8.0 * np.arange(1, 5) / 19208, rtol=1e-5)
    with pytest.raises(ValueError, match="ramp_batches=5 is longer than FF1"):
        gradual_schedule(batches={"FF1": 4}, ramp_batches=5)
    with pytest.raises(ValueError, match="ramp_batches must be an integer >= 1"):
        gradual_schedule(ramp_batches=0)


@pytest.mark.parametrize("env_id", savings_gym.PARADIGM_IDS)
def test_vector_arms_live_like_single_envs(env_id):
    # phases of 3 episodes: each arm of 3 meets the same field as its single env in every phase
    episodes = {p.name: 3 for p in default_schedule(env_id).phases}
    check_vector_matches_single(env_id, num_envs=1, n_steps=150, phase_episodes=episodes)


def test_paradigm_builders_refuse_unknown_phases():
    with pytest.raises(ValueError, match=r"unknown phase name\(s\) \['NF2'\]"):
        spontaneous_recovery_schedule(batches={"NF2": 3})
    with pytest.raises(ValueError, match="unknown phase name"):
        gym.make("ArmCurlFieldInterference-v0", phase_episodes={"FF2": 3})
