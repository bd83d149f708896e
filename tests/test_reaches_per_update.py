"""Reaches per update (issue 19): R training reaches per learner between two curve points, phases
still counted in batches of 8 reaches; real SB3 learners and the template through the protocol,
refusals of what does not fit, an exact resume, the board's view of R."""

import copy
import json
from dataclasses import replace

import numpy as np
import pytest

from agents.interface import ProtocolEnvs, ScheduleMismatchError
from agents.sb3.spec import collection_episodes, make_spec
from benchmarks.board import schema, validation
from benchmarks.cli import main
from benchmarks.savings.learners import sb3_agent_factory, sb3_spec
from benchmarks.savings.presets import PRESETS, Preset, get_preset
from benchmarks.savings.protocol import run_protocol
from benchmarks.savings.run import run
from savings_gym.schedule import paper_schedule

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py

# the smoke preset with phases of whole 16-reach updates; its shipped PPO learner (agents/pretrained/ppo.pt)
PHASES = {"NF1": 2, "FF1": 4, "NF2": 2, "FF2": 4}
FAST = {"n_epochs": 1}  # one gradient pass per update: n_updates counts the updates
EVEN = ["--phases", *(f"{phase}={n}" for phase, n in PHASES.items())]


def _sb3_run(out, reaches, stop_after=None, arms=8):
    """``sb3:PPO`` (one learner, on ``arms`` arms) through the protocol at ``reaches`` per update;
    returns the result and the agent."""
    preset = get_preset("smoke").with_changes(PHASES, reaches_per_update=reaches)
    spec = sb3_spec("sb3:PPO", "ArmCurlField-v0", FAST | {"n_envs": arms}, None, reaches)
    make, _ = sb3_agent_factory(spec, 1, preset, out, seed=0, device="cpu")
    agents = []

    def keep(envs):
        agents.append(make(envs))
        return agents[-1]

    config = {"agent": "sb3:PPO", "networks": 1, "seed": 0, "env_id": "ArmCurlField-v0"}
    return run_protocol(keep, preset, out, config, progress=False, stop_after=stop_after), agents[0]


