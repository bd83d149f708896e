"""The envs' public state: get_state / set_state resume exactly; phase and gain agree at every moment."""

import json

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

import savings_gym  # noqa: F401
from savings_gym.differentiable import make_differentiable

SHORT = {"NF1": 8, "FF1": 8}


def _single():
    return gym.make("ArmCurlField-v0", phase_episodes={"NF1": 1, "FF1": 2})


def _vector():
    return gym.make_vec("ArmCurlField-v0", num_envs=8, vectorization_mode="vector_entry_point", phase_episodes=SHORT)


def _differentiable():
    return make_differentiable("ArmCurlField-v0", num_envs=8, phase_episodes=SHORT, differentiable=False)


def _episode(env, kind):
    """Plays one training episode to its end; returns every observation."""
    if kind == "single":
        seen = [env.step(np.full(6, 0.05, np.float32))[0] for _ in range(100)]
    elif kind == "vector":
        seen = [env.step(np.full((8, 6), 0.05, np.float32))[0] for _ in range(100)]
    else:
        seen = [env.step(torch.full((8, 6), 0.05))[0].numpy() for _ in range(100)]
    return np.stack(seen)


@pytest.mark.parametrize("kind, make", [("single", _single), ("vector", _vector), ("differentiable", _differentiable)])
def test_set_state_continues_exactly_where_the_saved_env_would_have(kind, make):
    env = make()
    env.reset(seed=3)
    _episode(env, kind)
    saved = json.loads(json.dumps(env.unwrapped.get_state()))  # plain values: JSON takes them as they are
    expected = [_reset_obs(env), _episode(env, kind)]
    restored = make()
    restored.unwrapped.set_state(saved)
    assert restored.unwrapped.episodes_completed == saved["episodes_completed"] > 0
    got = [_reset_obs(restored), _episode(restored, kind)]
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert restored.unwrapped.phase == env.unwrapped.phase != "NF1"


def _reset_obs(env):
    obs = env.reset()[0]
    return obs.numpy() if isinstance(obs, torch.Tensor) else obs


def test_a_state_saved_mid_episode_replays_that_episode_from_its_start():
    env = _vector()
    env.reset(seed=1)
    _episode(env, "vector")
    start = env.reset()[0]
    for _ in range(10):
        env.step(np.full((8, 6), 0.05, np.float32))
    saved = env.unwrapped.get_state()
    replayed = _vector()
    replayed.unwrapped.set_state(saved)
    np.testing.assert_array_equal(replayed.reset()[0], start)


def test_set_state_refuses_what_does_not_fit():
    env = _vector()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="keys 'episodes_completed' and 'rngs'"):
        env.unwrapped.set_state({"episodes": 8})
    with pytest.raises(ValueError, match="episodes_completed'] must be a non-negative int"):
        env.unwrapped.set_state({"episodes_completed": -8, "rngs": None})
    with pytest.raises(ValueError, match="holds 1 generators, this world has 8 arms"):
        env.unwrapped.set_state(_single().unwrapped.get_state() | {"rngs": [np.random.PCG64(0).state]})


@pytest.mark.parametrize("kind, make", [("single", _single), ("vector", _vector), ("differentiable", _differentiable)])
def test_phase_and_field_gain_agree_between_an_episodes_end_and_the_next_reset(kind, make):
    env = make().unwrapped
    seen = []
    env.reset(seed=0)
    for _ in range(3):
        seen.append((env.phase, env.field_gain))
        _episode(env, kind)
        seen.append((env.phase, env.field_gain))  # ended, not reset: both describe the next episode
        env.reset()
    switched = [(p, g) for p, g in seen if p == "FF1"]
    assert switched and all(g == 8.0 for _, g in switched) and all(g == 0.0 for p, g in seen if p == "NF1")


def test_the_vector_env_answers_field_gain_and_refuses_a_batch_across_a_boundary():
    venv = _vector().unwrapped
    venv.reset(seed=0)
    assert venv.field_gain == 0.0
    straddling = gym.make_vec(
        "ArmCurlField-v0", num_envs=3, vectorization_mode="vector_entry_point", phase_episodes={"NF1": 4}
    ).unwrapped
    straddling.reset(seed=0)
    _ = [straddling.step(np.zeros((3, 6), np.float32)) for _ in range(100)]
    straddling.reset()  # episodes 3, 4, 5: NF1, FF1, FF1
    np.testing.assert_array_equal(straddling.field_gains, [0.0, 8.0, 8.0])
    with pytest.raises(ValueError, match="read field_gains"):
        _ = straddling.field_gain


