"""A learner of one's own through the command line: the template (examples/reinforce.py) end to end,
its result file against the board's schema, an exact resume, and the errors of a bad --agent."""

import hashlib
import json
import os
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from helpers import kill_and_resume

from benchmarks.board import entries, schema
from benchmarks.cli import main
from benchmarks.savings.learners import custom_agent_factory
from benchmarks.savings.presets import Preset
from benchmarks.savings.protocol import run_protocol

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "examples" / "reinforce.py"
TINY = Preset("tiny", {"NF1": 1, "FF1": 3, "NF2": 1, "FF2": 3})


def test_the_template_runs_from_the_readme_command_and_writes_a_valid_result(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the README's command, as typed in the project folder
    argv = ["run", "--agent", "examples/reinforce.py:Reinforce", "--networks", "2", "--preset", "smoke"]
    assert main([*argv, "--out", str(tmp_path), "--threads", "1"]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    jsonschema.Draft202012Validator(schema.SUBMISSION_SCHEMA).validate(result)
    assert result["config"]["agent"] == "examples/reinforce.py:Reinforce"
    assert result["config"]["learner"] == {
        "module": "examples/reinforce.py",
        "class": "Reinforce",
        "source_sha256": hashlib.sha256(TEMPLATE.read_bytes()).hexdigest(),
        "lr": 5e-3,  # the smoke preset's rate, passed: the template's constructor takes lr
    }
    # warm-started from the shipped GRU-128 networks, they reach: the gate keeps them, so there are numbers
    assert result["competence"]["per_network"]["competent"] == [True, True]
    assert result["metrics"]["competence"]["competent"] == 2 and result["metrics"]["competence"]["excluded"] == 0
    assert result["command"].startswith("savings-gym run --agent examples/reinforce.py:Reinforce --networks 2")
    assert np.asarray(result["learning_curves"]["FF2"]).shape == (2, 15)
    assert result["units"]["lengths"].startswith("m ") and result["metrics"]["competence"]["networks"] == 2
    assert len(TEMPLATE.read_text().splitlines()) < 150


def test_a_learner_named_as_a_module_runs_too(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    agent = "examples.reinforce:ReinforceFromScratch"  # random weights: any --hidden
    argv = ["run", "--agent", agent, "--networks", "1", "--preset", "smoke", "--hidden", "8", "--lr", "0.01"]
    phases = ["--phases", "NF1=1", "FF1=2", "NF2=1", "FF2=2"]
    assert main([*argv, *phases, "--out", str(tmp_path), "--threads", "1"]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["config"]["learner"]["module"] == "examples.reinforce" and result["config"]["hidden"] == 8
    assert result["config"]["learner"]["lr"] == 0.01 == result["config"]["preset"]["lr"]  # --lr reaches the learner


def _template(cls="Reinforce", networks=2, hidden=16):
    sys.path.insert(0, str(ROOT))
    try:
        from examples import reinforce
    finally:
        sys.path.remove(str(ROOT))
    from agents.interface import ProtocolEnvs
    from savings_gym.schedule import paper_schedule

    return getattr(reinforce, cls)(ProtocolEnvs(paper_schedule(batches=TINY.batches)), networks, seed=1, hidden=hidden)


def test_the_warm_start_is_the_bptt_networks_and_only_their_recurrent_layer_learns():
    from agents.bptt import PRETRAINED_DIR, load_pretrained

    learner = _template()
    bptt, _ = load_pretrained(PRETRAINED_DIR / "gru16.pt", networks=range(2))
    obs = torch.randn(2, 8, bptt.input_size)
    with torch.no_grad():
        want, state = bptt(obs, bptt.initial_state(8))
        want, _ = bptt(obs, state)  # two steps: the initial state, then the recurrence
        for k, net in enumerate(learner.nets):
            got, h = net(obs[k], None)
            got, _ = net(obs[k], h)
            torch.testing.assert_close(got, want[k], rtol=1e-5, atol=1e-6)
    before = {name: p.detach().clone() for name, p in learner.nets[0].named_parameters()}
    learner.train(8)
    after = dict(learner.nets[0].named_parameters())
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    # REINFORCE's gradient reaches the weights (a sampled action that carried the mean's gradient cancelled it)
    assert changed == {"cell.weight_hh", "cell.bias_hh", "h0"}


def test_from_scratch_every_weight_learns():
    learner = _template("ReinforceFromScratch", networks=1, hidden=8)
    before = [p.detach().clone() for p in learner.nets[0].parameters()]
    learner.train(8)
    assert all(not torch.equal(b, a) for b, a in zip(before, learner.nets[0].parameters(), strict=True))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--hidden", "100"], "gru100.pt: use --hidden 16, 32, 64, 128 or 256, or ReinforceFromScratch"),
        (["--networks", "9"], "holds 8 networks"),
    ],
)
def test_a_warm_start_that_does_not_exist_is_refused_naming_the_choices(argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--agent", "examples/reinforce.py:Reinforce", "--preset", "smoke", *argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_the_learning_rate_reaches_a_learner_only_if_its_constructor_takes_lr(tmp_path):
    source = (
        "class Takes:\n    def __init__(self, envs, num_networks, seed, device, lr=1.0):\n        self.lr = lr\n\n\n"
    )
    source += "class Ignores:\n    def __init__(self, envs, num_networks, seed, device):\n        self.lr = None\n"
    (tmp_path / "learners.py").write_text(source)
    for name, expected in (("Takes", 0.02), ("Ignores", None)):
        make, details = custom_agent_factory(f"{tmp_path / 'learners.py'}:{name}", None, 1, tmp_path, 0, "cpu", lr=0.02)
        assert details["learner"]["lr"] == expected and make(None).lr == expected


def test_a_learner_of_ones_own_needs_only_the_base_install(tmp_path):
    """``pip install -e .`` (no extras): the template runs without SB3, YAML, rl-zoo3, Ray or TensorBoard."""
    import subprocess

    blocked = ["stable_baselines3", "sb3_contrib", "yaml", "rl_zoo3", "ray", "tensorboard", "torch.utils.tensorboard"]
    argv = ["run", "--agent", "examples/reinforce.py:Reinforce", "--networks", "1", "--preset", "smoke"]
    argv += ["--phases", "NF1=1", "FF1=2", "NF2=1", "FF2=2", "--threads", "1", "--out", str(tmp_path / "run")]
    code = (
        f"import sys; sys.modules.update(dict.fromkeys({blocked!r})); from benchmarks.cli import main; main({argv!r})"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "result.json").exists()


def _template_run(out, stop_after=None):
    make, details = custom_agent_factory(str(TEMPLATE) + ":Reinforce", None, 2, out, seed=3, device="cpu")
    config = {"agent": "reinforce", **details}
    return run_protocol(make, TINY, out, config, progress=False, stop_after=stop_after)


def test_an_interrupted_custom_learner_resumes_exactly(tmp_path):
    whole = _template_run(tmp_path / "whole")
    assert _template_run(tmp_path / "split", stop_after=3) is None
    resumed = _template_run(tmp_path / "split")
    assert resumed["learning_curves"] == whole["learning_curves"]


@pytest.mark.parametrize(
    "agent, message",
    [
        ("examples/no_such_file.py:Reinforce", "no such file 'examples/no_such_file.py'"),
        ("examples/reinforce.py:NoSuchClass", "has no class 'NoSuchClass'"),
        ("no_such_package.module:Learner", "importing 'no_such_package.module' failed"),
        ("examples/reinforce.py:", "expected path/to/file.py:Class or package.module:Class"),
    ],
)
def test_a_bad_learner_name_fails_before_any_work(agent, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--agent", agent, "--preset", "smoke", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out" / "checkpoint.pt").exists()


def test_a_learner_file_loads_as_an_import_would(tmp_path):
    from benchmarks.savings.learners import load_learner

    source = "from __future__ import annotations\nimport dataclasses\n\n\n@dataclasses.dataclass\nclass Mine:\n"
    source += "    lr: float = 0.1\n"
    (tmp_path / "mine.py").write_text(source)
    cls, learner = load_learner(f"{tmp_path / 'mine.py'}:Mine", tmp_path)
    assert cls().lr == 0.1 and learner["module"] == "<run>/mine.py"  # a dataclass needs its module registered
    assert learner["source_sha256"] == hashlib.sha256(source.encode()).hexdigest()


@pytest.mark.slow
def test_a_killed_custom_learner_resumed_with_the_same_command_ends_identically(tmp_path):
    def command(out):
        agent = "examples/reinforce.py:Reinforce"
        return [sys.executable, "-m", "benchmarks.cli", "run", "--agent", agent, "--networks", "2"] + [
            "--preset",
            "smoke",
            "--out",
            str(out),
            "--checkpoint-seconds",
            "0",
            "--threads",
            "1",
        ]

    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)}
    whole, killed = kill_and_resume(command, tmp_path, env=env, cwd=ROOT, settle=1)
    assert killed["learning_curves"] == whole["learning_curves"]


@pytest.mark.slow
def test_the_template_on_the_quick_preset_validates_for_the_board(tmp_path, monkeypatch):
    """What a submission of the template would be: valid, its networks counted by the gate (warm-started,
    after 240 null-field batches of REINFORCE at the quick preset's SGD rate 0.02, 4 of 5 still reach:
    network 1, the weakest of the shipped GRU-128s at 3.2 cm, drifts to 5.3 cm)."""
    monkeypatch.chdir(ROOT)
    argv = ["run", "--agent", "examples/reinforce.py:Reinforce", "--networks", "5", "--preset", "quick"]
    assert main([*argv, "--out", str(tmp_path), "--threads", "1"]) == 0
    entry = entries.validate(tmp_path)
    assert entry.competence[1] == 5 and entry.competence[0] >= 4
    assert entry.result["config"]["learner"]["class"] == "Reinforce" and entry.result["config"]["learner"]["lr"] == 0.02


def test_the_pretraining_example_trains_to_the_gate_and_plots_its_curve(tmp_path, monkeypatch):
    import csv

    monkeypatch.syspath_prepend(str(ROOT))
    from examples import pretrain_reach

    tiny = ["--networks", "2", "--check-every", "1", "--hidden", "8"]
    assert pretrain_reach.main([*tiny, "--batches", "2", "--out", str(tmp_path / "a")]) == 0
    curve = json.loads((tmp_path / "a" / "curve.json").read_text())
    assert curve["batch"] == [0, 1, 2] and np.shape(curve["endpoint_error"]) == (3, 2)
    assert curve["competent"][-1] == [False, False]  # from scratch in 2 batches: nowhere near 5 cm
    with open(tmp_path / "a" / "episodes.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 2 * 8 and {r["phase"] for r in rows} == {"NF"}  # ArmReach-v0's null field
    assert (tmp_path / "a" / "curve.png").stat().st_size > 0
    weights = torch.load(tmp_path / "a" / "weights.pt", weights_only=True)["nets"]
    assert len(weights) == 2 and weights[0]["cell.weight_hh"].shape == (3 * 8, 8)  # --hidden 8
    # the loop stops at the first check every network passes
    monkeypatch.setattr(pretrain_reach, "competent", lambda error: np.ones(len(error), bool))
    assert pretrain_reach.main([*tiny, "--batches", "5", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "curve.json").read_text())["batch"] == [0]
    with pytest.raises(SystemExit) as exit_info:
        pretrain_reach.main(["--check-every", "0", "--out", str(tmp_path / "c")])
    assert exit_info.value.code == 2
