"""Error-clamp (force-channel) trials: the schedule's channel phases, the channel's physics on the real
arm, the experimenter's force reading in every front-end, and the adaptation index."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import savings_gym  # noqa: F401  (registers the ids)
from benchmarks.savings.paradigms import adaptation_index, field_cancelling_force
from savings_gym.differentiable import DifferentiableArmEnv
from savings_gym.schedule import Phase, Schedule, null_schedule
from savings_gym.testing import check_vector_matches_single

CHANNEL_ONLY = Schedule([("EC", 0.0, None, {"kind": "channel"})])


def test_channel_phases_and_interleaved_channel_trials():
    schedule = Schedule(
        [
            ("A", 8.0, 8, {"channel_every": 4}),  # counted: trials 3 and 7 are channels, 8 trials
            ("B", -8.0, 6, {"channel_every": 4, "channel_counts": False}),  # 6 field + 2 inserted
            ("EC", 0.0, 2, {"kind": "channel"}),
        ]
    )
    assert schedule.start_of("B") == 8 and schedule.end_of("B") == 16 and schedule.total_episodes == 18
    gains, channels = schedule.trials_at(np.arange(18))
    assert np.flatnonzero(channels).tolist() == [3, 7, 11, 15, 16, 17]
    assert gains.tolist() == [8, 8, 8, 0, 8, 8, 8, 0, -8, -8, -8, 0, -8, -8, -8, 0, 0, 0]
    assert schedule.has_channels and not null_schedule().has_channels
    assert Schedule(schedule.to_list()) == schedule  # options survive the plain-list round trip


def test_ramped_gains_count_field_trials_only():
    phase = Phase("R", 8.0, 12, channel_every=3, ramp_episodes=4)
    gains, channels = phase.gains_and_channels(np.arange(12))
    assert np.flatnonzero(channels).tolist() == [2, 5, 8, 11]
    np.testing.assert_allclose(gains[~channels], [2, 4, 6, 8, 8, 8, 8, 8])


@pytest.mark.parametrize(
    "phase, message",
    [
        (("EC", 8.0, 1, {"kind": "channel"}), "field_gain must be 0"),
        (("A", 0.0, 1, {"kind": "clamp"}), "kind must be one of"),
        (("A", 0.0, 1, {"channel_every": 1}), "channel_every must be 0"),
        (("A", 0.0, 1, {"channel_every": -2}), "channel_every must be an integer >= 0"),
        (("A", 0.0, 1, {"ramp_episodes": 1.5}), "ramp_episodes must be an integer"),
        (("A", 0.0, 1, {"channel_counts": 1}), "channel_counts must be True or False"),
        (("A", 0.0, 1, {"every": 8}), "unknown phase option"),
        (("A", 0.0, 1, [8]), "must be a dict"),
        (("EC", 0.0, 1, {"kind": "channel", "ramp_episodes": 2}), "apply to field phases"),
    ],
)
def test_bad_paradigm_options_fail_clearly(phase, message):
    with pytest.raises(ValueError, match=message):
        Schedule([phase])


@pytest.mark.parametrize("value, message", [(0.0, "channel_stiffness must be > 0"), (-5.0, "> 0")])
def test_channel_stiffness_must_be_positive(value, message):
    with pytest.raises(ValueError, match=message):
        gym.make("ArmCurlField-v0", channel_stiffness=value)
    with pytest.raises(ValueError, match="channel_damping must be >= 0"):
        gym.make("ArmCurlField-v0", channel_damping=-1.0)


def test_channel_test_reaches_refuse_a_field():
    env = gym.make("ArmCurlField-v0")
    with pytest.raises(ValueError, match="field_gain'\\] must be 0"):
        env.reset(seed=0, options={"mode": "test", "channel": True, "field_gain": 8.0})
    with pytest.raises(ValueError, match="test episodes only"):
        env.reset(seed=0, options={"channel": True})


def _reach_in_channel(gain: float, damping: float = 100.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A shipped GRU-128 network's 8 test reaches in the channel with a curl field of ``gain`` added
    on top (the push of an arm fully adapted to it): lateral deviation (m), speed (m/s) and the
    env's channel-force reading (N), each (8, T)."""
    from agents.bptt import load_pretrained, rollout

    torch.set_num_threads(1)
    controllers, _ = load_pretrained("agents/pretrained/gru128.pt", [0])
    env = DifferentiableArmEnv(8, null_schedule(), differentiable=False, channel_damping=damping)
    obs, _ = env.reset(seed=0, options={"mode": "test", "channel": True})
    world = env._world
    world.state = world.state._replace(field_gain=torch.full((8,), gain))
    start, normal = world.state.start, world.task.channel_normal(world.state.start, world.state.target)
    forces = []

    class Recording:  # reads the experimenter's force after every step the rollout takes
        def __getattr__(self, name):
            return getattr(env, name)

        def step(self, action):
            out = env.step(action)
            forces.append(env.channel_force)
            return out

    with torch.no_grad():
        hand = rollout(Recording(), controllers, obs)["hand_position"][0]
    deviation = ((hand - start[:, None]) * normal[:, None]).sum(-1).numpy()
    speed = (np.linalg.norm(np.diff(hand.numpy(), axis=1), axis=-1) / 0.01).max(-1)
    return deviation, speed, np.stack(forces, axis=1)


