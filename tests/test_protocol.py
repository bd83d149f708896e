"""The protocol runner end to end: result files, resume after a stop or a kill, bad input."""

import json
import os
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from helpers import kill_and_resume

from benchmarks.board import schema
from benchmarks.cli import main
from benchmarks.savings.learners import bptt_agent_factory
from benchmarks.savings.presets import Preset
from benchmarks.savings.protocol import run_protocol
from benchmarks.savings.run import run

ROOT = Path(__file__).resolve().parent.parent

# the shipped GRU-16 networks 0 and 1 reach (endpoint errors 2.2 and 2.9 cm): the competence gate keeps them
TINY = Preset("tiny", {"NF1": 1, "FF1": 3, "NF2": 1, "FF2": 3}, use_shipped_pretrained=True)


def _run(out, stop_after=None, **controls):
    """Two shipped GRU-16 networks through TINY (with ``practice_control`` / ``reset_control`` as given)."""
    make, provenance = bptt_agent_factory("gru", 16, 2, TINY, out, seed=1, device="cpu")
    config = {"agent": "gru", "hidden": 16, "networks": 2, "seed": 1}
    return run_protocol(make, TINY, out, config, progress=False, stop_after=stop_after, **controls)


def test_run_writes_a_self_describing_result(tmp_path):
    result = _run(tmp_path)
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["format"] == "savings-gym-result" and on_disk["config"]["preset"]["name"] == "tiny"
    assert set(on_disk["learning_curves"]) == {"NF1", "FF1", "NF2", "FF2"}
    assert np.asarray(on_disk["learning_curves"]["FF1"]).shape == (2, 3)
    assert "motornet" in on_disk["versions"] and result["metrics"]["aggregate"]["networks"] == 2
    assert result["competence"]["per_network"]["competent"] == [True, True]  # both reach: every metric has both
    with np.load(tmp_path / "curves.npz") as curves:
        assert curves["FF2"].shape == (2, 3, 8) and np.isfinite(curves["FF2"]).all()
    for figure in ("learning_curves.png", "hand_paths.png", "savings_index.png"):
        assert (tmp_path / "figures" / figure).stat().st_size > 1000
    assert not [p for p in tmp_path.rglob("*.tmp*")], "a temporary file was left behind"
    assert sorted(p.name for p in (tmp_path / "phase_ends").iterdir()) == ["FF1.pt", "FF2.pt", "NF1.pt", "NF2.pt"]


def test_a_bptt_run_writes_a_leaderboard_submission(tmp_path):
    run("gru", 16, 2, TINY, tmp_path, seed=1, progress=False)
    on_disk = json.loads((tmp_path / "result.json").read_text())
    jsonschema.Draft202012Validator(schema.SUBMISSION_SCHEMA).validate(on_disk)
    assert len(on_disk["config"]["seeds"]) == 2 and len(set(on_disk["config"]["seeds"])) == 2
    task = on_disk["config"]["task"]  # what the curves were measured under
    assert task["test_go_time"] == 0.10 and task["vision_delay"] == 0.07 and task["proprioception_delay"] == 0.02
    assert task["targets"] == "centre_out" and task["trial_steps"] == 100


def test_a_stopped_run_resumes_to_the_same_curves(tmp_path):
    whole = _run(tmp_path / "whole")
    assert _run(tmp_path / "split", stop_after=4) is None
    assert not (tmp_path / "split" / "result.json").exists()
    resumed = _run(tmp_path / "split")
    assert resumed["learning_curves"] == whole["learning_curves"]


def test_resume_refuses_another_runs_checkpoint_naming_only_what_differs(tmp_path):
    _run(tmp_path, stop_after=2)
    make, _ = bptt_agent_factory("gru", 16, 2, TINY, tmp_path, seed=1, device="cpu")
    with pytest.raises(ValueError, match="another run") as error:
        run_protocol(make, TINY, tmp_path, {"agent": "gru", "hidden": 16, "networks": 2, "seed": 2}, progress=False)
    message = str(error.value)
    assert "differs in seed (was 1, now 2)." in message and "use another --out or delete" in message
    assert "preset" not in message and "hidden" not in message  # only the field that differs


def test_rerunning_a_finished_run_says_it_is_complete_and_runs_nothing(tmp_path, capsys):
    make, _ = bptt_agent_factory("gru", 16, 2, TINY, tmp_path, seed=1, device="cpu")
    config = {"agent": "gru", "hidden": 16, "networks": 2, "seed": 1}
    whole = run_protocol(make, TINY, tmp_path, config, progress=False, checkpoint_seconds=0)
    assert not (tmp_path / "checkpoint.pt").exists()  # checkpointed every batch, removed once finished
    assert len(list((tmp_path / "phase_ends").iterdir())) == 4  # what savings-gym latent reads stays

    def never(envs):
        raise AssertionError("a finished run built a learner")

    capsys.readouterr()
    again = run_protocol(never, TINY, tmp_path, config, progress=False)
    assert again["learning_curves"] == whole["learning_curves"] and again["command"] == whole["command"]
    assert "is complete" in capsys.readouterr().out
    with pytest.raises(ValueError, match=r"finished run of another config: differs in networks \(was 2, now 3\)"):
        run_protocol(never, TINY, tmp_path, {**config, "networks": 3}, progress=False)


