"""The protocol runner end to end: result files, resume after a stop or a kill, bad input."""

import json
import os
import signal
import subprocess
import sys
import time

import jsonschema
import numpy as np
import pytest

from benchmarks import leaderboard
from benchmarks.cli import main
from benchmarks.protocol import Preset, run_protocol
from benchmarks.run import bptt_agent_factory, run

TINY = Preset("tiny", {"NF1": 1, "FF1": 3, "NF2": 1, "FF2": 3}, pretrain_batches=2, use_shipped_pretrained=False)


def _run(out, stop_after=None):
    make, provenance = bptt_agent_factory("gru", 8, 2, TINY, out, seed=1, device="cpu")
    config = {"agent": "gru", "hidden": 8, "networks": 2, "seed": 1}
    return run_protocol(make, TINY, out, config, progress=False, stop_after=stop_after)


def test_run_writes_a_self_describing_result(tmp_path):
    result = _run(tmp_path)
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["format"] == "savings-gym-result" and on_disk["config"]["preset"]["name"] == "tiny"
    assert set(on_disk["learning_curves"]) == {"NF1", "FF1", "NF2", "FF2"}
    assert np.asarray(on_disk["learning_curves"]["FF1"]).shape == (2, 3)
    assert "motornet" in on_disk["versions"] and result["metrics"]["aggregate"]["networks"] == 2
    with np.load(tmp_path / "curves.npz") as curves:
        assert curves["FF2"].shape == (2, 3, 8) and np.isfinite(curves["FF2"]).all()
    for figure in ("learning_curves.png", "hand_paths.png", "savings_index.png"):
        assert (tmp_path / "figures" / figure).stat().st_size > 1000
    assert not [p for p in tmp_path.rglob("*.tmp*")], "a temporary file was left behind"
    assert sorted(p.name for p in (tmp_path / "phase_ends").iterdir()) == ["FF1.pt", "FF2.pt", "NF1.pt", "NF2.pt"]


def test_a_bptt_run_writes_a_leaderboard_submission(tmp_path):
    run("gru", 8, 2, TINY, tmp_path, seed=1, progress=False)
    on_disk = json.loads((tmp_path / "result.json").read_text())
    jsonschema.Draft202012Validator(leaderboard.SUBMISSION_SCHEMA).validate(on_disk)
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


def test_resume_refuses_another_runs_checkpoint(tmp_path):
    _run(tmp_path, stop_after=2)
    make, _ = bptt_agent_factory("gru", 8, 2, TINY, tmp_path, seed=1, device="cpu")
    with pytest.raises(ValueError, match="another run"):
        run_protocol(make, TINY, tmp_path, {"agent": "gru", "hidden": 8, "networks": 2, "seed": 2}, progress=False)


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

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run(command(tmp_path / "whole"), check=True, env=env, capture_output=True)
    victim = subprocess.Popen(
        command(tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(3)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "killed" / "result.json").exists()
    subprocess.run(command(tmp_path / "killed"), check=True, env=env, capture_output=True)
    whole = json.loads((tmp_path / "whole" / "result.json").read_text())
    killed = json.loads((tmp_path / "killed" / "result.json").read_text())
    assert killed["learning_curves"] == whole["learning_curves"]


def test_result_files_name_their_starting_weights_portably_with_a_hash(tmp_path):
    import hashlib

    from benchmarks.run import PROJECT_ROOT, weights_provenance

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
