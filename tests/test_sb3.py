"""The SB3 adapter against SB3's VecEnv contract, with real PPO and RecurrentPPO."""

import gymnasium as gym
import numpy as np
import pytest
from sb3_contrib import RecurrentPPO
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecMonitor

from savings_gym.sb3 import SB3VecEnv, make_sb3_vec_env


def test_terminal_observation_and_truncation_flag():
    venv = make_sb3_vec_env("ArmCurlField-v0", num_envs=3)
    venv.seed(5)
    venv.reset()
    actions = np.full((3, 6), 0.05, np.float32)
    for t in range(100):
        next_obs, rewards, dones, infos = venv.step(actions)
        if t < 99:
            assert not dones.any() and infos == [{}, {}, {}]
            last = next_obs
    assert dones.all()
    for i, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True
        assert info["terminal_observation"].shape == (17,)
        assert not np.array_equal(info["terminal_observation"], next_obs[i])  # next_obs starts a new episode
    assert rewards.dtype == np.float32 and last.shape == (3, 17)


def test_seed_gives_arm_i_seed_plus_i():
    venv = make_sb3_vec_env("ArmCurlField-v0", num_envs=2)
    venv.seed(11)
    obs = venv.reset()
    single = gym.make("ArmCurlField-v0")
    np.testing.assert_array_equal(obs[1], single.reset(seed=12)[0])
    venv.seed(11)
    np.testing.assert_array_equal(venv.reset(), obs)


def test_options_reach_the_env_and_must_agree():
    venv = make_sb3_vec_env("ArmCurlField-v0", num_envs=2)
    venv.set_options({"mode": "test", "field_gain": 8.0})
    venv.reset()
    assert venv.get_attr("episode_mode") == ["test", "test"]
    venv.set_options([{"mode": "test"}, {}])
    with pytest.raises(ValueError, match="same options"):
        venv.reset()


def test_adapter_refuses_next_step_autoreset():
    with pytest.raises(ValueError, match="SAME_STEP"):
        SB3VecEnv(gym.make_vec("ArmCurlField-v0", num_envs=2))


@pytest.mark.parametrize("algo, policy", [(PPO, "MlpPolicy"), (RecurrentPPO, "MlpLstmPolicy")])
def test_real_agents_train_through_a_two_phase_schedule(algo, policy):
    venv = VecMonitor(make_sb3_vec_env("ArmCurlField-v0", num_envs=8, schedule=[("NF", 0.0, 8), ("FF", 8.0, None)]))
    model = algo(policy, venv, n_steps=100, batch_size=200, n_epochs=1, seed=0)
    model.learn(total_timesteps=1600)
    assert venv.unwrapped.venv.unwrapped.phase == "FF"
    assert venv.unwrapped.venv.unwrapped.episodes_completed == 16
    assert np.isfinite([e["r"] for e in model.ep_info_buffer]).all() and len(model.ep_info_buffer) == 16