def test_the_channel_holds_a_full_strength_field_within_2_mm_on_the_real_arm():
    deviation, speed, force = _reach_in_channel(8.0)
    assert speed.min() > 0.3  # real reaches: the field pushes with k v of several newtons
    assert np.abs(deviation).max() < 2e-3
    assert np.abs(deviation[:, -20:]).max() < 1e-3  # settled, not ringing
    # what the arm pushes into the channel while the field pushes the hand: the field's lateral force
    assert np.abs(force).max() > 1.0


def test_a_channel_damped_below_k_dt_diverges_at_dt_0_01():
    deviation, _, _ = _reach_in_channel(0.0, damping=30.0)  # D < K dt = 60 N*s/m: unstable Euler
    assert np.abs(deviation).max() > 0.05


def test_channel_trials_in_single_vector_and_differentiable_envs_agree():
    # arm i of a vector env lives like a single env seeded s + i when their episodes are alike
    worst = check_vector_matches_single("ArmCurlField-v0", num_envs=2, n_steps=150, schedule=CHANNEL_ONLY)
    assert worst <= 1e-5
    schedule = Schedule([("A", 8.0, None, {"channel_every": 2})])  # channel on every other trial
    single = gym.make("ArmCurlField-v0", schedule=schedule)
    vector = gym.make_vec("ArmCurlField-v0", num_envs=2, vectorization_mode="vector_entry_point", schedule=schedule)
    torch_env = DifferentiableArmEnv(2, schedule, differentiable=False)
    assert single.unwrapped.channel_trials.tolist() == [False]
    assert vector.unwrapped.channel_trials.tolist() == [False, True]  # the batch's second episode
    trial = {"trials": {"catch": False, "go_time": 0.1}}
    single.reset(seed=0, options=trial)
    vector.reset(seed=0, options=trial)
    torch_env.reset(seed=0, options=trial)
    rng = np.random.default_rng(0)
    readings = []
    for _ in range(100):
        action = rng.uniform(0.0, 0.3, (2, 6)).astype(np.float32)
        single.step(action[0])
        vector.step(action)
        torch_env.step(torch.as_tensor(action))
        readings.append((single.unwrapped.channel_force[0], *vector.unwrapped.channel_force, *torch_env.channel_force))
    readings = np.array(readings)
    assert np.all(readings[:, 0] == 0) and np.all(readings[:, 1] == 0)  # field trials: no channel
    assert np.abs(readings[:, 2]).max() > 0.1  # the vector env's channel trial reads a force
    np.testing.assert_allclose(readings[:, 3], readings[:, 1], atol=1e-4)
    np.testing.assert_allclose(readings[:, 4], readings[:, 2], rtol=1e-3, atol=1e-3)


