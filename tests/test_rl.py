"""SB3 learners through the protocol: real RecurrentPPO, PPO and SAC on the real arm, tiny budgets."""

import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import gymnasium as gym
import jsonschema
import numpy as np
import pytest
import torch
from sb3_contrib import RecurrentPPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from agents.interface import ReachRecord
from agents.sb3.learner import SB3Agent
from agents.sb3.policies import CueScaledNormalize, WholeSequenceLstmPolicy
from agents.sb3.pretraining import load_pretrained
from agents.sb3.spec import fits, make_spec
from agents.serialization import load_checkpoint
from benchmarks.board import schema
from benchmarks.cli import main
from benchmarks.savings.learners import competence
from benchmarks.savings.metrics import savings
from benchmarks.savings.presets import Preset
from benchmarks.savings.protocol import run_protocol
from benchmarks.savings.run import pretrain_agent, run
from savings_gym.sb3 import make_sb3_vec_env
from savings_gym.schedule import null_schedule, paper_schedule

ROOT = Path(__file__).parent.parent
# the smallest budgets that still exercise every phase: a few thousand env steps per learner
TINY = Preset(
    "tiny",
    {"NF1": 1, "FF1": 3, "NF2": 1, "FF2": 3},
    pretrain_batches=1,
    use_shipped_pretrained=False,
    imitation_steps=3,
)
SCRATCH = Preset("scratch", {"NF1": 1, "FF1": 2, "NF2": 1, "FF2": 2}, pretrain_batches=0)
FAST = {
    "RecurrentPPO": {"n_epochs": 1, "batch_size": 800, "hidden_size": 16},
    "PPO": {"n_epochs": 1, "batch_size": 400},
    "SAC": {"train_freq": [20, "step"], "learning_starts": 100, "batch_size": 64, "buffer_size": 5000},
}


def _fast(algo):
    """Hyperparameters for seconds-long tests (the LSTM size goes through ``hidden``)."""
    values = dict(FAST[algo])
    values.pop("hidden_size", None)
    return values


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.mark.parametrize("algo, networks", [("RecurrentPPO", 1), ("PPO", 2)])
def test_real_learners_run_the_protocol_and_write_a_valid_result(algo, networks, tmp_path):
    hidden = FAST[algo].get("hidden_size")
    result = run(f"sb3:{algo}", hidden, networks, TINY, tmp_path, seed=3, progress=False, hyperparams=_fast(algo))
    curves = result["learning_curves"]
    on_disk = json.loads((tmp_path / "result.json").read_text())
    jsonschema.Draft202012Validator(schema.SUBMISSION_SCHEMA).validate(on_disk)  # the leaderboard's format
    gate = on_disk["competence"]["per_network"]["competent"]  # the metrics are over the networks that reach
    held = on_disk["reach_held"]["per_network"]["held"]  # and over those whose reach held
    recomputed = savings({p: np.asarray(c) for p, c in curves.items()}, competence=gate, reach=held)
    assert on_disk["metrics"] == json.loads(json.dumps(recomputed))
    config = on_disk["config"]
    assert config["env_id"] == "ArmCurlField-v0" and config["sb3"]["algo"] == algo and len(config["seeds"]) == networks
    assert config["pretrained_from"] == "<run>/pretrained.pt"  # pretrained for the preset's 1 batch
    assert len(config["pretrained_sha256"]) == 64
    pretraining = config["pretrained_meta"]
    assert pretraining["batches_done"] == 1 and "endpoint_error_cm" in pretraining["competence"]
    # no shipped weights fit these tiny networks: they first imitated the shipped GRU-128s, then did RL
    assert pretraining["imitate"] == str(ROOT / "agents" / "pretrained" / "gru128.pt")
    assert pretraining["imitation_steps"] == 3 and len(pretraining["imitation"]["action_rms_error"]) == networks
    assert np.asarray(curves["FF1"]).shape == (networks, 3) and np.isfinite(np.concatenate([*curves.values()], 1)).all()
    per_network = result["metrics"]["per_network"]
    assert np.isfinite(per_network["first_error_FF1"]).all() and np.isfinite(per_network["first_error_FF2"]).all()
    assert sorted(p.name for p in (tmp_path / "phase_ends").iterdir()) == ["FF1.pt", "FF2.pt", "NF1.pt", "NF2.pt"]


def _agent(algo, k=2, first=0, env_id="ArmCurlField-v0", seed=1, schedule=None):
    spec = make_spec(algo, env_id, _fast(algo), FAST[algo].get("hidden_size"))
    schedule = schedule or paper_schedule(batches={"NF1": 1, "FF1": 2, "NF2": 1, "FF2": 2})
    return SB3Agent(spec, schedule, k, seed=seed, first_network=first)


