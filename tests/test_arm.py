"""The fused arm step against MotorNet's own ``Effector.step``."""

import dataclasses

import motornet as mn
import numpy as np
import pytest
import torch

from savings_gym.arm import ArmParams, arm_at_rest, arm_step, make_effector
from savings_gym.backend import NUMPY, TorchBackend

B = 32


def _start_joints(rng):
    return np.stack([rng.uniform(0.3, 2.0, B), rng.uniform(0.3, 2.3, B), np.zeros(B), np.zeros(B)], 1).astype(
        np.float32
    )


def _float64(params: ArmParams) -> ArmParams:
    return dataclasses.replace(
        params, **{f.name: np.asarray(getattr(params, f.name), np.float64) for f in dataclasses.fields(params)}
    )


def _run(action_high: float, steps: int = 100, seed: int = 0):
    """Steps MotorNet, the fused step on NumPy and on torch, and a float64 copy, side by side."""
    rng = np.random.default_rng(seed)
    joints = _start_joints(rng)
    effector = make_effector()
    effector.reset(options={"batch_size": B, "joint_state": torch.tensor(joints)})
    params = ArmParams.from_effector(effector)
    torch_xp = TorchBackend()
    torch_params = ArmParams.from_effector(effector, torch_xp)
    exact_params = _float64(params)
    ours = arm_at_rest(params, NUMPY, joints)
    ours_torch = arm_at_rest(torch_params, torch_xp, torch.tensor(joints))
    exact = arm_at_rest(exact_params, NUMPY, joints.astype(np.float64))
    worst = {"numpy": 0.0, "torch": 0.0, "motornet_vs_exact": 0.0, "numpy_vs_exact": 0.0}
    for _ in range(steps):
        action = rng.uniform(0.0, action_high, (B, 6)).astype(np.float32)
        load = rng.normal(0.0, 5.0, (B, 2)).astype(np.float32)
        with torch.no_grad():
            effector.step(torch.tensor(action), endpoint_load=torch.tensor(load))
        ours = arm_step(params, NUMPY, ours, action, load)
        ours_torch = arm_step(torch_params, torch_xp, ours_torch, torch.tensor(action), torch.tensor(load))
        exact = arm_step(exact_params, NUMPY, exact, action.astype(np.float64), load.astype(np.float64))
        reference = effector.states["joint"].numpy()
        assert np.allclose(ours.hand, effector.states["cartesian"].numpy(), atol=1e-3)
        assert np.allclose(ours.force, effector.states["muscle"][:, 6].numpy(), rtol=1e-3, atol=1e-2)
        worst["numpy"] = max(worst["numpy"], np.abs(ours.joint - reference).max())
        worst["torch"] = max(worst["torch"], np.abs(ours_torch.joint.numpy() - reference).max())
        worst["motornet_vs_exact"] = max(worst["motornet_vs_exact"], np.abs(reference - exact.joint).max())
        worst["numpy_vs_exact"] = max(worst["numpy_vs_exact"], np.abs(ours.joint - exact.joint).max())
    return worst


def test_rest_state_matches_motornet_reset():
    joints = _start_joints(np.random.default_rng(1))
    effector = make_effector()
    effector.reset(options={"batch_size": B, "joint_state": torch.tensor(joints)})
    state = arm_at_rest(ArmParams.from_effector(effector), NUMPY, joints)
    muscle = effector.states["muscle"].numpy()
    np.testing.assert_array_equal(state.activation, muscle[:, 0])
    np.testing.assert_array_equal(state.muscle_length, muscle[:, 1])
    np.testing.assert_allclose(state.force, muscle[:, 6], rtol=1e-5)
    np.testing.assert_allclose(state.hand, effector.states["cartesian"].numpy(), atol=1e-7)


def test_fused_step_reproduces_motornet_over_random_actions():
    worst = _run(action_high=0.5)
    assert worst["numpy"] < 1e-4, worst
    assert worst["torch"] < 1e-4, worst


def test_fused_step_is_as_accurate_as_motornet_under_extreme_actions():
    """Full-range random excitations drive the arm into its joint limits, where float32 rounding
    grows; the fused step must stay as close to exact (float64) arithmetic as MotorNet itself."""
    worst = _run(action_high=1.0, seed=2)
    assert worst["numpy_vs_exact"] <= 2 * worst["motornet_vs_exact"] + 1e-5, worst
    assert worst["numpy"] < 1e-2, worst


def test_params_refuse_effectors_the_fused_step_does_not_reproduce():
    with pytest.raises(ValueError, match="RigidTendonArm26"):
        ArmParams.from_effector(mn.effector.RigidTendonArm26(muscle=mn.muscle.RigidTendonHillMuscleThelen()))
    with pytest.raises(ValueError, match="Euler"):
        ArmParams.from_effector(
            mn.effector.RigidTendonArm26(muscle=mn.muscle.RigidTendonHillMuscle(), integration_method="rk4")
        )


def test_extreme_actions_keep_the_arm_finite():
    params = ArmParams.from_effector(make_effector())
    rng = np.random.default_rng(3)
    state = arm_at_rest(params, NUMPY, _start_joints(rng))
    for _ in range(100):
        action = rng.choice([-1e6, 0.0, 1.0, 1e6], size=(B, 6)).astype(np.float32)
        state = arm_step(params, NUMPY, state, action, rng.normal(0, 50.0, (B, 2)).astype(np.float32))
    for name, value in state._asdict().items():
        assert np.isfinite(value).all(), name
    assert (state.joint[:, :2] >= params.pos_lower - 1e-6).all() and (
        state.joint[:, :2] <= params.pos_upper + 1e-6
    ).all()
