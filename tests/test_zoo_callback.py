"""The protocol's measurements inside an rl-zoo3 run (benchmarks/savings/zoo_callback.py): a real rl-zoo3 run
with the callback named in its yaml, and the callback driven by a real SB3 model in-process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import jsonschema
import numpy as np
import pytest
import torch
import yaml
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecNormalize

import savings_gym  # noqa: F401  (registers the ids)
from agents.sb3.hyperparams import PROTOCOL_CALLBACK
from agents.sb3.learner import evaluate_models
from agents.sb3.spec import make_spec
from benchmarks.board import schema
from benchmarks.savings.metrics import lateral_deviation
from benchmarks.savings.zoo_callback import ProtocolCallback

ROOT = Path(__file__).resolve().parent.parent
PHASES = {"NF1": 1, "FF1": 2, "NF2": 1, "FF2": 2}  # episodes per arm: with 8 arms, batches
FAST = {"n_steps": 100, "batch_size": 800, "n_epochs": 1, "learning_rate": 3e-5}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _model(env_id="ArmCurlField-v0", n_envs=8, phases=PHASES, **kwargs):
    """What rl-zoo3 builds: n_envs gym.make envs in a DummyVecEnv, normalised, and PPO on them."""
    venv = VecNormalize(make_vec_env(env_id, n_envs=n_envs, seed=0, env_kwargs={"phase_episodes": phases}))
    return PPO("MlpPolicy", venv, seed=0, policy_kwargs={"log_std_init": -4.6}, **(FAST | kwargs))


def test_the_callback_records_a_point_before_every_batch_without_changing_the_training(tmp_path):
    untouched = _model()
    untouched.learn(6 * 800)
    model = _model()
    model.env.reset()  # as learn() starts: the normaliser's statistics take in the first observations
    first = evaluate_models([(model, model.get_vec_normalize_env())], 0.0)  # NF1's first point
    model = _model()
    callback = ProtocolCallback(tmp_path)
    model.learn(6 * 800, callback=callback)
    for mine, theirs in zip(model.policy.parameters(), untouched.policy.parameters(), strict=True):
        assert torch.equal(mine, theirs)  # the test reaches draw nothing the training draws
    result = json.loads((tmp_path / "result.json").read_text())
    jsonschema.Draft202012Validator(schema.SUBMISSION_SCHEMA).validate(result)
    assert {p: np.shape(c) for p, c in result["learning_curves"].items()} == {p: (1, n) for p, n in PHASES.items()}
    assert result["config"]["preset"]["batches"] == PHASES and result["config"]["agent"] == "sb3:PPO"
    expected = lateral_deviation(first.hand_position, first.target[None]).mean()
    assert result["learning_curves"]["NF1"][0][0] == pytest.approx(float(expected), abs=1e-12)
    assert len(result["competence"]["per_network"]["competent"]) == 1  # the gate, before FF1
    assert result["reach_curves"]["FF2"]["endpoint_error"][0][1] > 0
    assert (tmp_path / "curves.npz").exists() and (tmp_path / "figures" / "learning_curves.png").exists()


def test_a_run_too_short_for_the_schedule_writes_nothing_and_says_how_long(tmp_path):
    model = _model()
    with pytest.warns(UserWarning, match="lasts 6 batches, so train for at least 4800 timesteps"):
        model.learn(2 * 800, callback=ProtocolCallback(tmp_path))
    assert not (tmp_path / "result.json").exists()


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: _model("ArmReach-v0", phases=None), "the training env runs \\['ArmReach-v0'\\]"),
        (lambda: _model(n_envs=4, n_steps=200), "\\['NF1', 'NF2'\\] are not"),
        (lambda: _model(n_steps=50, batch_size=400), None),  # divides a batch: accepted
        (lambda: _model(n_envs=8, n_steps=300, batch_size=800), "n_steps=300: a rollout must divide"),
    ],
    ids=["pretraining env", "phases not whole batches", "half-batch rollouts", "rollout over a batch"],
)
def test_envs_and_rollouts_that_do_not_fit_the_protocol_are_refused(build, message, tmp_path):
    model = build()
    if message is None:
        with pytest.warns(UserWarning, match="no result written"):  # one batch: accepted, too short for a result
            model.learn(800, callback=ProtocolCallback(tmp_path))
        return
    with pytest.raises(ValueError, match=message):
        model.learn(800, callback=ProtocolCallback(tmp_path))


def test_one_yaml_for_both_routes_the_protocol_ignores_only_its_own_callback(tmp_path):
    spec = make_spec("PPO", hyperparams={"callback": [{PROTOCOL_CALLBACK: {"out": "runs/zoo"}}]})
    assert "callback" not in spec.algo_kwargs
    with pytest.raises(ValueError, match=r"\['callback'\] not supported"):
        make_spec("PPO", hyperparams={"callback": [PROTOCOL_CALLBACK, "rl_zoo3.callbacks.RawStatisticsCallback"]})


def test_a_real_rl_zoo_run_names_the_callback_in_its_yaml_and_writes_the_result(tmp_path):
    pytest.importorskip("rl_zoo3")
    out = tmp_path / "result"
    entry = {"n_envs": 8, "n_timesteps": 4800, "policy": "MlpPolicy", "normalize": True, **FAST}
    entry["policy_kwargs"] = "dict(log_std_init=-4.6)"
    entry["callback"] = [{PROTOCOL_CALLBACK: {"out": str(out)}}]
    (tmp_path / "zoo.yml").write_text(yaml.safe_dump({"ArmCurlField-v0": entry}))
    phases = ", ".join(f"{k}={v}" for k, v in PHASES.items())
    command = [sys.executable, "-m", "rl_zoo3.train", "--algo", "ppo", "--env", "ArmCurlField-v0"]
    command += ["--gym-packages", "savings_gym", "-conf", str(tmp_path / "zoo.yml"), "-n", "4800"]
    command += ["--env-kwargs", f"phase_episodes:dict({phases})", "--eval-freq", "-1", "--num-threads", "1"]
    command += ["--seed", "0", "-f", str(tmp_path / "logs")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    jsonschema.Draft202012Validator(schema.SUBMISSION_SCHEMA).validate(result)
    assert {p: len(c[0]) for p, c in result["learning_curves"].items()} == PHASES
    assert result["command"].startswith("python ") and "rl_zoo3" in result["command"]
    assert result["config"]["seeds"] == [0] and result["config"]["rl_zoo3"]["n_envs"] == 8
    assert gym.spec("ArmCurlField-v0").id == result["config"]["env_id"]


def test_an_off_policy_learner_is_measured_before_each_batch_its_train_freq_allows(tmp_path):
    from stable_baselines3 import SAC

    def sac(train_freq):
        venv = make_vec_env("ArmCurlField-v0", n_envs=8, seed=0, env_kwargs={"phase_episodes": PHASES})
        return SAC("MlpPolicy", venv, seed=0, train_freq=train_freq, gradient_steps=2, buffer_size=2000)

    with pytest.raises(ValueError, match=r"train_freq=\(3, 'step'\): one collection must divide"):
        sac(3).learn(800, callback=ProtocolCallback(tmp_path))
    callback = ProtocolCallback(tmp_path)
    sac(50).learn(6 * 800, callback=callback)  # two collections per batch: one point per batch
    assert {p: len(c) for p, c in callback.state.deviations.items()} == PHASES
    assert json.loads((tmp_path / "result.json").read_text())["config"]["agent"] == "sb3:SAC"
