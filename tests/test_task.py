"""The task as SPEC.md states it: geometry, delays, go cue, catch trials, field, reward."""

import gymnasium as gym
import numpy as np
import pytest
from helpers import run_episode, wandering_action

import savings_gym  # noqa: F401  (registers the ids)
from savings_gym.arm import ArmParams, hand_kinematics, make_effector, muscle_geometry
from savings_gym.backend import NUMPY
from savings_gym.task import OBSERVATION_LAYOUT, TaskParams, centre_out_targets

QUIET = {"action_noise": 0.0, "proprioception_noise": 0.0, "vision_noise": 0.0}


def test_test_targets_are_8_directions_10_cm_from_the_start():
    params = TaskParams()
    targets = centre_out_targets(params)
    arm = ArmParams.from_effector(make_effector())
    start = hand_kinematics(arm, NUMPY, np.array([[1.047, 1.570, 0, 0]], np.float32))[0, :2]
    offsets = targets - start
    np.testing.assert_allclose(np.linalg.norm(offsets, axis=1), 0.10, atol=1e-6)
    angles = np.rad2deg(np.arctan2(offsets[:, 1], offsets[:, 0])) % 360
    np.testing.assert_allclose(angles, np.arange(0, 360, 45), atol=1e-3)


def test_test_reach_starts_at_rest_at_the_fixed_posture():
    env = gym.make("ArmCurlField-v0")
    _, info = env.reset(seed=0, options={"mode": "test", "target": 3})
    np.testing.assert_allclose(env.unwrapped.state.arm.joint[0], [1.047, 1.570, 0, 0], atol=1e-6)
    np.testing.assert_allclose(info["hand_velocity"], 0.0)
    np.testing.assert_allclose(env.unwrapped.state.target[0], centre_out_targets(TaskParams())[3])


def test_delays_are_exactly_7_and_2_steps():
    env = gym.make("ArmCurlField-v0", **QUIET)
    arm = env.unwrapped._world.task.arm
    state_lengths = []

    def record_lengths(env, t):
        state_lengths.append(env.unwrapped.state.arm.muscle_length[0] / arm.l0_ce[0])
        return wandering_action(env, t)

    obs, infos, _, _ = run_episode(env, options={"mode": "test", "target": 1}, policy=record_lengths)
    state_lengths.append(env.unwrapped.state.arm.muscle_length[0] / arm.l0_ce[0])
    hands = np.array([i["hand_position"] for i in infos])
    state_lengths = np.array(state_lengths)
    for t in range(len(obs)):
        np.testing.assert_array_equal(obs[t, 0:2], hands[max(t - 7, 0)])
        np.testing.assert_allclose(obs[t, 2:8], state_lengths[max(t - 2, 0)], rtol=1e-6)
    assert np.abs(hands[60] - hands[0]).max() > 0.01, "the test needs a moving hand"


def test_go_cue_and_field_onsets_at_test_go_time():
    """Go time 0.10 s + 70 ms: the field force is computed from step 17 on (acting from step 18)
    and the cue input shows from step 18, as in the paper's code."""
    env = gym.make("ArmCurlField-v0", **QUIET)
    obs, infos, _, loads = run_episode(env, 40, {"mode": "test", "target": 0, "field_gain": 8.0})
    cue = obs[:, 16]
    assert (cue[:18] == 0).all() and (cue[18:] == 1).all()
    assert (loads[:17] == 0).all() and np.abs(loads[17]).max() > 0
    desired = np.array([i["desired_position"] for i in infos])
    np.testing.assert_array_equal(desired[:18], np.repeat(desired[:1], 18, 0))
    np.testing.assert_allclose(desired[18:], np.repeat(obs[:1, 14:16], len(desired) - 18, 0))


def test_field_force_equals_the_curl_formula():
    k = 8.0
    env = gym.make("ArmCurlField-v0", schedule=[("FF", k, None)])
    _, infos, _, loads = run_episode(env, options={"trials": {"catch": False, "go_time": 0.15}})
    velocity = np.array([i["hand_velocity"] for i in infos])
    onset = round((0.15 + 0.07) / 0.01)
    expected = k * np.stack([velocity[:, 1], -velocity[:, 0]], 1)
    np.testing.assert_allclose(loads[onset:], expected[onset:], rtol=1e-6, atol=1e-7)
    assert (loads[: onset - 1] == 0).all()
    assert np.abs(loads[onset:]).max() > 0.05


def test_catch_trials_never_move_the_target_nor_switch_on_the_field():
    env = gym.make("ArmCurlField-v0", schedule=[("FF", 8.0, None)])
    obs, infos, _, loads = run_episode(env, options={"trials": {"catch": True}})
    desired = np.array([i["desired_position"] for i in infos])
    np.testing.assert_array_equal(desired, np.repeat(desired[:1], len(desired), 0))
    np.testing.assert_array_equal(desired[0], infos[0]["hand_position"])
    assert (obs[:, 16] == 0).all() and (loads == 0).all()