def test_a_channel_trial_looks_like_a_field_trial_until_the_field_would_act():
    runs = []
    for schedule in (Schedule([("A", 8.0, None)]), CHANNEL_ONLY):
        env = gym.make("ArmCurlField-v0", schedule=schedule)
        obs, info = env.reset(seed=3, options={"trials": {"catch": False, "go_time": 0.2}})
        observations = [obs]
        for t in range(100):
            obs, _, _, _, step_info = env.step(np.full(6, 0.05 + 0.04 * np.sin(t / 5), np.float32))
            observations.append(obs)
        assert set(step_info) == set(info) == {"hand_position", "hand_velocity", "desired_position", "muscle_force"}
        runs.append(np.array(observations))
    differs = np.flatnonzero(np.any(runs[0] != runs[1], axis=1))
    assert len(differs) and differs[0] > 28  # onset 27 steps: the force acts from the step after


def test_field_cancelling_force_is_k_times_the_speed_along_the_line():
    velocity = np.array([[[0.0, 0.5], [0.3, 0.4]]])  # (1 trial, 2 steps, 2)
    force = field_cancelling_force(velocity, np.zeros(2), np.array([0.0, 0.1]), 8.0)
    np.testing.assert_allclose(force, [[4.0, 3.2]])
    # it cancels the curl field's lateral push: F_field . n = -k (v . u) with n = u turned +90 deg
    from savings_gym.backend import NUMPY
    from savings_gym.field import curl_force

    push = curl_force(velocity[0], np.full(2, 8.0), NUMPY) @ np.array([-1.0, 0.0])
    np.testing.assert_allclose(force[0] + push, 0.0, atol=1e-12)


def test_adaptation_index_recovers_known_slopes_on_synthetic_data():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 1, 100)
    ideal = 5.0 * np.sin(np.pi * t) ** 2 * np.ones((4, 1))
    slopes = np.array([0.0, 0.5, 1.0, -0.7])
    measured = 0.3 + slopes[:, None] * ideal + rng.normal(0, 0.05, (4, 100))
    np.testing.assert_allclose(adaptation_index(measured, ideal), slopes, atol=0.02)
    assert np.isnan(adaptation_index(np.ones(5), np.zeros(5)))
    with pytest.raises(ValueError, match="same shape"):
        adaptation_index(np.ones(5), np.ones(4))


def test_the_adaptation_index_of_channel_reaches_reads_the_force_transducer():
    from benchmarks.savings.paradigms import channel_adaptation_index

    # a reach along +y, 8 steps: the arm pushes into the channel with 0.5 x the field-cancelling force
    t = np.linspace(0, 1, 8)
    speed = np.sin(np.pi * t)
    velocity = np.stack([np.zeros(8), speed], axis=-1)[None, None]  # (K=1, R=1, T, 2)
    ideal = 8.0 * speed  # k v along the line
    # the channel reads K d + D v_perp along n = (-1, 0): put the push in d, with no lateral velocity
    d = 0.5 * ideal / 6000.0
    position = np.stack([-d, 0.01 * t], axis=-1)[None, None]
    index = channel_adaptation_index(position, velocity, np.zeros(2), np.array([[0.0, 0.1]]), 8.0, 6000.0, 100.0)
    np.testing.assert_allclose(index, [[0.5]], atol=1e-9)


def test_gradients_flow_through_the_channel_in_the_differentiable_env():
    grads = []
    for schedule in (CHANNEL_ONLY, null_schedule()):
        env = DifferentiableArmEnv(2, schedule)
        env.reset(seed=0, options={"trials": {"catch": False, "go_time": 0.0}})
        action = torch.full((2, 6), 0.2, requires_grad=True)
        total = 0.0
        for _ in range(15):  # past the onset (7 steps), so that the channel pushes back
            _, reward, _, _, _ = env.step(action)
            total = total + reward.sum()
        total.backward()
        grads.append(action.grad)
    assert torch.isfinite(grads[0]).all() and grads[0].abs().sum() > 0
    assert not torch.allclose(grads[0], grads[1])  # the channel's force is part of the gradient
