"""Every bad argument is one line on stderr and exit code 2: no traceback, nothing written."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.cli import main

ROOT = Path(__file__).parent.parent
SHIPPED = ROOT / "leaderboard" / "gru-32-20017918"


def _fails(capsys, argv: list[str], *words: str) -> str:
    with pytest.raises(SystemExit) as code:
        main(argv)
    assert code.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("savings-gym: error: ") and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


@pytest.mark.parametrize(
    "argv, words",
    [
        (["run", "--threads", "-1"], ["--threads must be >= 0 (an integer)"]),
        (["run", "--device", "bogus"], ["--device", "bogus"]),
        (["run", "--checkpoint-seconds", "-5"], ["--checkpoint-seconds"]),
        (["run", "--networks", "0"], ["--networks"]),
        (["bench", "sweep", "--workers", "0"], ["--workers", ">= 1"]),
        (["sweep", "--checkpoint-seconds", "-1"], ["--checkpoint-seconds"]),
        (["pretrain", "--threads", "-1"], ["--threads"]),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(capsys, tmp_path, argv, words):
    _fails(capsys, [*argv, *(["--out", str(tmp_path / "out")] if argv[0] in ("run", "sweep") else [])], *words)
    assert not (tmp_path / "out").exists()


def test_cuda_without_a_gpu(capsys, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    _fails(capsys, ["run", "--device", "cuda", "--out", str(tmp_path / "out")], "--device", "CUDA")
    assert not (tmp_path / "out").exists()


def test_sweep_field_gain_outside_the_physical_range(capsys, tmp_path):
    out = tmp_path / "sweep"
    _fails(capsys, ["sweep", "--field-gain", "1e6", "--preset", "smoke", "--out", str(out)], "--field-gain", "N*s/m")
    assert not out.exists()


def test_a_refused_run_leaves_no_empty_out_folder(capsys, tmp_path):
    out = tmp_path / "run"
    _fails(capsys, ["run", "--agent", "nonsense", "--preset", "smoke", "--out", str(out)])
    assert not out.exists()


def test_leaderboard_folders_and_files(capsys, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    _fails(capsys, ["leaderboard", "render", "--board", str(ROOT / "leaderboard"), "--out", str(a_file)], "--out")
    _fails(capsys, ["leaderboard", "add", str(SHIPPED), "--board", str(a_file)], "--board", "is a file")
    missing = ["leaderboard", "render", "--board", str(tmp_path / "none"), "--out", str(tmp_path / "s")]
    _fails(capsys, missing, "no such")
    _fails(capsys, ["leaderboard", "validate", str(SHIPPED), "--board", str(tmp_path / "none")], "no such folder")
    assert not (tmp_path / "s").exists() and not (tmp_path / "none").exists()
    run = tmp_path / "run"
    shutil.copytree(SHIPPED, run)
    (run / "result.json").unlink()
    (run / "result.json").mkdir()
    _fails(capsys, ["report", str(run)], "result.json", "is a folder")
    (run / "result.json").rmdir()
    (run / "result.json").write_text(json.dumps({"format": "savings-gym-result"}))
    _fails(capsys, ["leaderboard", "validate", str(run)], "required property")
    _fails(capsys, ["latent", str(run)], "field_gain")


def test_a_structurally_wrong_checkpoint(capsys, tmp_path):
    import torch

    out = tmp_path / "run"
    out.mkdir()
    torch.save({"config": 1}, out / "checkpoint.pt")
    _fails(capsys, ["run", "--preset", "smoke", "--hidden", "8", "--networks", "1", "--out", str(out)], "checkpoint")


def test_hostile_text_does_not_reach_the_terminal(capsys, tmp_path):
    run = tmp_path / "evil\x1b[31m"
    shutil.copytree(SHIPPED, run)
    err = _fails(capsys, ["leaderboard", "add", str(run), "--board", str(tmp_path / "b"), "--name", "x\x07"])
    assert "\x1b" not in err and "\x07" not in err and "\\x1b" in err


def test_the_installed_script_prints_no_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.cli", "leaderboard", "validate", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1, done.stderr