def _sb3_run(out, algo, networks, stop_after=None):
    def make(schedule):
        return _agent(algo, k=networks, schedule=schedule)

    return run_protocol(make, SCRATCH, out, {"agent": f"sb3:{algo}"}, progress=False, stop_after=stop_after)


@pytest.mark.parametrize("algo, networks", [("RecurrentPPO", 1), ("SAC", 2)])
def test_a_stopped_run_resumes_to_bitwise_the_same_curves(algo, networks, tmp_path):
    """The checkpoint (weights_only) holds weights, optimisers, LSTM state, normalisation
    statistics, replay buffer, the world's generators and the learners' global generators."""
    whole = _sb3_run(tmp_path / "whole", algo, networks)
    assert _sb3_run(tmp_path / "split", algo, networks, stop_after=3) is None
    assert load_checkpoint(tmp_path / "split" / "checkpoint.pt")["batch"] == 3
    resumed = _sb3_run(tmp_path / "split", algo, networks)
    assert resumed["learning_curves"] == whole["learning_curves"]
    with np.load(tmp_path / "whole" / "curves.npz") as a, np.load(tmp_path / "split" / "curves.npz") as b:
        for phase in a.files:
            np.testing.assert_array_equal(a[phase], b[phase])


def test_a_learner_does_not_depend_on_the_others():
    alone, among = _agent("PPO", k=1, first=1), _agent("PPO", k=3)
    for agent in (alone, among):
        agent.train(8)
        agent.train(8)
    np.testing.assert_array_equal(alone.evaluate(8.0).hand_position[0], among.evaluate(8.0).hand_position[1])


def test_evaluation_leaves_the_learners_unchanged():
    watched, unwatched = _agent("RecurrentPPO"), _agent("RecurrentPPO")
    first = watched.evaluate(0.0)
    np.testing.assert_array_equal(watched.evaluate(0.0).hand_position, first.hand_position)
    watched.train(8)
    unwatched.train(8)
    np.testing.assert_array_equal(watched.evaluate(8.0).hand_position, unwatched.evaluate(8.0).hand_position)
    assert watched.state_dict()["learners"][0]["world"] == unwatched.state_dict()["learners"][0]["world"]


@pytest.mark.parametrize("algo", ["RecurrentPPO", "PPO", "SAC"])
def test_the_test_reaches_are_what_sb3s_own_predict_plays(algo):
    """The evaluation's own policy step (no per-call conversions) against ``model.predict``, bit for bit."""
    from agents.interface import run_test_reaches

    agent = _agent(algo)
    agent.train(8)  # away from the initial weights and statistics
    models = [(learner.model, learner.normalizer) for learner in agent.learners]
    states, hidden = [None] * len(models), [[] for _ in models]

    def predict(obs, t):
        actions = []
        for k, (model, normalizer) in enumerate(models):
            own = obs[8 * k : 8 * (k + 1)]
            own = own if normalizer is None else normalizer.normalize_obs(own)
            starts = np.full(8, t == 0)
            action, states[k] = model.predict(own, state=states[k], episode_start=starts, deterministic=True)
            actions.append(action)
            if algo == "RecurrentPPO":
                hidden[k].append(states[k][0][-1])
        return np.concatenate(actions)

    for gain in (8.0, 0.0):  # twice: the recurrent state starts again at zero
        record = agent.evaluate(gain)
        reference = run_test_reaches(predict, len(models), gain, eval_seed=0)
        np.testing.assert_array_equal(record.hand_position, reference.hand_position)
        if algo == "RecurrentPPO":
            np.testing.assert_array_equal(record.hidden, np.stack([np.stack(h[-100:], axis=1) for h in hidden]))


def test_recurrent_state_is_recorded_and_the_cued_env_shows_the_field():
    record = _agent("RecurrentPPO").evaluate(8.0)
    assert isinstance(record, ReachRecord) and record.hidden.shape == (2, 8, 100, 16)
    assert np.isfinite(record.hidden).all() and np.abs(record.hidden).max() > 0
    cued = _agent("PPO", env_id="ArmCurlFieldCued-v0")
    assert cued.learners[0].model.observation_space.shape == (18,)
    assert _agent("PPO").learners[0].model.observation_space.shape == (17,)