def test_an_edited_learner_file_is_named_as_the_difference(tmp_path):
    from benchmarks.savings.learners import custom_agent_factory

    learner = tmp_path / "mine.py"
    learner.write_text((ROOT / "examples" / "reinforce.py").read_text())

    def attempt():
        make, details = custom_agent_factory(f"{learner}:Reinforce", 16, 2, tmp_path / "out", seed=0, device="cpu")
        return run_protocol(make, TINY, tmp_path / "out", {"agent": "mine", **details}, progress=False, stop_after=1)

    assert attempt() is None
    learner.write_text(learner.read_text() + "# an edit\n")
    with pytest.raises(ValueError) as error:
        attempt()
    message = str(error.value)
    assert "differs in learner.source_sha256 (was " in message and "the learner's source file changed" in message
    assert "run its own command" in message and len(message) < 600


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--agent", "transformer"], "--agent must be one of"),
        (["run", "--preset", "fast"], "unknown preset 'fast'"),
        (["run", "--hidden", "0"], "--hidden must be >= 1"),
        (["run", "--networks", "0"], "--networks must be >= 1"),
        (["run", "--out", "/proc/no/such/place"], "not a writable folder"),
    ],
)
def test_bad_command_lines_fail_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_corrupt_pretrained_checkpoint_is_reported(tmp_path, capsys):
    (tmp_path / "pretrained.state").write_bytes(b"garbage")
    with pytest.raises(SystemExit):
        main(["run", "--preset", "smoke", "--hidden", "8", "--networks", "1", "--out", str(tmp_path)])
    assert "pretrained.state" in capsys.readouterr().err
    assert not (tmp_path / "result.json").exists()


@pytest.mark.slow
def test_a_killed_run_resumed_with_the_same_command_ends_identically(tmp_path):
    def command(out):
        return [
            sys.executable,
            "-m",
            "benchmarks.cli",
            "run",
            "--preset",
            "smoke",
            "--hidden",
            "8",
            "--networks",
            "2",
            "--out",
            str(out),
            "--checkpoint-seconds",
            "0",
        ]

    whole, killed = kill_and_resume(command, tmp_path, env={**os.environ, "PYTHONUNBUFFERED": "1"}, settle=3)
    assert killed["learning_curves"] == whole["learning_curves"]


def test_result_files_name_their_starting_weights_portably_with_a_hash(tmp_path):
    import hashlib

    from benchmarks.savings.learners import PROJECT_ROOT, weights_provenance

    shipped = PROJECT_ROOT / "agents" / "pretrained" / "gru16.pt"
    assert weights_provenance(shipped, tmp_path) == {
        "pretrained_from": "agents/pretrained/gru16.pt",
        "pretrained_sha256": hashlib.sha256(shipped.read_bytes()).hexdigest(),
    }
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "pretrained.pt").write_bytes(b"weights")
    (tmp_path / "elsewhere.pt").write_bytes(b"other weights")
    assert weights_provenance(tmp_path / "run" / "pretrained.pt", tmp_path / "run")["pretrained_from"] == (
        "<run>/pretrained.pt"
    )
    outside = weights_provenance(tmp_path / "elsewhere.pt", tmp_path / "run")
    assert outside["pretrained_from"] == str(tmp_path / "elsewhere.pt")
    assert outside["pretrained_sha256"] == hashlib.sha256(b"other weights").hexdigest()
    assert weights_provenance(None, tmp_path) == {"pretrained_from": None, "pretrained_sha256": None}