def test_an_sb3_learner_at_16_reaches_per_update_makes_half_the_curve_points_on_the_same_experience(tmp_path):
    eight, agent8 = _sb3_run(tmp_path / "r8", 8)
    sixteen, agent16 = _sb3_run(tmp_path / "r16", 16)
    for phase, batches in PHASES.items():
        assert np.shape(eight["learning_curves"][phase]) == (1, batches)
        assert np.shape(sixteen["learning_curves"][phase]) == (1, batches // 2)
        assert np.shape(sixteen["reach_curves"][phase]["endpoint_error"]) == (1, batches // 2)
        assert sixteen["updates"]["per_phase"][phase] == {
            "updates": batches // 2,
            "reaches": 8 * batches,
            "env_steps": 800 * batches,
        }
    # the same experience per phase: every learner's env completed 8 x 12 training episodes ...
    assert agent8.episodes_completed == agent16.episodes_completed == 8 * sum(PHASES.values())
    # ... in 12 updates of 8 reaches, or 6 of 16 (one rollout of 200 steps of the 8 arms each)
    assert agent8.learners[0].model._n_updates == 12 and agent16.learners[0].model._n_updates == 6
    assert agent16.spec.algo_kwargs["n_steps"] == 200 and "reaches_per_update 16" in agent16.spec.sources[-1]
    # before any training both make the same curve point: the same learner, the same test reaches
    assert eight["learning_curves"]["NF1"][0][0] == sixteen["learning_curves"]["NF1"][0][0]
    config = sixteen["config"]["preset"]
    assert config["name"] == "smoke:reaches_per_update=16,NF1=2,FF1=4,NF2=2,FF2=4"
    assert config["reaches_per_update"] == 16 and config["batches"] == get_preset("smoke").batches | PHASES
    assert sixteen["updates"]["reaches_per_update"] == 16 and sixteen["updates"]["env_steps_per_update"] == 1600
    assert eight["updates"]["reaches_per_update"] == 8 and eight["config"]["preset"]["reaches_per_update"] == 8


def test_sixteen_arms_play_an_update_of_16_reaches_as_one_episode_each(tmp_path):
    wide, agent = _sb3_run(tmp_path / "wide", 16, arms=16)
    narrow, _ = _sb3_run(tmp_path / "narrow", 16)
    assert agent.spec.n_envs == 16 and agent.spec.algo_kwargs["n_steps"] == 100  # one rollout of one episode
    assert agent.episodes_completed == 8 * sum(PHASES.values()) and agent.learners[0].model._n_updates == 6
    for phase, batches in PHASES.items():
        assert np.shape(wide["learning_curves"][phase]) == (1, batches // 2)
    assert wide["updates"] == narrow["updates"]  # the same experience, in the same updates
    # the same learner and test reaches before any training (the normaliser's running statistics have seen
    # 16 reset observations instead of 8, a hair apart); afterwards other arms' noise, other curves
    assert wide["learning_curves"]["NF1"][0][0] == pytest.approx(narrow["learning_curves"]["NF1"][0][0], rel=1e-4)
    assert wide["learning_curves"]["FF2"] != narrow["learning_curves"]["FF2"]


def test_a_run_at_16_reaches_per_update_stopped_and_resumed_ends_identically(tmp_path):
    whole, _ = _sb3_run(tmp_path / "whole", 16)
    assert _sb3_run(tmp_path / "split", 16, stop_after=2)[0] is None
    resumed, agent = _sb3_run(tmp_path / "split", 16)
    assert resumed["learning_curves"] == whole["learning_curves"]
    assert resumed["reach_curves"] == whole["reach_curves"] and agent.episodes_completed == 96


@pytest.mark.filterwarnings("ignore:.*A2C has no shipped hyperparameters")
def test_at_8_reaches_per_update_the_spec_and_the_preset_are_the_ones_without_it():
    for algo in ("PPO", "RecurrentPPO", "SAC", "A2C"):
        assert make_spec(algo, reaches_per_update=8) == make_spec(algo)
    assert get_preset("quick").with_changes(reaches_per_update=8) is get_preset("quick")
    # every preset but the RL one keeps the paper's batch of 8
    assert [name for name, preset in PRESETS.items() if preset.reaches_per_update != 8] == ["rl"]


@pytest.mark.filterwarnings("ignore:.*A2C has no shipped hyperparameters")
def test_on_policy_rollouts_are_one_update_unless_the_hyperparameters_set_n_steps():
    spec = make_spec("RecurrentPPO", reaches_per_update=64)  # the 64 reaches on 8 arms
    assert spec.algo_kwargs["n_steps"] == 800 and spec.n_envs == 8 and collection_episodes(spec) == 64
    own = make_spec("RecurrentPPO", hyperparams={"n_steps": 400}, reaches_per_update=64)  # two rollouts per update
    assert own.algo_kwargs["n_steps"] == 400 and collection_episodes(own) == 32
    assert collection_episodes(make_spec("RecurrentPPO")) == 8 and collection_episodes(make_spec("A2C")) == 8
    sac = make_spec("SAC", hyperparams={"train_freq": [400, "step"]}, reaches_per_update=64)
    assert sac.algo_kwargs["train_freq"] == [400, "step"] and collection_episodes(sac) == 32


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: get_preset("quick").with_changes(reaches_per_update=0), "must be a positive multiple of 8.*got 0"),
        (lambda: get_preset("quick").with_changes(reaches_per_update=12), "must be a positive multiple of 8.*got 12"),
        (lambda: Preset("x", {"FF1": 3}, reaches_per_update=True), "must be a positive multiple of 8.*got True"),
        (
            lambda: get_preset("smoke").with_changes(reaches_per_update=16),
            r"reaches_per_update=16 \(--reaches-per-update\): phase FF1 of preset 'smoke:reaches_per_update=16' is "
            "15 batches = 120 reaches, not a whole number of updates of 16 reaches",
        ),
        (
            lambda: make_spec("PPO", hyperparams={"n_steps": 300}, reaches_per_update=16),
            r"n_steps=300: a rollout must divide a protocol update \(--reaches-per-update 16\) of 200 steps",
        ),
        (
            lambda: make_spec("SAC", hyperparams={"train_freq": [300, "step"]}, reaches_per_update=16),
            r"train_freq=\[300, 'step'\]: one collection must divide a protocol update",
        ),
        (lambda: make_spec("PPO", reaches_per_update=12), "must be a positive multiple of 8.*got 12"),
        (
            lambda: make_spec("PPO", hyperparams={"n_envs": 24}, reaches_per_update=64),
            "n_envs=24: must divide the protocol's 64 reaches per update",
        ),
        (lambda: make_spec("PPO", hyperparams={"n_envs": 16}), "n_envs=16: must divide the protocol's 8 reaches"),
        (
            lambda: make_spec("PPO", hyperparams={"reaches_per_update": 64}),
            "reaches_per_update is a protocol setting .* --reaches-per-update",
        ),
    ],
)
def test_reaches_per_update_that_do_not_fit_are_refused_naming_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--agent", "sb3:PPO", "--reaches-per-update", "0"],
            "positive multiple of 8 (whole batches of the 8 centre-out targets), got 0",
        ),
        (
            ["--agent", "sb3:PPO", "--reaches-per-update", "12"],
            "positive multiple of 8 (whole batches of the 8 centre-out targets), got 12",
        ),
        (["--agent", "sb3:PPO", "--reaches-per-update", "16"], "phase FF1 of preset 'smoke:reaches_per_update=16'"),
        (
            ["--agent", "sb3:PPO", "--reaches-per-update", "16", *EVEN, "--hyperparams", "n_steps=300"],
            "n_steps=300: a rollout must divide a protocol update (--reaches-per-update 16) of 200 steps",
        ),
        (
            ["--agent", "gru", "--hidden", "16", "--reaches-per-update", "16", *EVEN],
            "BPTT agents (gru, lstm, rnn) make one update per batch of 8 reaches, as the paper's BPTT",
        ),
    ],
)
def test_the_command_line_refuses_them_before_any_work(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", *argv, "--preset", "smoke", "--networks", "1", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "nothing may be written before the arguments are valid"


@pytest.mark.parametrize(
    "extra, source",
    [([], "reaches_per_update=64 (preset 'rl''s)"), (["--reaches-per-update", "16"], "(--reaches-per-update)")],
)
def test_a_bptt_refusal_names_where_the_reaches_per_update_came_from(extra, source, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--agent", "gru", "--preset", "rl", *extra, "--networks", "1", "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert source in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_bptt_agent_refuses_other_updates_than_its_batch(tmp_path):
    from agents.bptt import BPTTAgent, load_pretrained
    from benchmarks.savings.learners import shipped_pretrained

    controllers, _ = load_pretrained(shipped_pretrained("gru", 16), networks=range(1))
    agent = BPTTAgent(controllers, paper_schedule(batches={"NF1": 2, "FF1": 2}), engine="eager")
    with pytest.raises(ValueError, match="one gradient step on a batch of the 8 centre-out targets"):
        agent.evaluate_then_train(0.0, episodes=16)
    preset = Preset("tiny16", {"NF1": 2, "FF1": 2, "NF2": 2, "FF2": 2}, reaches_per_update=16)
    with pytest.raises(ValueError, match="BPTT agents"):
        run_protocol(lambda envs: BPTTAgent(controllers, envs, engine="eager"), preset, tmp_path, {}, progress=False)


def test_the_schedule_check_counts_updates_of_r_reaches():
    class Stepper:  # trains R episodes per update in one world of 8 arms
        def __init__(self, envs):
            self.env = envs.vector(8)
            self.env.reset(seed=0)

        def train(self, episodes):
            for _ in range(episodes // 8):
                self.env.reset()
                for _ in range(100):
                    self.env.step(np.zeros((8, 6), np.float32))

    envs = ProtocolEnvs(paper_schedule(batches={"NF1": 4, "FF1": 4}))
    learner = Stepper(envs)
    learner.train(16)
    envs.check(1, 16)
    with pytest.raises(ScheduleMismatchError, match=r"before update 3: .* says 32 \(2 updates x 16\).* train\(16\)"):
        envs.check(2, 16)
    learner.train(8)  # half an update
    with pytest.raises(
        ScheduleMismatchError, match="has completed 24 training episodes per world, the schedule says 32"
    ):
        envs.check(2, 16)


def test_the_template_learner_trains_r_reaches_per_update(tmp_path):
    from benchmarks.savings.learners import custom_agent_factory

    preset = Preset("tiny16", {"NF1": 2, "FF1": 2, "NF2": 2, "FF2": 2}, reaches_per_update=16)
    make, details = custom_agent_factory("examples/reinforce.py:Reinforce", 16, 1, tmp_path, seed=0, device="cpu")
    result = run_protocol(make, preset, tmp_path, {"agent": "reinforce", **details}, progress=False)
    assert {phase: np.shape(c) for phase, c in result["learning_curves"].items()} == {
        phase: (1, 1) for phase in ("NF1", "FF1", "NF2", "FF2")
    }


def test_the_board_reads_r_and_old_files_without_it_as_8(tmp_path, monkeypatch):
    from dataclasses import asdict

    from benchmarks.savings.results import make_result

    rl = Preset("rl", {"NF1": 4, "FF1": 48, "NF2": 24, "FF2": 48}, reaches_per_update=32)
    monkeypatch.setitem(PRESETS, "rl", rl)  # as a preset that sets R itself will
    rng = np.random.default_rng(0)
    curves = {}
    for phase, batches in rl.batches.items():
        points = batches * 8 // 32
        curves[phase] = 0.03 * np.exp(-0.3 * np.arange(points) / 5) + rng.normal(0, 1e-3, (6, points))
    config = {"agent": "x", "networks": 6, "seed": 0, "seeds": [0], "env_id": "ArmCurlField-v0", "preset": asdict(rl)}
    result = make_result(config, curves, 1.0, {"name": "rl entry"})
    assert result["updates"]["per_phase"]["FF1"] == {"updates": 12, "reaches": 384, "env_steps": 38400}
    validation.load(leaderboard_folder(tmp_path / "ok", result))
    as_eight = copy.deepcopy(result)
    del as_eight["config"]["preset"]["reaches_per_update"]  # a file without it: 8 reaches per update
    with pytest.raises(schema.SubmissionError, match="config/preset/reaches_per_update: 8 differs from preset 'rl'"):
        validation.load(leaderboard_folder(tmp_path / "eight", as_eight))
    longer = copy.deepcopy(result)
    longer["learning_curves"]["FF1"] = [row + row for row in longer["learning_curves"]["FF1"]]
    with pytest.raises(schema.SubmissionError, match="learning_curves/FF1: 24 updates, preset 'rl' has 12"):
        validation.load(leaderboard_folder(tmp_path / "longer", longer))
    renamed = copy.deepcopy(result)  # what --reaches-per-update makes of a board preset: not for the board
    renamed["config"]["preset"] = asdict(get_preset("quick").with_changes(reaches_per_update=16))
    with pytest.raises(schema.SubmissionError, match="unknown preset 'quick:reaches_per_update=16'"):
        validation.load(leaderboard_folder(tmp_path / "renamed", renamed))


def leaderboard_folder(folder, result):
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps(result, allow_nan=True))
    return folder


def test_sb3_pretraining_trains_in_whole_rollouts_of_a_longer_update(tmp_path):
    from agents.sb3.pretraining import PretrainArgs, pretrain

    spec = make_spec("PPO", hyperparams=FAST, reaches_per_update=16)
    meta = pretrain(spec, PretrainArgs(batches=1, networks=1, check_every=1), tmp_path / "p.pt")
    assert meta["batches_done"] == 2  # a budget of one batch of 8 reaches, in one rollout of 16


def test_a_presets_sb3_hyperparameters_sit_under_the_command_lines(tmp_path):
    preset = replace(
        get_preset("smoke").with_changes(PHASES, reaches_per_update=16),
        sb3_hyperparams={"PPO": {"n_epochs": 1, "batch_size": 400}},
    )
    assert preset.sb3_overrides("SAC", {"gamma": 0.9}) == {"gamma": 0.9}  # not named: the yaml's
    assert preset.sb3_overrides("PPO") == [{"n_epochs": 1, "batch_size": 400}]
    assert preset.sb3_overrides("PPO", {"batch_size": 800}) == [{"n_epochs": 1, "batch_size": 400}, {"batch_size": 800}]
    result = run("sb3:PPO", None, 1, preset, tmp_path / "run", progress=False, hyperparams={"batch_size": 800})
    used = result["config"]["sb3"]["algo_kwargs"]
    assert (used["n_epochs"], used["batch_size"], used["n_steps"]) == (1, 800, 200)  # the command line wins
    assert result["config"]["preset"]["sb3_hyperparams"] == {"PPO": {"n_epochs": 1, "batch_size": 400}}


def test_the_rl_preset_is_whole_updates_of_its_reaches_for_sb3_learners_and_refused_for_bptt(tmp_path):
    rl = get_preset("rl")
    assert rl.reaches_per_update > 8 and "rl" in schema.BOARD_PRESETS
    assert all(8 * batches % rl.reaches_per_update == 0 for batches in rl.batches.values())
    for algo in ("RecurrentPPO", "PPO"):
        spec = make_spec(algo, hyperparams=rl.sb3_overrides(algo), reaches_per_update=rl.reaches_per_update)
        assert spec.algo_kwargs["n_steps"] * spec.n_envs == 100 * rl.reaches_per_update  # one rollout per update
        assert spec.algo_kwargs["learning_rate"] == rl.sb3_hyperparams[algo]["learning_rate"]
    with pytest.raises(SystemExit):
        main(["run", "--agent", "gru", "--networks", "1", "--preset", "rl", "--out", str(tmp_path / "bptt")])
    assert not (tmp_path / "bptt").exists()