def test_after_null_field_training_the_cued_learner_sees_the_field_as_a_unit_step():
    """The cue is 0 throughout null-field (pre)training, so its running variance is ~0; scaled by it,
    the field entered as +10 clipped standard deviations. It is divided by the paper's gain instead."""
    agent = _agent("PPO", k=1, env_id="ArmCurlFieldCued-v0", schedule=null_schedule())
    agent.train(8)
    normalizer = agent.learners[0].normalizer
    assert isinstance(normalizer, CueScaledNormalize) and normalizer.obs_rms.var[17] < 1e-6
    in_field = normalizer.get_original_obs().copy()
    in_field[:, 17] = 8.0
    seen, by_statistics = normalizer.normalize_obs(in_field), VecNormalize.normalize_obs(normalizer, in_field)
    np.testing.assert_array_equal(seen[:, 17], 1.0)
    np.testing.assert_array_equal(by_statistics[:, 17], normalizer.clip_obs)  # the defect this prevents
    np.testing.assert_array_equal(seen[:, :17], by_statistics[:, :17])  # every other input as before
    null = normalizer.get_original_obs()
    np.testing.assert_array_equal(normalizer.normalize_obs(null)[:, 17], 0.0)
    assert type(_agent("PPO", k=1).learners[0].normalizer) is VecNormalize  # uncued: plain running statistics


def test_the_schedule_advances_one_batch_per_train_and_the_phase_is_the_experimenters():
    agent = _agent("PPO")
    phases = []
    for _ in range(3):
        phases.append(agent.phase)
        agent.train(8)
    assert phases == ["NF1", "FF1", "FF1"] and agent.episodes_completed == 24
    assert agent.learners[0].model.num_timesteps == 24 * 100  # one PPO update per batch: 100 steps x 8 arms
    assert agent.learners[0].model._n_updates == 3  # n_epochs=1
    assert np.isfinite(agent.last_episode_returns).all()