def test_the_practice_control_trains_copies_of_the_same_networks_without_touching_the_main_run(tmp_path):
    plain = run("gru", 16, 2, TINY, tmp_path / "plain", seed=1, progress=False)
    both = run("gru", 16, 2, TINY, tmp_path / "control", seed=1, progress=False, practice_control=True)
    curves = {phase: np.asarray(c) for phase, c in both["learning_curves"].items()}
    assert curves["NFC"].shape == (2, 5) and curves["FFC"].shape == (2, 3)  # NF1 + FF1 + NF2, then FF2's length
    # the main run is the run without the control, batch for batch: the control trains its own copies
    for phase in ("NF1", "FF1", "NF2", "FF2"):
        assert both["learning_curves"][phase] == plain["learning_curves"][phase]
    # the same networks: before any update both copies make the same null-field reaches
    assert np.array_equal(curves["NFC"][:, 0], curves["NF1"][:, 0])
    assert not np.allclose(curves["NFC"][:, 1:3], curves["FF1"][:, 0:2])  # null field, not FF1's field
    assert both["config"]["practice_control"] is True and plain["config"]["practice_control"] is False
    control = both["metrics"]["practice_control"]
    assert len(control["per_network"]["savings_index_vs_control"]) == 2
    assert set(control) == {"per_network", "aggregate", "fit_free_vs_control", "fit_free_practice"}
    assert {"NFC.pt", "FFC.pt"} <= {p.name for p in (tmp_path / "control" / "phase_ends").iterdir()}
    on_disk = json.loads((tmp_path / "control" / "result.json").read_text())
    jsonschema.Draft202012Validator(schema.SUBMISSION_SCHEMA).validate(on_disk)
    # the learning-curve figure shows the control beside FF1 and FF2
    from benchmarks.savings.figures import learning_curves_figure

    labels = [t.get_text() for t in learning_curves_figure(both).axes[0].get_legend().get_texts()]
    assert labels == ["FF1 (n=2)", "FF2 (n=2)", "FFC: practice control (n=2)"]
    assert len(learning_curves_figure(plain).axes[0].get_legend().get_texts()) == 2


def test_a_stopped_run_with_the_practice_control_resumes_to_the_same_curves(tmp_path):
    whole = _run(tmp_path / "whole", practice_control=True)
    assert _run(tmp_path / "split", stop_after=3, practice_control=True) is None
    assert _run(tmp_path / "split", practice_control=True)["learning_curves"] == whole["learning_curves"]


def test_a_practice_control_sharing_the_main_runs_weights_is_refused(tmp_path):
    import torch

    shared = torch.zeros(3)

    class Learner:  # a custom learner whose make_agent hands out the same weights twice
        num_networks = 1

        def state_dict(self):
            return {"weights": shared}

    with pytest.raises(ValueError, match="share weights"):
        run_protocol(lambda envs: Learner(), TINY, tmp_path, {"agent": "x"}, progress=False, practice_control=True)


def test_phase_lengths_and_task_constants_from_the_command_line(tmp_path):
    result = run("gru", 16, 2, TINY, tmp_path, seed=1, progress=False, phases={"NF1": 2}, task={"test_go_time": 0.44})
    assert result["config"]["preset"]["name"] == "tiny:NF1=2" and result["config"]["preset"]["batches"]["NF1"] == 2
    assert np.asarray(result["learning_curves"]["NF1"]).shape == (2, 2)
    assert result["config"]["task"]["test_go_time"] == 0.44
    with pytest.raises(ValueError, match="phase batches: unknown phase 'NF3'"):
        TINY.with_changes({"NF3": 1})
    with pytest.raises(ValueError, match="NF1 must be an integer >= 0"):
        TINY.with_changes({"NF1": -1})
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        TINY.with_changes(lr=0.0)
    changed = TINY.with_changes({"FF1": 3}, lr=0.005)
    assert (changed.name, changed.lr, changed.batches["FF1"]) == ("tiny:lr=0.005,FF1=3", 0.005, 3)
    assert TINY.with_changes() is TINY


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--phases", "NF3=2"], "expected PHASE=BATCHES with PHASE one of"),
        (["run", "--phases", "NF1=-2"], "expected PHASE=BATCHES"),
        (["run", "--task", "test_go_time"], "expected NAME=NUMBER"),
        (["run", "--task", "no_such_constant=1", "--preset", "smoke"], "--task: unknown task parameter(s)"),
        (["run", "--task", "test_go_time=-1", "--preset", "smoke"], "--task: test_go_time"),
        (["run", "--task", "vision_delay=0.065", "--preset", "smoke"], "not a whole number of dt"),
        (["run", "--control", "placebo"], "invalid choice: 'placebo'"),
        (["run", "--lr", "-0.1"], "--lr expected a positive number"),
        (["run", "--lr", "fast"], "--lr expected a positive number"),
    ],
)
def test_bad_protocol_options_fail_before_any_work(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "checkpoint.pt").exists()


