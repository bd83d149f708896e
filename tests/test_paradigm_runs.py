"""The protocol runner on the paradigms beyond A-B-A: schedules at preset lengths, channel test reaches,
the paradigm metrics, end-to-end runs by id, and bad input."""

import json

import numpy as np
import pytest

from agents.interface import ProtocolEnvs, run_test_reaches
from benchmarks.cli import main
from benchmarks.savings.paradigms import paradigm_metrics
from benchmarks.savings.presets import Preset
from benchmarks.savings.protocol import batch_test, evaluate_then_train, protocol_schedule
from benchmarks.savings.run import run
from benchmarks.savings.summary import gradual_comparison

TINY = Preset("tiny", {"NF1": 1, "FF1": 10, "NF2": 10, "FF2": 3}, use_shipped_pretrained=True)


def test_each_paradigm_gets_its_schedule_at_the_presets_lengths():
    recovery = protocol_schedule("ArmCurlFieldSpontaneousRecovery-v0", TINY)
    assert recovery.to_list() == [
        ("NF1", 0.0, 8),
        ("FF1", 8.0, 80),
        ("FFB", -8.0, 8),
        ("EC", 0.0, 80, {"kind": "channel"}),
    ]
    assert protocol_schedule("ArmCurlFieldInterference-v0", TINY, {"FFB": 5}).to_list()[2] == ("FFB", -8.0, 40)
    gradual = protocol_schedule("ArmCurlFieldGradual-v0", TINY)
    assert gradual.phases[1].ramp_episodes == round(0.75 * 10) * 8
    assert protocol_schedule("ArmCurlField-v0", TINY) == TINY.schedule()
    with pytest.raises(ValueError, match="has no phase"):
        protocol_schedule("ArmCurlField-v0", TINY, {"EC": 3})
    with pytest.raises(ValueError, match="the protocol runs"):
        protocol_schedule("ArmReach-v0", TINY)
    with pytest.raises(ValueError, match=r"unknown phase name\(s\) \['EC'\]"):
        protocol_schedule("ArmCurlFieldInterference-v0", TINY, {"EC": 3})


def test_test_reaches_follow_the_batch_field_ramp_and_channel():
    recovery = protocol_schedule("ArmCurlFieldSpontaneousRecovery-v0", TINY)
    assert batch_test(recovery, 0) == (0.0, False)
    assert batch_test(recovery, 11) == (-8.0, False)
    assert batch_test(recovery, 12) == (0.0, True)
    gain, channel = batch_test(protocol_schedule("ArmCurlFieldGradual-v0", TINY), 1)  # FF1's first batch
    assert not channel and gain == pytest.approx(8.0 / 64)  # the first trial of a 64-trial ramp (8 batches)


class _NoChannel:
    num_networks = 1

    def evaluate(self, field_gain):
        raise AssertionError("not reached")

    def train(self, episodes):
        pass


def test_an_agent_without_channel_test_reaches_is_refused_clearly():
    with pytest.raises(ValueError, match="takes no channel keyword"):
        evaluate_then_train(_NoChannel(), 0.0, channel=True)


class Still:
    """A learner that never moves (the plumbing only), with channel test reaches."""

    def __init__(self, envs: ProtocolEnvs, num_networks: int, seed: int, device: str):
        self.num_networks = num_networks
        self.env = envs.vector(8 * num_networks, num_worlds=num_networks)
        self.env.reset(seed=0)
        self.envs = envs

    def train(self, episodes):
        self.env.reset()  # the next 8 episodes of each learner's schedule
        for _ in range(100):
            self.env.step(np.full((8 * self.num_networks, 6), 0.05, np.float32))

    def evaluate(self, field_gain, channel=False):
        policy = lambda obs, t: np.full((len(obs), 6), 0.05, np.float32)  # noqa: E731
        k, env_id = self.num_networks, self.envs.env_id
        return run_test_reaches(policy, k, field_gain, env_id, channel=channel, **self.envs.env_kwargs)

    def state_dict(self):
        return {"env": self.env.get_state()}

    def load_state_dict(self, state):
        self.env.set_state(state["env"])


def test_a_custom_learner_runs_spontaneous_recovery_by_id(tmp_path):
    result = run(
        "tests/test_paradigm_runs.py:Still",
        None,
        2,
        TINY,
        tmp_path,
        env_id="ArmCurlFieldSpontaneousRecovery-v0",
        progress=False,
    )
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["config"]["schedule"][3] == ["EC", 0.0, 80, {"kind": "channel"}]
    assert set(on_disk["learning_curves"]) == {"NF1", "FF1", "FFB", "EC"}
    index = np.asarray(on_disk["adaptation_index"]["EC"])
    assert index.shape == (2, 10) and np.isfinite(index).all()
    assert "spontaneous_recovery" in result["paradigm_metrics"] and result["metrics"] == {}
    assert (tmp_path / "figures" / "paradigm.png").stat().st_size > 1000