def test_the_adapter_steps_like_sb3s_dummy_vec_env_of_single_envs():
    """Same seed, same actions: our batched adapter and DummyVecEnv(gym.make) agree step for step,
    across the episode end (terminal observation, truncation flag, next episode's observation)."""
    ours = make_sb3_vec_env("ArmCurlField-v0", num_envs=3)
    theirs = DummyVecEnv([lambda: gym.make("ArmCurlField-v0")] * 3)
    ours.seed(7)
    theirs.seed(7)
    np.testing.assert_allclose(ours.reset(), theirs.reset(), atol=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(130):
        actions = rng.uniform(0, 0.2, (3, 6)).astype(np.float32)
        (obs_a, rew_a, done_a, info_a), (obs_b, rew_b, done_b, info_b) = ours.step(actions), theirs.step(actions)
        np.testing.assert_allclose(obs_a, obs_b, atol=1e-5)
        np.testing.assert_allclose(rew_a, rew_b, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(done_a, done_b)
        for a, b, done in zip(info_a, info_b, done_b, strict=True):
            if done:  # what SB3 reads at an episode end (DummyVecEnv also passes the env's info on every step)
                assert a["TimeLimit.truncated"] is b["TimeLimit.truncated"] is True
                np.testing.assert_allclose(a["terminal_observation"], b["terminal_observation"], atol=1e-5)
    assert done_a.dtype == bool and done_a.all() is np.False_  # the loop ended mid-episode, after one episode end


@pytest.mark.parametrize("n_steps", [100, 60])  # whole episodes (one LSTM call), episodes starting mid-sequence (loop)
def test_whole_sequence_lstm_policy_learns_what_sb3_contribs_loop_learns(n_steps):
    weights = []
    for policy in ("MlpLstmPolicy", WholeSequenceLstmPolicy):
        env = make_sb3_vec_env("ArmCurlField-v0", 4)
        kwargs = {"batch_size": 200, "n_epochs": 2, "seed": 0, "policy_kwargs": {"lstm_hidden_size": 16}}
        model = RecurrentPPO(policy, env, n_steps=n_steps, **kwargs)
        model.learn(4 * 200)
        weights.append(model.policy.state_dict())
    for name, value in weights[0].items():
        torch.testing.assert_close(weights[1][name], value, atol=1e-5, rtol=1e-4)


def test_pretraining_writes_safely_loadable_weights_that_seed_the_learners(tmp_path):
    out = pretrain_agent("sb3:PPO", 2, 2, tmp_path / "ppo.pt", hyperparams=_fast("PPO"), check_every=1)
    blob = load_pretrained(out)  # torch.load(weights_only=True)
    assert blob["meta"]["batches_done"] == 2 and len(blob["meta"]["competent"]) == 2
    assert "abs_lateral_deviation_cm" in blob["meta"]["competence"] and blob["normalization"][0] is not None
    spec = make_spec("PPO", hyperparams=_fast("PPO"))
    assert fits(blob, spec, 2) and not fits(blob, spec, 3)
    assert not fits(blob, make_spec("PPO", "ArmCurlFieldCued-v0", _fast("PPO")), 1)  # 18 inputs, not 17
    agent = SB3Agent(spec, paper_schedule(), 2, pretrained=blob)
    for learner, weights in zip(agent.learners, blob["policies"], strict=True):
        for name, value in learner.model.policy.state_dict().items():
            torch.testing.assert_close(value, weights[name])
    assert learner.normalizer.obs_rms.count == blob["normalization"][1]["obs_count"] + 8  # + the first reset


def test_competence_criterion_on_known_paths():
    target = np.array([[0.1, 0.0]] * 8)
    t = np.linspace(0, 1, 100)[:, None]
    straight = (t * target[0])[None, None].repeat(8, 1)  # (1, 8, 100, 2), ends on the target
    short = straight * 0.5  # ends 5 cm short
    curved = straight + np.array([0, 0.03]) * np.sin(np.pi * t)  # 3 cm sideways on the way
    met, figures = competence(ReachRecord(np.concatenate([straight, short, curved]), target, 0.0))
    assert met.tolist() == [True, False, False] and figures["competent"] == "1/3"
    assert figures["endpoint_error_cm_per_learner"][1] == pytest.approx(5.0)
    assert 2.5 < figures["abs_lateral_deviation_cm_per_learner"][2] < 3.0  # from the line hand(step 25) -> target


def test_tensorboard_scalars_or_a_clean_skip(tmp_path):
    board = tmp_path / "tb"
    kwargs = dict(progress=False, hyperparams=_fast("PPO"), tensorboard=board)
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.warns(UserWarning, match="tensorboard is not installed"):
            result = run("sb3:PPO", None, 1, SCRATCH, tmp_path / "run", **kwargs)
        assert not board.exists() and result["metrics"]["competence"]["networks"] == 1
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)
            run("sb3:PPO", None, 1, SCRATCH, tmp_path / "run", **kwargs)
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(board / "learner_0"))
        events.Reload()
        tags = set(events.Tags()["scalars"])
        assert {"eval/lateral_deviation_cm", "schedule/phase", "schedule/field_gain", "train/episode_return"} <= tags
        assert [e.value for e in events.Scalars("schedule/phase")] == [0, 1, 1, 2, 3, 3]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--agent", "sb3:Foo"], "sb3:<Algo> with <Algo> one of ['A2C'"),
        (["--agent", "sb3:DQN"], "sb3:DQN cannot act in ArmCurlField-v0: The algorithm only supports"),
        (["--agent", "sb3:PPO", "--hyperparams", "n_epoch=3"], "unknown key(s) ['n_epoch'] for sb3:PPO"),
        (["--agent", "sb3:PPO", "--hyperparams", "learning_rate=lin_3e-4"], "schedules are not supported"),
        (["--agent", "sb3:PPO", "--hyperparams", "n_steps=2048"], "must divide a protocol batch of 100 steps"),
        (["--agent", "sb3:PPO", "--hyperparams", "n_envs=16"], "n_envs=16: must divide the protocol's 8 reaches"),
        (["--agent", "sb3:PPO", "--hyperparams", "env_kwargs={}"], "['env_kwargs'] not supported"),
        (["--agent", "sb3:PPO", "--hyperparams", "seed=3"], "['seed'] are set by the adapter"),
        (
            ["--agent", "sb3:PPO", "--hyperparams", "policy_kwargs=__import__('os').system('true')"],
            "is not a literal the adapter can read",
        ),
        (
            ["--agent", "sb3:PPO", "--hyperparams", "policy_kwargs={optimizer_kwargs: {eps: -1}}"],
            "hyperparams policy_kwargs optimizer_kwargs eps=-1: must be a positive number",
        ),
        (["--agent", "sb3:PPO", "--hidden", "64"], "hidden=64 sets the LSTM size of recurrent policies"),
        (["--agent", "sb3:PPO", "--env", "ArmReach-v0"], "--env must be one of"),
        (["--agent", "gru", "--env", "ArmCurlFieldCued-v0"], "BPTT agents run in ArmCurlField-v0 only"),
        (["--agent", "gru", "--hyperparams", "n_epochs=3"], "--hyperparams applies to sb3:<Algo> agents"),
    ],
)
def test_bad_input_fails_before_any_training(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", *argv, "--preset", "smoke", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir()], "nothing may be written before the arguments are valid"


def test_bad_hyperparameter_files_and_dicts_name_the_source(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("ArmCurlField-v0:\n  n_steps: 100\n  colour: blue\n")
    with pytest.raises(ValueError, match=r"hyperparams file '.*bad.yml': unknown key\(s\) \['colour'\]"):
        make_spec("RecurrentPPO", hyperparams=bad)
    with pytest.raises(ValueError, match="has no entry for 'ArmCurlFieldCued-v0'"):
        make_spec("RecurrentPPO", "ArmCurlFieldCued-v0", hyperparams=bad)
    with pytest.raises(ValueError, match=r"hyperparams dict: unknown key\(s\) \['lr'\]"):
        make_spec("PPO", hyperparams={"lr": 1e-3})
    shipped = make_spec("PPO").policy_kwargs
    spec = make_spec("PPO", hyperparams={"policy_kwargs": "dict(net_arch=[32], activation_fn=nn.ReLU)"})
    # rl-zoo3's strings, without eval, merged key by key into the shipped yaml's policy_kwargs
    assert spec.policy_kwargs == shipped | {"net_arch": [32], "activation_fn": "nn.ReLU"}
    assert shipped["log_std_init"] == -4.6 and shipped["net_arch"] == {"pi": [128, 128], "vf": [128, 128]}


def test_rl_zoo_trains_on_the_env_by_id_with_the_shipped_yaml(tmp_path):
    pytest.importorskip("rl_zoo3")
    command = [
        sys.executable,
        "-m",
        "rl_zoo3.train",
        "--algo",
        "ppo_lstm",
        "--env",
        "ArmCurlField-v0",
        "--gym-packages",
        "savings_gym",
        "-conf",
        str(ROOT / "agents" / "hyperparams" / "ppo_lstm.yml"),
        "-n",
        "800",
        "--eval-freq",
        "-1",
        "--num-threads",
        "1",
        "--seed",
        "0",
        "-f",
        str(tmp_path),
        "-params",
        "n_epochs:1",
        "batch_size:800",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "ppo_lstm" / "ArmCurlField-v0_1" / "ArmCurlField-v0.zip").exists()
    assert (tmp_path / "ppo_lstm" / "ArmCurlField-v0_1" / "ArmCurlField-v0" / "vecnormalize.pkl").exists()


TEACHER = ROOT / "agents" / "pretrained" / "gru16.pt"  # the smallest shipped BPTT networks: 17 inputs


@pytest.mark.parametrize("algo", ["RecurrentPPO", "PPO"])
def test_imitation_moves_the_policy_towards_the_teacher_and_leaves_exploration_alone(algo):
    from agents.sb3.imitation import Imitation, imitate, load_teachers, record_teacher

    hidden = 16 if algo == "RecurrentPPO" else None
    spec = make_spec(algo, hyperparams=_fast(algo), hidden=hidden)
    agent = SB3Agent(spec, paper_schedule(), 2, env_id="ArmReach-v0")
    learner = agent.learners[1]
    log_std = learner.model.policy.log_std.detach().clone()
    count = learner.normalizer.obs_rms.count
    teacher = record_teacher(load_teachers(TEACHER).select([1]), 64, 0.0, seed=5)
    assert teacher["obs"].shape == (64, 100, 17) and teacher["action"].shape == (64, 100, 6)
    assert np.all((teacher["action"] > 0) & (teacher["action"] < 1)) and np.all(np.isfinite(teacher["reward"]))

    def error_on(data):  # the deterministic policy's excitations against the teacher's, whole episodes
        obs = learner.normalizer.normalize_obs(data["obs"])
        starts = np.zeros((64, 100), bool)
        starts[:, 0] = True
        actions, state = [], None
        for t in range(100):
            action, state = learner.model.predict(
                obs[:, t], state=state, episode_start=starts[:, t], deterministic=True
            )
            actions.append(action)
        return float(np.sqrt(np.mean((np.stack(actions, 1) - data["action"]) ** 2)))

    before = error_on(teacher)
    out = imitate(agent, Imitation(str(TEACHER), episodes=64, steps=150, learning_rate=3e-3), seed=0)
    after = error_on(teacher)
    assert after < 0.6 * before, (before, after)
    assert len(out["action_rms_error"]) == 2 and all(np.isfinite(out["action_rms_error"]))
    torch.testing.assert_close(learner.model.policy.log_std, log_std)  # exploration is the algorithm's
    assert learner.normalizer.obs_rms.count >= count + 64 * 100  # statistics from the teacher's reaches


def test_imitation_refuses_bad_settings(tmp_path):
    from agents.sb3.imitation import Imitation, imitate

    agent = SB3Agent(make_spec("PPO", hyperparams=_fast("PPO")), paper_schedule(), 1, env_id="ArmReach-v0")
    with pytest.raises(ValueError, match="imitation episodes must be an integer >= 64, got 8"):
        imitate(agent, Imitation(str(TEACHER), episodes=8))
    with pytest.raises(ValueError, match="imitation steps must be a non-negative integer, got -1"):
        imitate(agent, Imitation(str(TEACHER), steps=-1))
    sac = SB3Agent(make_spec("SAC", hyperparams=_fast("SAC")), paper_schedule(), 1, env_id="ArmReach-v0")
    with pytest.raises(ValueError, match=r"sb3:SAC \(MlpPolicy\) cannot imitate"):
        imitate(sac, Imitation(str(TEACHER)))
    assert make_spec("PPO").imitates and make_spec("RecurrentPPO").imitates and not make_spec("TD3").imitates
    with pytest.raises(ValueError, match="junk.pt is not a readable savings-gym checkpoint"):
        (tmp_path / "junk.pt").write_bytes(b"junk")
        imitate(agent, Imitation(str(tmp_path / "junk.pt"), episodes=64, steps=1))


def test_pretraining_by_imitation_records_it_and_resumes_without_redoing_it(tmp_path, capsys):
    out = tmp_path / "ppo.pt"
    kwargs = dict(hyperparams=_fast("PPO"), check_every=1, imitate=TEACHER, imitation_steps=5)
    pretrain_agent("sb3:PPO", 1, 1, out, **kwargs)
    meta = load_pretrained(out)["meta"]
    assert meta["imitate"] == str(TEACHER) and meta["imitation"]["teacher"] == str(TEACHER)
    assert meta["batches_done"] == 1 and "imitating" in capsys.readouterr().out
    pretrain_agent("sb3:PPO", 1, 2, out, **kwargs)  # a larger budget resumes the same run
    printed = capsys.readouterr().out
    assert "resuming pretraining at batch 1" in printed and "imitating" not in printed
    assert load_pretrained(out)["meta"]["imitation"] == meta["imitation"]


def test_learners_copy_only_the_teachers_that_meet_the_criterion_themselves():
    from agents.sb3.imitation import Imitation, competent_teachers, imitate

    gru128 = ROOT / "agents" / "pretrained" / "gru128.pt"
    networks, figures = competent_teachers(gru128, competence)
    errors, deviations = figures["endpoint_error_cm_per_learner"], figures["abs_lateral_deviation_cm_per_learner"]
    assert networks == [i for i, (e, d) in enumerate(zip(errors, deviations, strict=True)) if e < 2 and d < 1]
    assert 0 < len(networks) < 8  # the shipped GRU-128s: some reach well enough, some do not
    assert competent_teachers(gru128, lambda r: competence(r, 0.001, 0.001))[0] == list(range(8))  # none: all
    agent = SB3Agent(make_spec("PPO", hyperparams=_fast("PPO")), paper_schedule(), 3, env_id="ArmReach-v0")
    out = imitate(agent, Imitation(str(TEACHER), networks=(5, 2), episodes=64, steps=1))
    assert out["teacher_networks"] == [5, 2]  # learners 0, 1, 2 copy networks 5, 2, 5
    for bad in [(), (8,), (-1,), (True,)]:
        with pytest.raises(ValueError, match=r"imitation networks must be a non-empty list of indices below 8"):
            imitate(agent, Imitation(str(TEACHER), networks=bad, episodes=64, steps=1))


def test_each_learner_ships_the_weights_of_the_first_check_it_passes(tmp_path):
    """Learner 0 passes at the first check only: it keeps those weights; learner 1 never passes and
    ships its latest; a rerun of the finished call gives the same file."""
    from agents.sb3.pretraining import PretrainArgs, pretrain

    spec = make_spec("PPO", hyperparams=_fast("PPO"))
    calls = []

    def first_check_only_for_learner_0(record):
        calls.append(1)
        return np.array([len(calls) == 1, False]), {"competent": f"{int(len(calls) == 1)}/2"}

    out = tmp_path / "ppo.pt"
    args = PretrainArgs(batches=2, networks=2, check_every=1)
    pretrain(spec, args, out, competent=first_check_only_for_learner_0)
    shipped = load_pretrained(out)["policies"]
    start = SB3Agent(spec, null_schedule(), 2, seed=args.seed, env_id="ArmReach-v0")  # the same learners, untrained
    for name, value in start.learners[0].model.policy.state_dict().items():
        torch.testing.assert_close(shipped[0][name], value)
    assert any(not torch.equal(shipped[1][n], v) for n, v in start.learners[1].model.policy.state_dict().items())
    pretrain(spec, args, out, competent=first_check_only_for_learner_0)  # resumes at the end: same result
    for again, before in zip(load_pretrained(out)["policies"], shipped, strict=True):
        for name, value in before.items():
            torch.testing.assert_close(again[name], value)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--agent", "sb3:PPO", "--imitate", "missing.pt"], "--imitate must be a file of BPTT networks"),
        (["--agent", "sb3:PPO", "--imitate", str(TEACHER), "--imitation-steps", "-2"], "--imitation-steps must be"),
        (["--agent", "gru", "--imitate", str(TEACHER)], "--imitate is for SB3 agents"),
        (["--agent", "sb3:SAC", "--imitate", str(TEACHER)], "--imitate needs an actor-critic policy"),
    ],
)
def test_bad_imitation_arguments_fail_before_any_training(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", *argv, "--batches", "1", "--out", str(tmp_path / "w.pt")])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_hyperparams_on_the_command_line_read_exponents_as_numbers():
    from benchmarks.cli import _hyperparams

    parsed = _hyperparams(["learning_rate=1e-4", "clip_range=.2E+1", "policy=MlpPolicy", "ent_coef=3.0e-4", "a.yml"])
    assert parsed == [
        {"learning_rate": 1e-4},
        {"clip_range": 2.0},
        {"policy": "MlpPolicy"},
        {"ent_coef": 3e-4},
        "a.yml",
    ]
    assert isinstance(parsed[0]["learning_rate"], float)
    nested = _hyperparams(["policy_kwargs={optimizer_kwargs: {eps: 1e-3, betas: [0.9, 1e-1]}}"])
    assert nested == [{"policy_kwargs": {"optimizer_kwargs": {"eps": 1e-3, "betas": [0.9, 0.1]}}}]


@pytest.mark.parametrize(
    ("algo", "env_id"),
    [("RecurrentPPO", "ArmCurlField-v0"), ("PPO", "ArmCurlField-v0"), ("RecurrentPPO", "ArmCurlFieldCued-v0")],
)
def test_shipped_rl_weights_fit_the_shipped_hyperparameters(algo, env_id):
    """The quick preset starts from these files only while they match the shipped yaml's networks."""
    from agents.sb3.pretraining import shipped_pretrained

    spec = make_spec(algo, env_id)
    blob = load_pretrained(shipped_pretrained(spec))
    assert fits(blob, spec, 5), f"{shipped_pretrained(spec)} no longer fits {algo} on {env_id}: re-run its pretraining"
    assert blob["meta"]["imitate"] == "agents/pretrained/gru128.pt" and len(blob["policies"]) == 5


def test_an_algorithm_without_shipped_hyperparameters_says_so():
    with pytest.warns(UserWarning, match=r"sb3:A2C has no shipped hyperparameters \(no a2c.yml"):
        make_spec("A2C")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        make_spec("A2C", hyperparams={"n_steps": 100})  # chosen: no notice
        make_spec("PPO")  # shipped: no notice


def test_exploration_std_is_set_after_loading_shipped_weights_and_recorded():
    """Issue 19: a shipped learner's exploration is settable without changing which files fit it."""
    spec = make_spec("RecurrentPPO", hyperparams={"exploration_std": 0.01})
    blob = load_pretrained(ROOT / "agents" / "pretrained" / "recurrentppo.pt")
    assert fits(blob, spec, 5)  # the std is not part of what a pretrained file must match
    agent = SB3Agent(spec, paper_schedule(), 2, pretrained=blob)
    for learner, weights in zip(agent.learners, blob["policies"][:2], strict=True):
        torch.testing.assert_close(learner.model.policy.log_std.exp(), torch.full((6,), 0.01))
        assert not torch.allclose(weights["log_std"].exp(), torch.full((6,), 0.01))  # the file's own differs
        torch.testing.assert_close(
            learner.model.policy.state_dict()["lstm_actor.weight_hh_l0"], weights["lstm_actor.weight_hh_l0"]
        )
    assert spec.as_config()["exploration_std"] == 0.01
    assert make_spec("RecurrentPPO").exploration_std is None  # unset: the file's own std is kept
    for bad, message in (
        ({"exploration_std": 0}, "exploration_std=0: must be a positive number"),
        ({"exploration_std": "wide"}, "exploration_std='wide': must be a positive number"),
        ({"exploration_std": 0.1, "use_sde": True}, "no state-independent action std"),
    ):
        with pytest.raises(ValueError, match=message):
            make_spec("PPO", hyperparams=bad)
    with pytest.raises(ValueError, match="sb3:SAC with MlpPolicy has no state-independent action std"):
        make_spec("SAC", hyperparams={"exploration_std": 0.1})


def test_optimizer_settings_reach_the_learners_from_shipped_weights_and_are_recorded():
    """Issue 19: Adam's eps is settable on the shipped learners, from the command line, without
    repeating the yaml's policy_kwargs and without changing which files fit them."""
    from benchmarks.cli import _hyperparams

    shipped = make_spec("PPO", reaches_per_update=64)
    given = _hyperparams(["learning_rate=1e-4", "policy_kwargs={optimizer_kwargs: {eps: 1e-3}}"])
    spec = make_spec("PPO", hyperparams=given, reaches_per_update=64)
    assert spec.policy_kwargs == shipped.policy_kwargs | {"optimizer_kwargs": {"eps": 1e-3}}  # net_arch etc. kept
    assert spec.architecture() == shipped.architecture()  # how it learns is not what it is
    assert spec.as_config()["policy_kwargs"]["optimizer_kwargs"] == {"eps": 1e-3}  # the result's config.sb3
    blob = load_pretrained(ROOT / "agents" / "pretrained" / "ppo.pt")
    assert fits(blob, spec, 5)
    agent = SB3Agent(spec, paper_schedule(), 2, pretrained=blob)
    for learner, weights in zip(agent.learners, blob["policies"][:2], strict=True):
        group = learner.model.policy.optimizer.param_groups[0]
        assert isinstance(learner.model.policy.optimizer, torch.optim.Adam)
        assert (group["eps"], group["lr"]) == (1e-3, 1e-4)
        torch.testing.assert_close(learner.model.policy.state_dict()["action_net.weight"], weights["action_net.weight"])
    default = SB3Agent(shipped, paper_schedule(), 1, pretrained=blob).learners[0].model.policy.optimizer
    assert default.param_groups[0]["eps"] == 1e-5  # SB3's for Adam when optimizer_kwargs is unset

    sgd = make_spec(
        "PPO", hyperparams={"policy_kwargs": "dict(optimizer_class=th.optim.SGD, optimizer_kwargs=dict(momentum=0.9))"}
    )
    assert sgd.policy_kwargs["optimizer_class"] == "optim.SGD" and fits(blob, sgd, 5)
    optimizer = SB3Agent(sgd, paper_schedule(), 1, pretrained=blob).learners[0].model.policy.optimizer
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.param_groups[0]["momentum"] == 0.9


@pytest.mark.parametrize(
    ("policy_kwargs", "message"),
    [
        ({"optimizer_kwargs": {"eps": 0}}, "optimizer_kwargs eps=0: must be a positive number"),
        ({"optimizer_kwargs": {"eps": -1e-3}}, "optimizer_kwargs eps=-0.001: must be a positive number"),
        ({"optimizer_kwargs": {"eps": "1e-3"}}, "optimizer_kwargs eps='1e-3': must be a positive number"),
        ({"optimizer_kwargs": {"eps": True}}, "optimizer_kwargs eps=True: must be a positive number"),
        (
            {"optimizer_kwargs": {"epsilon": 1e-3}},
            r"optimizer_kwargs: unknown key\(s\) \['epsilon'\] for torch.optim.Adam; valid keys",
        ),
        ({"optimizer_kwargs": {"lr": 1e-3}}, "optimizer_kwargs: lr is set by learning_rate"),
        ({"optimizer_kwargs": [1e-3]}, "optimizer_kwargs must be a mapping"),
        (
            {"optimizer_kwargs": {"betas": [0.9, 2.0]}},
            r"optimizer_kwargs=\{'betas': \[0.9, 2.0\]\}: torch.optim.Adam refuses them \(Invalid beta",
        ),
        ({"optimizer_class": "Adamm"}, r"optimizer_class='Adamm': use one of \['optim.Adam'"),
        ({"optimizer_class": None}, r"optimizer_class=None: use one of \['optim.Adam'"),
        (
            {"optimizer_class": "SGD", "optimizer_kwargs": {"eps": 1e-3}},
            r"optimizer_kwargs: unknown key\(s\) \['eps'\] for torch.optim.SGD",
        ),
    ],
)
def test_bad_optimizer_settings_are_refused_naming_the_argument(policy_kwargs, message):
    with pytest.raises(ValueError, match=f"hyperparams policy_kwargs {message}"):
        make_spec("PPO", hyperparams={"policy_kwargs": policy_kwargs})


def test_the_smoke_preset_caps_an_off_policy_learners_gradient_steps_per_batch(capsys):
    from agents.sb3.spec import gradient_steps_per_batch
    from benchmarks.savings.learners import SMOKE_GRADIENT_STEPS, smoke_sized
    from benchmarks.savings.presets import get_preset

    spec = make_spec("SAC", hyperparams={"buffer_size": 5000})
    assert gradient_steps_per_batch(spec) == 100  # SB3's default: one per env step of the 8 arms
    assert smoke_sized(spec, get_preset("quick")) is spec
    capped = smoke_sized(spec, get_preset("smoke").with_changes({"NF1": 1}))
    assert f"{SMOKE_GRADIENT_STEPS} gradient steps per batch" in capsys.readouterr().out
    assert gradient_steps_per_batch(capped) == SMOKE_GRADIENT_STEPS == capped.algo_kwargs["gradient_steps"]
    assert capped.sources[-1] == f"preset smoke: {SMOKE_GRADIENT_STEPS} gradient steps per batch"  # in the config
    agent = SB3Agent(capped, paper_schedule(batches={"NF1": 2}), num_networks=1, seed=0)
    agent.train(8)
    agent.train(8)
    assert agent.learners[0].model._n_updates == 2 * SMOKE_GRADIENT_STEPS  # what SB3 really did
    ppo = make_spec("PPO")
    assert smoke_sized(ppo, get_preset("smoke")) is ppo  # on-policy work is the rollout's: unchanged