class StillLearner:
    """Two learners that never move, in a vector env of 16 arms: where the env comes from is the test."""

    num_networks = 2

    def __init__(self, envs, where="given", restores=True):
        import gymnasium as gym

        self.envs, self.restores = envs, restores
        if where == "given":
            self.env = envs.vector(16, num_worlds=2)
        else:  # builds its own env in the null field throughout (and, for "both", ignores the one it asked for)
            self.env = gym.make_vec("ArmCurlField-v0", num_envs=16, num_worlds=2, schedule=[("NF", 0.0, None)])
            if where == "both":
                envs.vector(16, num_worlds=2)
        self.env.reset(seed=0)
        self.fresh = True

    def train(self, episodes):
        if not self.fresh:  # each batch starts new episodes (rather than the autoreset's empty step)
            self.env.reset()
        self.fresh = False
        for _ in range(100):
            self.env.step(np.zeros((16, 6), np.float32))

    def evaluate(self, field_gain):
        from agents.interface import run_test_reaches

        return run_test_reaches(lambda obs, t: np.zeros((len(obs), 6), np.float32), 2, field_gain)

    def state_dict(self):
        return {"env": self.env.unwrapped.get_state()}

    def load_state_dict(self, state):
        if self.restores:
            self.env.unwrapped.set_state(state["env"])
        self.fresh = False


@pytest.mark.parametrize(
    "where, message",
    [
        ("own", "built no env from the ProtocolEnvs"),
        ("both", "before batch 2: env 0 .* has completed 0 training episodes per world, the schedule says 8"),
    ],
)
def test_a_learner_that_does_not_train_in_the_envs_it_is_given_is_refused(tmp_path, where, message):
    from agents.interface import ScheduleMismatchError

    with pytest.raises(ScheduleMismatchError, match=message):
        run_protocol(lambda envs: StillLearner(envs, where), TINY, tmp_path, {"agent": "still"}, progress=False)
    assert not (tmp_path / "result.json").exists()


def test_a_resume_that_skips_batches_is_refused(tmp_path):
    from agents.interface import ScheduleMismatchError

    def go(restores, stop_after=3):
        make = lambda envs: StillLearner(envs, restores=restores)  # noqa: E731
        return run_protocol(make, TINY, tmp_path, {"agent": "still"}, progress=False, stop_after=stop_after)

    assert go(restores=True) is None
    # a learner whose checkpoint forgets its env: the env restarts at episode 0, the run is at batch 3
    with pytest.raises(ScheduleMismatchError, match="before batch 4: .* completed 0 .* schedule says 24"):
        go(restores=False)
    assert np.asarray(go(restores=True, stop_after=None)["learning_curves"]["FF2"]).shape == (2, 3)  # restored: on


def test_each_learner_gets_envs_on_its_own_schedule_and_the_protocol_decides_what_they_are(tmp_path):
    seen = []

    def make(envs):
        seen.append(envs)
        return StillLearner(envs)

    run_protocol(
        make, TINY, tmp_path, {"agent": "still"}, progress=False, practice_control=True, task={"test_go_time": 0.2}
    )
    main_run, control = seen
    assert main_run.schedule == TINY.schedule() and control.schedule == TINY.practice_schedule()
    assert control.built[0].unwrapped.schedule.names == ("NFC", "FFC")
    assert [env.unwrapped.episodes_completed for env in (*main_run.built, *control.built)] == [64, 64]
    assert main_run.built[0].unwrapped.params.test_go_time == 0.2 and main_run.env_id == "ArmCurlField-v0"
    with pytest.raises(ValueError, match="the protocol sets the schedule, env id and task constants"):
        main_run.vector(8, phase_episodes={"FF1": 0})


def test_a_preset_names_the_pretrained_file_its_bptt_runs_start_from(tmp_path, monkeypatch):
    """``bptt_pretrained`` picks a shipped file when its cell and size match; otherwise the run pretrains."""
    from dataclasses import replace

    from benchmarks.savings.presets import PRESETS

    monkeypatch.setenv("SAVINGS_GYM_BPTT_ENGINE", "eager")
    named = replace(TINY, use_shipped_pretrained=True, bptt_pretrained="gru16.pt", pretrain_batches=1)
    _, provenance = bptt_agent_factory("gru", 16, 2, named, tmp_path / "a", seed=1, device="cpu")
    assert provenance["pretrained_from"] == "agents/pretrained/gru16.pt"
    _, provenance = bptt_agent_factory("gru", 8, 2, named, tmp_path / "b", seed=1, device="cpu")  # size differs
    assert provenance["pretrained_from"] == "<run>/pretrained.pt"
    faithful = PRESETS["faithful"]
    assert (faithful.lr, faithful.bptt_pretrained, faithful.batches["NF2"]) == (5e-3, "gru128-faithful.pt", 600)


def test_the_progress_line_in_a_log_is_at_most_20_lines_however_short_or_long_the_run(capsys):
    from benchmarks.savings.protocol import _progress

    for total in (1, 7, 37, 600):
        update = _progress(total, 0, True)
        for done in range(1, total + 1):
            update(done, "FF1", 0.01)
        lines = capsys.readouterr().out.splitlines()  # pytest's captured stdout is not a terminal
        assert 1 <= len(lines) <= 20 and lines[-1].startswith(f"[{'#' * 30}] {total}/{total} batches  FF1")
