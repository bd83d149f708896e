"""The Gymnasium environments: API conformance, seeding, hidden schedule, vectorisation, bad input."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from helpers import wandering_action
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import savings_gym
from savings_gym.testing import check_api, check_phase_hidden, check_seeding, check_vector_matches_single

IDS = savings_gym.ENV_IDS


@pytest.mark.parametrize("env_id", IDS)
@pytest.mark.parametrize("render_mode", [None, "rgb_array"])
def test_gymnasium_check_env_with_warnings_as_errors(env_id, render_mode):
    check_api(gym.make(env_id, render_mode=render_mode))


@pytest.mark.parametrize("env_id", IDS)
def test_sb3_check_env(env_id):
    sb3_check_env(gym.make(env_id))


@pytest.mark.parametrize("env_id", IDS)
def test_same_seed_same_everything(env_id):
    check_seeding(lambda: gym.make(env_id, phase_episodes=None), n_steps=230)


def test_different_seeds_differ():
    a, b = gym.make("ArmCurlField-v0"), gym.make("ArmCurlField-v0")
    assert not np.array_equal(a.reset(seed=0)[0], b.reset(seed=1)[0])


def test_registration_is_idempotent_and_complete():
    import importlib

    importlib.reload(savings_gym)
    for env_id in IDS:
        spec = gym.spec(env_id)
        assert spec.max_episode_steps == 100 and spec.vector_entry_point is not None


@pytest.mark.parametrize("env_id", IDS)
def test_phase_is_hidden_until_the_field_acts(env_id):
    first = check_phase_hidden(env_id)
    assert first == 31  # 27 (go 0.2 s + 70 ms) + force acts next step + proprioceptive delay


def test_cued_variant_shows_the_gain_and_nothing_else_differs():
    plain = gym.make("ArmCurlField-v0", schedule=[("FF", 8.0, None)])
    cued = gym.make("ArmCurlFieldCued-v0", schedule=[("FF", 8.0, None)])
    obs_plain, _ = plain.reset(seed=5)
    obs_cued, _ = cued.reset(seed=5)
    assert obs_cued.shape == (18,) and obs_cued[17] == 8.0
    np.testing.assert_array_equal(obs_cued[:17], obs_plain)


def test_no_observation_or_info_key_carries_the_phase():
    env = gym.make("ArmCurlField-v0", phase_episodes={"NF1": 1, "FF1": 1})
    _, info = env.reset(seed=0)
    assert set(info) == {"hand_position", "hand_velocity", "desired_position", "muscle_force"}
    assert env.observation_space.shape == (17,)


def _finish_episode(env):
    for t in range(env.spec.max_episode_steps):
        _, _, terminated, truncated, info = env.step(wandering_action(env, t))
    assert truncated and not terminated
    return info


def test_single_env_switches_field_at_the_scheduled_episode():
    env = gym.make("ArmCurlField-v0", phase_episodes={"NF1": 2, "FF1": 3, "NF2": 1, "FF2": 1})
    seen = []
    env.reset(seed=0)
    for _ in range(8):
        seen.append((env.unwrapped.phase, env.unwrapped.field_gain))
        _finish_episode(env)
        env.reset()
    assert seen == [("NF1", 0.0)] * 2 + [("FF1", 8.0)] * 3 + [("NF2", 0.0), ("FF2", 8.0), ("FF2", 8.0)]
    assert env.unwrapped.episodes_completed == 8


def test_abandoned_and_test_episodes_do_not_advance_the_schedule():
    env = gym.make("ArmCurlField-v0", phase_episodes={"NF1": 1})
    env.reset(seed=0)
    env.step(np.zeros(6, np.float32))
    env.reset()  # abandoned after one step: not counted
    env.reset(options={"mode": "test", "target": 0, "field_gain": 8.0})
    assert env.unwrapped.field_gain == 8.0 and env.unwrapped.episode_mode == "test"
    _finish_episode(env)
    assert env.unwrapped.episodes_completed == 0
    env.reset()
    assert env.unwrapped.phase == "NF1" and env.unwrapped.field_gain == 0.0


def test_a_seeded_reset_restarts_the_schedule():
    env = gym.make("ArmCurlField-v0", phase_episodes={"NF1": 1})
    env.reset(seed=0)
    _finish_episode(env)
    env.reset()
    assert env.unwrapped.phase == "FF1"
    env.reset(seed=0)
    assert env.unwrapped.phase == "NF1" and env.unwrapped.episodes_completed == 0


def test_test_episodes_are_reproducible_and_leave_training_streams_untouched():
    def trace(with_test_episode):
        env = gym.make("ArmCurlField-v0")
        env.reset(seed=3)
        if with_test_episode:
            env.reset(options={"mode": "test", "target": 5, "eval_seed": 7})
            _finish_episode(env)
        obs, _ = env.reset()
        return obs, [env.step(wandering_action(env, t))[0] for t in range(20)]

    assert all(np.array_equal(a, b) for a, b in zip(trace(False)[1], trace(True)[1], strict=True))
    env_a, env_b = gym.make("ArmCurlField-v0"), gym.make("ArmCurlField-v0")
    env_a.reset(seed=1)
    env_b.reset(seed=2)
    options = {"mode": "test", "target": 5, "eval_seed": 7}
    np.testing.assert_array_equal(env_a.reset(options=options)[0], env_b.reset(options=options)[0])


def test_vector_arm_i_lives_like_a_single_env_seeded_s_plus_i():
    worst = check_vector_matches_single("ArmCurlField-v0", num_envs=3, seed=10, n_steps=130)
    assert worst <= 1e-5


def test_vector_reach_and_cued_match_single_too():
    check_vector_matches_single("ArmReach-v0", num_envs=2, seed=4, n_steps=30)
    check_vector_matches_single("ArmCurlFieldCued-v0", num_envs=2, seed=4, n_steps=30)


def test_vector_is_one_batched_simulation_with_batched_spaces():
    venv = gym.make_vec("ArmCurlField-v0", num_envs=16)
    assert type(venv.unwrapped).__name__ == "ArmCurlFieldVectorEnv"
    assert venv.observation_space.shape == (16, 17) and venv.action_space.shape == (16, 6)
    assert venv.single_observation_space.shape == (17,)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    obs, info = venv.reset(seed=0)
    assert obs.shape == (16, 17) and obs.dtype == np.float32 and venv.observation_space.contains(obs)
    assert info["hand_position"].shape == (16, 2) and info["_hand_position"].all()


def _run_vector(venv, n):
    actions = np.full(venv.action_space.shape, 0.05, np.float32)
    for _ in range(n):
        out = venv.step(actions)
    return out


def test_vector_schedule_counts_episodes_not_batches():
    """With 3 arms and phases of 4 episodes, a batch straddles the NF1/FF1 boundary: the fourth
    episode is NF1, the fifth FF1, whatever the batch size."""
    venv = gym.make_vec("ArmCurlField-v0", num_envs=3, phase_episodes={"NF1": 4, "FF1": 4})
    venv.reset(seed=0)
    gains = [venv.unwrapped.field_gains.copy()]
    for _ in range(2):
        _run_vector(venv, 101)  # 100 steps, then the NEXT_STEP autoreset
        gains.append(venv.unwrapped.field_gains.copy())
    np.testing.assert_array_equal(np.concatenate(gains), [0, 0, 0, 0, 8, 8, 8, 8, 0])
    assert venv.unwrapped.episodes_completed == 6 and venv.unwrapped.phase == "FF1"


def test_vector_worlds_keep_their_own_schedule():
    venv = gym.make_vec("ArmCurlField-v0", num_envs=4, num_worlds=2, phase_episodes={"NF1": 2})
    venv.reset(seed=0)
    _run_vector(venv, 101)
    np.testing.assert_array_equal(venv.unwrapped.field_gains, [8, 8, 8, 8])
    assert venv.unwrapped.episodes_completed == 2


def test_vector_same_step_autoreset_reports_the_final_observation():
    venv = gym.make_vec("ArmCurlField-v0", num_envs=2, autoreset_mode=AutoresetMode.SAME_STEP)
    venv.reset(seed=0)
    actions = np.full((2, 6), 0.05, np.float32)
    for t in range(100):
        obs, reward, terminated, truncated, info = venv.step(actions)
        if t < 99:
            assert not truncated.any() and "final_obs" not in info
    assert truncated.all() and not terminated.any()
    assert info["final_obs"][0].shape == (17,) and info["_final_obs"].all()
    assert info["final_info"]["hand_position"].shape == (2, 2)
    assert venv.unwrapped.episode_steps if hasattr(venv.unwrapped, "episode_steps") else True
    assert not np.array_equal(obs[0], info["final_obs"][0])  # obs is already the next episode's first


def test_vector_next_step_autoreset():
    venv = gym.make_vec("ArmCurlField-v0", num_envs=2)
    venv.reset(seed=0)
    *_, truncated, _ = _run_vector(venv, 100)
    assert truncated.all()
    obs, reward, terminated, truncated, _ = _run_vector(venv, 1)
    assert (reward == 0).all() and not truncated.any() and venv.unwrapped.state.step == 0


def test_vector_per_env_seeds_as_a_list():
    venv = gym.make_vec("ArmCurlField-v0", num_envs=2)
    single = gym.make("ArmCurlField-v0")
    obs, _ = venv.reset(seed=[7, 3])
    np.testing.assert_array_equal(obs[1], single.reset(seed=3)[0])
    with pytest.raises(ValueError, match="list of 2 seeds"):
        venv.reset(seed=[1, 2, 3])


def test_vector_torch_backend_matches_numpy():
    a = gym.make_vec("ArmCurlField-v0", num_envs=4)
    b = gym.make_vec("ArmCurlField-v0", num_envs=4, backend="torch")
    obs_a, _ = a.reset(seed=0)
    obs_b, _ = b.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(60):
        actions = rng.uniform(0, 0.3, (4, 6)).astype(np.float32)
        obs_a, reward_a, *_ = a.step(actions)
        obs_b, reward_b, *_ = b.step(actions)
        assert isinstance(obs_b, np.ndarray)
    np.testing.assert_allclose(obs_a, obs_b, atol=1e-4)
    np.testing.assert_allclose(reward_a, reward_b, rtol=1e-4, atol=1e-6)


# -- bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "action, message",
    [
        (np.full(6, np.nan, np.float32), "NaN"),
        (np.array([0, 0, np.inf, 0, 0, 0], np.float32), "NaN or inf"),
        (np.zeros(5, np.float32), r"shape \(6,\)"),
        (np.zeros((1, 6), np.float32), r"shape \(6,\)"),
        (np.array(["a"] * 6), "real numbers"),
        (np.zeros(6, complex), "real numbers"),
        (np.zeros(6, bool), "real numbers"),
    ],
)
def test_bad_actions_raise_value_errors_and_leave_the_arm_untouched(action, message):
    env = gym.make("ArmCurlField-v0")
    env.reset(seed=0)
    before = env.unwrapped.state.arm.joint.copy()
    with pytest.raises(ValueError, match=message):
        env.step(action)
    np.testing.assert_array_equal(env.unwrapped.state.arm.joint, before)
    assert np.isfinite(env.step(np.full(6, 0.1, np.float32))[0]).all()


def test_out_of_range_actions_are_clipped_like_motornet():
    env_a, env_b = gym.make("ArmCurlField-v0"), gym.make("ArmCurlField-v0")
    env_a.reset(seed=0)
    env_b.reset(seed=0)
    out_a = env_a.step(np.array([-5, 9, 0.5, 2, -1, 0.2], np.float32))
    out_b = env_b.step(np.array([0, 1, 0.5, 1, 0, 0.2], np.float32))
    np.testing.assert_allclose(out_a[0], out_b[0], atol=1e-6)


def test_bad_vector_actions():
    venv = gym.make_vec("ArmCurlField-v0", num_envs=3)
    venv.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(3, 6\)"):
        venv.step(np.zeros((2, 6), np.float32))
    bad = np.zeros((3, 6), np.float32)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        venv.step(bad)


def test_extreme_random_actions_for_100_steps_leave_the_state_finite():
    env = gym.make("ArmCurlField-v0", schedule=[("FF", 100.0, None)])
    env.reset(seed=0, options={"trials": {"catch": False, "go_time": 0.1}})
    rng = np.random.default_rng(0)
    for _ in range(100):
        obs, reward, *_ = env.step(rng.choice([-1e9, 0.0, 1.0, 1e9], 6).astype(np.float32))
        assert np.isfinite(obs).all() and np.isfinite(reward)
    for name, value in env.unwrapped.state.arm._asdict().items():
        assert np.isfinite(value).all(), name


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"fild_gain": 8.0}, TypeError, "fild_gain"),
        ({"catch_prob": 0.1}, TypeError, "catch_prob"),
        ({"phase_episodes": {"FF1": -8}}, ValueError, ">= 0"),
        ({"phase_episodes": {"FF3": 8}}, ValueError, "unknown phase name"),
        ({"schedule": [("NF1", 0.0, 5), ("NF1", 8.0, 5)]}, ValueError, "unique"),
        ({"schedule": [("A", 0.0, 1)], "field_gain": 4.0}, ValueError, "custom schedule"),
        ({"cued": "yes"}, ValueError, "cued"),
        ({"render_mode": "ansi"}, ValueError, "render_mode"),
        ({"catch_probability": 2.0}, ValueError, "catch_probability"),
    ],
)
def test_bad_constructor_arguments_fail_at_construction(kwargs, error, message):
    with pytest.raises(error, match=message):
        savings_gym.envs.ArmCurlFieldEnv(**kwargs)
    if "render_mode" not in kwargs:
        with pytest.raises(error, match=message):
            gym.make("ArmCurlField-v0", **kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_envs": 0}, "num_envs"),
        ({"num_envs": 4, "num_worlds": 3}, "multiple of num_worlds"),
        ({"num_envs": 2, "backend": "jax"}, "backend"),
        ({"num_envs": 2, "autoreset_mode": "disabled"}, "autoreset_mode"),
        ({"num_envs": 2, "max_episode_steps": 0}, "max_episode_steps"),
    ],
)
def test_bad_vector_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gym.make_vec("ArmCurlField-v0", **kwargs)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"mode": "eval"}, "'train' or 'test'"),
        ({"modes": "test"}, "unknown reset option"),
        ({"field_gain": 8.0}, "test episodes only"),
        ({"mode": "test", "target": 8}, "0..7"),
        ({"mode": "test", "target": 0.5}, "integers"),
        ({"mode": "test", "field_gain": float("nan")}, "field_gain"),
        ({"mode": "test", "eval_seed": -1}, "eval_seed"),
        ({"mode": "test", "trials": {"catch": True}}, "training episodes only"),
        ({"trials": {"go_time": -0.1}}, "go_time"),
        ({"trials": {"catch": 1}}, "booleans"),
        ({"trials": {"speed": 1}}, "unknown key"),
        ("test", "dict"),
    ],
)
def test_bad_reset_options(options, message):
    env = gym.make("ArmCurlField-v0")
    with pytest.raises(ValueError, match=message):
        env.reset(seed=0, options=options)


def test_step_before_reset_is_refused():
    env = savings_gym.envs.ArmCurlFieldEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(6, np.float32))


def test_render_draws_the_arm():
    env = gym.make("ArmCurlField-v0", render_mode="rgb_array")
    env.reset(seed=0)
    image = env.render()
    assert image.shape == (400, 400, 3) and image.dtype == np.uint8 and image.std() > 0
