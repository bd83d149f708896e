"""The differentiable batched interface: gradients through the arm, same task as the Gym envs."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from savings_gym.differentiable import DifferentiableArmEnv, make_differentiable


def test_gradients_flow_back_through_the_arm_across_steps():
    env = make_differentiable("ArmCurlField-v0", num_envs=4, schedule=[("FF", 8.0, None)])
    env.reset(seed=0, options={"trials": {"catch": False, "go_time": 0.1}})
    first = torch.full((4, 6), 0.1, requires_grad=True)
    _, reward, *_ = env.step(first)
    total = reward.sum()
    for _ in range(29):
        obs, reward, _, _, info = env.step(torch.full((4, 6), 0.1))
        total = total + reward.sum()
    total.backward()
    assert first.grad is not None and first.grad.abs().sum() > 0
    # the first action moved the hand 29 steps later, through the muscles, skeleton and field
    probe = torch.full((4, 6), 0.1, requires_grad=True)
    env.reset(seed=0)
    env.step(probe)
    for _ in range(10):
        _, _, _, _, info = env.step(torch.full((4, 6), 0.1))
    assert torch.autograd.grad(info["hand_position"].sum(), probe)[0].abs().sum().item() > 0


def test_no_gradients_when_not_differentiable():
    env = make_differentiable("ArmCurlField-v0", num_envs=2, differentiable=False)
    env.reset(seed=0)
    action = torch.full((2, 6), 0.1, requires_grad=True)
    obs, reward, *_ = env.step(action)
    assert not obs.requires_grad and not reward.requires_grad


def test_matches_the_numpy_vector_env():
    torch_env = make_differentiable("ArmReach-v0", num_envs=3, differentiable=False)
    venv = gym.make_vec("ArmReach-v0", num_envs=3)
    obs_t, _ = torch_env.reset(seed=2)
    obs_n, _ = venv.reset(seed=2)
    rng = np.random.default_rng(0)
    for _t in range(100):
        actions = rng.uniform(0, 0.3, (3, 6)).astype(np.float32)
        obs_t, reward_t, _, truncated, _ = torch_env.step(torch.from_numpy(actions))
        obs_n, reward_n, *_ = venv.step(actions)
    assert truncated
    np.testing.assert_allclose(obs_t.numpy(), obs_n, atol=1e-4)
    np.testing.assert_allclose(reward_t.numpy(), reward_n, rtol=1e-4, atol=1e-6)


def test_worlds_and_test_mode():
    env = make_differentiable("ArmCurlField-v0", num_envs=16, num_worlds=2, phase_episodes={"NF1": 8})
    env.reset(seed=0)
    for _ in range(100):
        *_, truncated, _ = env.step(torch.full((16, 6), 0.05))
    assert truncated and env.episodes_completed == 8
    env.reset()
    assert env.phase == "FF1" and (env.field_gains == 8.0).all()
    obs, info = env.reset(options={"mode": "test", "field_gain": 0.0})
    assert env.episodes_completed == 8 and (env.field_gains == 0.0).all()
    torch.testing.assert_close(info["hand_position"][0], info["hand_position"][8])


def test_bad_input():
    with pytest.raises(ValueError, match="no differentiable version"):
        make_differentiable("CartPole-v1", num_envs=2)
    env = DifferentiableArmEnv(2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN"):
        env.step(torch.tensor([[float("nan")] * 6] * 2))
    with pytest.raises(ValueError, match=r"shape \(2, 6\)"):
        env.step(torch.zeros(3, 6))


def _test_reaches(env: DifferentiableArmEnv, eval_seed: int, steps: int = 130) -> torch.Tensor:
    """Observations of the 8 test reaches with a fixed excitation, past the trial's 100 steps."""
    obs, _ = env.reset(options={"mode": "test", "field_gain": 8.0, "eval_seed": eval_seed})
    seen = [obs]
    for _ in range(steps):
        seen.append(env.step(torch.full((8, 6), 0.05))[0])
    return torch.stack(seen)


def test_test_reaches_noise_is_the_same_drawn_afresh_or_kept():
    # the world keeps the last test noise (the same seeds draw the same noise at every test
    # reset); a kept draw must give what a fresh one gives, also past the trial, where the arms'
    # generators are remade and replayed
    fresh = _test_reaches(DifferentiableArmEnv(8, phase_episodes={"NF1": 8}, differentiable=False), eval_seed=3)
    env = DifferentiableArmEnv(8, phase_episodes={"NF1": 8}, differentiable=False)
    first = _test_reaches(env, eval_seed=3)
    again = _test_reaches(env, eval_seed=3)
    torch.testing.assert_close(first, fresh, rtol=0, atol=0)
    torch.testing.assert_close(again, fresh, rtol=0, atol=0)
    other = _test_reaches(env, eval_seed=4)
    assert not torch.equal(other, fresh)
    torch.testing.assert_close(_test_reaches(env, eval_seed=3), fresh, rtol=0, atol=0)
    env.reset(seed=0)  # a training episode between test episodes changes nothing of theirs
    env.step(torch.full((8, 6), 0.05))
    torch.testing.assert_close(_test_reaches(env, eval_seed=3), fresh, rtol=0, atol=0)