def test_catch_probability_and_go_times_follow_the_params():
    env = gym.make("ArmCurlField-v0", catch_probability=0.5, go_time_range=(0.1, 0.3))
    env.reset(seed=0)
    catches, onsets = [], []
    for _ in range(400):
        env.reset()
        onset = float(env.unwrapped.state.onset[0])
        catches.append(np.isinf(onset))
        if not np.isinf(onset):
            onsets.append(onset * 0.01 - 0.07)
    assert 0.42 < np.mean(catches) < 0.58
    assert min(onsets) >= 0.1 and max(onsets) <= 0.3 and np.std(onsets) > 0.04


def test_reward_is_the_negative_scaled_paper_cost():
    env = gym.make("ArmCurlField-v0")
    _, infos, rewards, _ = run_episode(env, options={"trials": {"catch": False, "go_time": 0.1}})
    x = np.array([i["hand_position"] for i in infos])
    d = np.array([i["desired_position"] for i in infos])
    v = np.array([i["hand_velocity"] for i in infos])
    f = np.array([i["muscle_force"] for i in infos])
    v_ext = np.concatenate([v[:1], v])  # before the first step, v_{-1} = v_0 (at rest)
    jerk = v_ext[2:] - 2 * v_ext[1:-1] + v_ext[:-2]
    cost = (
        1e3 * np.abs(x[1:] - d[1:]).sum(1)
        + 1e5 * (jerk**2).sum(1)
        + 1e-1 * f[1:].sum(1)
        + 3e-4 * ((f[1:] - f[:-1]) ** 2).sum(1)
    )
    np.testing.assert_allclose(rewards, -cost / 1e3, rtol=1e-4, atol=1e-7)


def test_scaled_reward_of_holding_still_on_a_10_cm_reach():
    """Holding still costs about the L1 distance to the target (0.14 m) for the ~80 steps after the cue."""
    env = gym.make("ArmCurlField-v0", **QUIET)
    _, _, still, _ = run_episode(env, options={"mode": "test", "target": 2}, policy=lambda env, t: np.zeros(6))
    assert -15 < still.sum() < -5


def test_observation_bounds_hold_over_the_whole_joint_range():
    arm = ArmParams.from_effector(make_effector())
    grid = np.linspace(0, 1, 101)
    low, high = arm.pos_lower[0], arm.pos_upper[0]
    q0, q1 = np.meshgrid(low[0] + grid * (high[0] - low[0]), low[1] + grid * (high[1] - low[1]))
    joints = np.stack([q0.ravel(), q1.ravel(), np.zeros(q0.size), np.zeros(q0.size)], 1).astype(np.float32)
    length, _, moment0, moment1 = muscle_geometry(arm, joints)
    normalised = np.maximum(length - arm.l0_se, 0) / arm.l0_ce
    (_, _, _, _, len_low, len_high) = OBSERVATION_LAYOUT[1]
    assert len_low + 0.1 < normalised.min() and normalised.max() < len_high - 0.1
    max_speed = float(arm.vel_upper.max())
    velocity_bound = (np.abs(moment0).max(0) + np.abs(moment1).max(0)) * max_speed / arm.vmax[0]
    assert velocity_bound.max() < OBSERVATION_LAYOUT[2][5]
    hands = hand_kinematics(arm, NUMPY, joints)
    assert np.abs(hands[:, :2]).max() < OBSERVATION_LAYOUT[0][5] - 0.1


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"catch_probability": 1.5}, "catch_probability"),
        ({"go_time_range": (0.3, 0.1)}, "go_time_range"),
        ({"vision_delay": 0.075}, "whole number"),
        ({"targets": "spiral"}, "targets"),
        ({"action_noise": -1e-4}, "action_noise"),
        ({"dt": float("nan")}, "finite"),
        ({"trial_steps": 0}, "trial_steps"),
    ],
)
def test_invalid_task_parameters_fail_at_construction(changes, message):
    with pytest.raises(ValueError, match=message):
        TaskParams().replace(**changes)


def test_unknown_task_parameters_are_named():
    with pytest.raises(TypeError, match=r"unknown task parameter.*'catch_prob'"):
        TaskParams().replace(catch_prob=0.2)


@pytest.mark.parametrize(
    "change", [{"start_joint_angles": (1e30, 1.0)}, {"reward_scale": 1e-300}, {"trial_steps": 10**9}, {"dt": 5.0}]
)
def test_params_outside_physical_ranges_are_refused(change):
    from savings_gym.task import TaskParams

    with pytest.raises(ValueError, match=f"{next(iter(change))} must be within"):
        TaskParams(**change)


def test_a_fractional_seed_is_a_value_error():
    import gymnasium as gym

    envs = gym.make_vec("ArmCurlField-v0", num_envs=2, vectorization_mode="vector_entry_point")
    with pytest.raises(ValueError, match="non-negative int"):
        envs.reset(seed=1.5)