def test_a_bptt_run_of_interference_by_id_from_the_command_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SAVINGS_GYM_BPTT_ENGINE", "eager")
    args = ["run", "--agent", "gru", "--hidden", "16", "--networks", "2", "--preset", "smoke"]
    args += ["--env", "ArmCurlFieldInterference-v0", "--phases", "FFB=15", "--out", str(tmp_path)]
    assert main(args) == 0
    assert "interference, FFB (-A) against FF1 (A)" in capsys.readouterr().out
    result = json.loads((tmp_path / "result.json").read_text())
    assert np.asarray(result["learning_curves"]["FFB"]).shape == (2, 15)
    assert np.isfinite(result["paradigm_metrics"]["interference"]["aggregate"]["savings_index"]["estimate"])


def _synthetic(rate_ffb: float, k: int = 4) -> dict[str, np.ndarray]:
    x = np.arange(60)
    ff1 = np.array([0.04 * np.exp(-x / 10) + 0.001 * i for i in range(k)])
    ffb = np.array([-0.04 * np.exp(-x * rate_ffb) - 0.001 * i for i in range(k)])
    return {"NF1": np.zeros((k, 10)), "FF1": ff1, "FFB": ffb}


def test_paradigm_metrics_see_interference_and_spontaneous_recovery_on_synthetic_curves():
    slower = paradigm_metrics(_synthetic(1 / 20))["interference"]
    assert slower["aggregate"]["savings_index"]["high"] < 0  # -A learnt at half the rate of A
    faster = paradigm_metrics(_synthetic(1 / 5))["interference"]
    assert faster["aggregate"]["savings_index"]["low"] > 0
    index = np.array([np.concatenate([np.full(5, 0.05), np.linspace(0.05, 0.3, 20)]) + 0.01 * i for i in range(4)])
    recovery = paradigm_metrics(_synthetic(1 / 10), {"EC": index})["spontaneous_recovery"]
    assert recovery["start"]["aggregate"]["estimate"] == pytest.approx(0.065, abs=1e-9)
    assert recovery["rebound"]["aggregate"]["low"] > 0.2


def _gradual_result(env_id, after_effect):
    x = np.arange(20)
    curves = {
        "NF1": np.zeros((3, 5)),
        "FF1": np.array([0.03 * np.exp(-x / 5)] * 3),
        "NF2": np.array([np.full(20, -after_effect)] * 3),
        "FF2": np.array([0.03 * np.exp(-x / 4)] * 3),
    }
    return {"config": {"env_id": env_id}, "learning_curves": {p: c.tolist() for p, c in curves.items()}}


def test_gradual_comparison_pairs_the_networks_of_both_runs():
    result = _gradual_result
    compared = gradual_comparison(result("ArmCurlFieldGradual-v0", 0.01), result("ArmCurlField-v0", 0.02))
    assert compared["after_effect_difference"]["aggregate"]["estimate"] == pytest.approx(0.01)  # a smaller one
    with pytest.raises(ValueError, match="expected a ArmCurlFieldGradual-v0 run"):
        gradual_comparison(result("ArmCurlField-v0", 0.01), result("ArmCurlField-v0", 0.02))


def test_the_gradual_command_compares_two_run_folders(tmp_path, capsys):
    gradual, abrupt = tmp_path / "gradual", tmp_path / "abrupt"
    for folder, env_id, effect in ((gradual, "ArmCurlFieldGradual-v0", 0.01), (abrupt, "ArmCurlField-v0", 0.02)):
        folder.mkdir()
        (folder / "result.json").write_text(json.dumps(_gradual_result(env_id, effect)))
    assert main(["gradual", str(gradual), str(abrupt)]) == 0
    out = capsys.readouterr().out
    assert "gradual -1.000 [-1.000, -1.000], abrupt -2.000 [-2.000, -2.000], difference +1.000" in out
    assert "FF2 relearning rate (fitted, per window of 5 batches): gradual +1.250" in out
    saved = json.loads((gradual / "gradual_comparison.json").read_text())
    assert saved["after_effect_difference"]["per_network"] == pytest.approx([0.01] * 3)
    with pytest.raises(SystemExit):
        main(["gradual", str(abrupt), str(gradual)])  # the runs swapped
    assert "expected a ArmCurlFieldGradual-v0 run" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["gradual", str(gradual), str(tmp_path / "missing")])
    assert "abrupt_dir" in capsys.readouterr().err