@pytest.mark.parametrize("mode", ["NextStep", "SameStep"])
def test_the_episode_log_writes_what_the_experimenter_sees_and_changes_nothing(tmp_path, mode):
    import csv

    from savings_gym.wrappers import VectorEpisodeLog

    def make():
        return gym.make_vec(
            "ArmCurlField-v0",
            num_envs=4,
            num_worlds=2,
            vectorization_mode="vector_entry_point",
            phase_episodes={"NF1": 2},
            autoreset_mode=AutoresetMode(mode),
        )

    plain, logged = make(), VectorEpisodeLog(make(), tmp_path / "log.csv")
    seen = [env.reset(seed=0)[0] for env in (plain, logged)]
    rewards = np.zeros(4)
    for t in range(201):
        a, b = plain.step(np.full((4, 6), 0.05, np.float32)), logged.step(np.full((4, 6), 0.05, np.float32))
        np.testing.assert_array_equal(a[0], b[0])  # observations and rewards pass through unchanged
        np.testing.assert_array_equal(a[1], b[1])
        rewards += a[1] if t < 100 else 0.0
    with open(tmp_path / "log.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["episode"], r["world"], r["phase"], r["field_gain"]) for r in rows[:4]] == [
        ("0", "0", "NF1", "0.0"),
        ("1", "0", "NF1", "0.0"),
        ("0", "1", "NF1", "0.0"),
        ("1", "1", "NF1", "0.0"),
    ]
    assert {r["phase"] for r in rows[4:]} == {"FF1"} and len(rows) == 8
    np.testing.assert_allclose([float(r["return"]) for r in rows[:4]], rewards, rtol=1e-5)
    assert seen[0].shape == seen[1].shape


def test_protocol_envs_build_every_kind_on_the_runs_schedule_and_check_them():
    from agents.interface import ProtocolEnvs, ScheduleMismatchError
    from savings_gym.schedule import paper_schedule

    envs = ProtocolEnvs(paper_schedule(batches={"NF1": 1, "FF1": 1}), task={"test_go_time": 0.2})
    single, vector = envs.single(), envs.vector(8)
    differentiable = envs.differentiable(8, differentiable=False)
    assert all(e.unwrapped.params.test_go_time == 0.2 for e in (single, vector, differentiable))
    single.reset(seed=0)
    for _ in range(8):  # one batch: 8 episodes of the single arm
        _episode(single, "single")
        single.reset()
    vector.reset(seed=0)
    _episode(vector, "vector")
    with pytest.raises(ScheduleMismatchError, match=r"env 2 \(DifferentiableArmEnv\) has completed 0"):
        envs.check(1)
    differentiable.reset(seed=0)
    _episode(differentiable, "differentiable")
    envs.check(1)
    assert single.unwrapped.phase == vector.unwrapped.phase == differentiable.phase == "FF1"
    with pytest.raises(ValueError, match="env_id must be one of"):
        ProtocolEnvs(paper_schedule(), env_id="CartPole-v1")


def test_the_episode_log_writes_tensorboard_scalars_or_says_what_is_missing(tmp_path):
    import importlib.util

    from savings_gym.wrappers import TENSORBOARD_TAGS, EpisodeLog

    env = gym.make("ArmCurlField-v0", phase_episodes={"NF1": 1})
    with pytest.raises(ValueError, match="give path"):
        EpisodeLog(env, None)
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(ValueError, match="needs tensorboard: pip install tensorboard"):
            EpisodeLog(env, None, tmp_path / "tb")
        return
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logged = EpisodeLog(env, None, tmp_path / "tb")
    returns = []
    for episode in range(2):
        logged.reset(seed=0 if episode == 0 else None)
        returns.append(sum(logged.step(np.full(6, 0.05, np.float32))[1] for _ in range(100)))
    logged.close()
    events = EventAccumulator(str(tmp_path / "tb" / "world_0"))
    events.Reload()
    assert set(TENSORBOARD_TAGS) <= set(events.Tags()["scalars"])
    assert [(e.step, e.value) for e in events.Scalars("schedule/phase")] == [(0, 0.0), (1, 1.0)]
    assert [e.value for e in events.Scalars("schedule/field_gain")] == [0.0, 8.0]
    np.testing.assert_allclose([e.value for e in events.Scalars("episode/return")], returns, rtol=1e-5)
