"""Sweeps: Ray and the process pool write the same result files, a killed sweep reruns without
redoing finished cells, a failing cell is retried then reported, bad input fails before any work,
the sweep report, and the ``bench sweep`` smoke runs."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import jsonschema
import numpy as np
import pytest
import torch

from benchmarks.board import schema
from benchmarks.cli import main
from benchmarks.savings.presets import Preset
from benchmarks.sweep.cells import MANIFEST, RAY_EXTRA, SUMMARY
from benchmarks.sweep.runner import parse_ints, run_sweep
from benchmarks.sweep.summary import SUMMARY_COLUMNS, group_savings, summary_table

# two FF phases of 2 batches after 1 pretraining batch: seconds per cell (its numbers mean nothing)
MINI = Preset("mini", {"NF1": 0, "FF1": 2, "NF2": 0, "FF2": 2}, pretrain_batches=1, use_shipped_pretrained=False)
CELLS = {"agents": "gru", "hidden": [8], "networks": 1, "preset": MINI, "seeds": [0, 1]}
NAMES = ["gru_h8_k8_s0", "gru_h8_k8_s1"]


def _files(folder):
    """What must match between two runs of a cell: the learning curves and every test reach's deviation."""
    result = json.loads((folder / "result.json").read_text())
    with np.load(folder / "curves.npz") as curves:
        return result["learning_curves"], {phase: curves[phase] for phase in curves.files}


def _same_files(a, b):
    curves_a, reaches_a = _files(a)
    curves_b, reaches_b = _files(b)
    assert curves_a == curves_b
    assert reaches_a.keys() == reaches_b.keys()
    for phase in reaches_a:
        np.testing.assert_array_equal(reaches_a[phase], reaches_b[phase])


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    return out, run_sweep(**CELLS, out=out, log=None)


def test_a_local_sweep_writes_every_cells_result_files_and_a_summary(local_sweep):
    out, manifest = local_sweep
    assert manifest["counts"] == {"done": 2} and sorted(manifest["cells"]) == NAMES
    for seed, name in enumerate(NAMES):
        result = json.loads((out / name / "result.json").read_text())
        jsonschema.Draft202012Validator(schema.SUBMISSION_SCHEMA).validate(result)  # a submission as it is
        assert result["config"]["seed"] == seed and result["config"]["preset"]["field_gain"] == 8.0
        assert (out / name / "figures" / "learning_curves.png").exists() and (out / name / "run.log").exists()
    assert json.loads((out / MANIFEST).read_text())["cells"] == manifest["cells"]
    group = json.loads((out / SUMMARY).read_text())["groups"][0]
    assert (group["hidden"], group["networks"], group["cells"]) == (8, 2, NAMES)
    assert set(group["first_error_FF1_cm"]) == {"estimate", "low", "high"}
    pretrained = [
        json.loads((out / name / "result.json").read_text())["config"]["pretrained_meta"]["test_endpoint_error_m"]
        for name in NAMES
    ]  # one network per cell: the plain mean of the cells
    assert group["pretrained_endpoint_error_cm"] == pytest.approx(100 * np.mean(pretrained))
    assert (out / "figures" / "savings_vs_hidden.png").stat().st_size > 1000
    assert not list(out.rglob("*.tmp*")), "a temporary file was left behind"


def test_ray_tasks_write_the_same_result_files_as_the_local_pool(local_sweep, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        manifest = run_sweep(**CELLS, out=tmp_path / "ray", backend="ray", log=None)
        with pytest.raises(ValueError, match="--gpus-per-cell 1: the Ray cluster has 0 GPUs"):
            run_sweep(**CELLS, out=tmp_path / "gpu", backend="ray", gpus_per_cell=1, log=None)
        assert ray.is_initialized(), "the sweep must leave a Ray session it did not start"
    finally:
        ray.shutdown()
    assert manifest["counts"] == {"done": 2} and manifest["spec"]["backend"] == "ray"
    for name in NAMES:
        _same_files(local_sweep[0] / name, tmp_path / "ray" / name)
    assert not (tmp_path / "gpu" / MANIFEST).exists()


VICTIM = f"""
import sys
from benchmarks.savings.protocol import Preset
from benchmarks.sweep.runner import run_sweep

if __name__ == "__main__":
    run_sweep("gru", [8], 1, {MINI!r}, sys.argv[1], seeds=[0, 1], workers=1, checkpoint_seconds=0, log=None)
"""


def test_a_killed_sweep_reruns_without_redoing_finished_cells(local_sweep, tmp_path):
    out, log = tmp_path / "sweep", tmp_path / "victim.log"
    with open(log, "wb") as output:  # a session of its own: the kill takes its worker too
        victim = subprocess.Popen(
            [sys.executable, "-c", VICTIM, str(out)], stdout=output, stderr=output, start_new_session=True
        )
    finished, started = out / NAMES[0] / "result.json", out / NAMES[1] / "checkpoint.pt"
    deadline = time.time() + 180
    while not (finished.exists() and started.exists()):  # one cell done, the other one batch in
        assert victim.poll() is None, f"the sweep ended before the kill: {log.read_text()}"
        assert time.time() < deadline, "the sweep did not get far enough in time"
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (out / NAMES[1] / "result.json").exists()
    assert json.loads((out / MANIFEST).read_text())["cells"][NAMES[1]]["status"] == "running"
    first_result = finished.stat().st_mtime_ns

    manifest = run_sweep(**CELLS, out=out, workers=1, checkpoint_seconds=0, log=None)
    assert manifest["counts"] == {"done": 2}
    assert finished.stat().st_mtime_ns == first_result and manifest["cells"][NAMES[0]]["attempts"] == 1
    assert manifest["cells"][NAMES[1]]["attempts"] == 2 and manifest["cells"][NAMES[1]]["resumed_from_checkpoint"]
    for name in NAMES:  # resumed from its checkpoint, the cell ends as if never interrupted
        _same_files(local_sweep[0] / name, out / name)


LONG_VICTIM = """
import sys
from benchmarks.savings.protocol import Preset
from benchmarks.sweep.runner import run_sweep

if __name__ == "__main__":
    long = Preset("long", {"NF1": 0, "FF1": 100000}, pretrain_batches=1, use_shipped_pretrained=False)
    run_sweep("gru", [8], 1, long, sys.argv[1], workers=1, checkpoint_seconds=0, log=None)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is dead too
        return stat.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_stop_when_the_driver_is_killed_alone(tmp_path):
    out, log = tmp_path / "sweep", tmp_path / "victim.log"
    with open(log, "wb") as output:
        driver = subprocess.Popen([sys.executable, "-c", LONG_VICTIM, str(out)], stdout=output, stderr=output)
    checkpoint, cell_log = out / "gru_h8_k8_s0" / "checkpoint.pt", out / "gru_h8_k8_s0" / "run.log"
    deadline = time.time() + 180
    while not checkpoint.exists():  # the worker is training
        assert driver.poll() is None, f"the sweep ended early: {log.read_text()}"
        assert time.time() < deadline, "the cell did not start in time"
        time.sleep(0.05)
    worker = int(cell_log.read_text().split(" pid ")[1].split()[0])
    assert worker != driver.pid and _alive(worker)
    driver.kill()  # SIGKILL: the driver cannot shut its pool down
    driver.wait()
    deadline = time.time() + 30
    while _alive(worker):
        assert time.time() < deadline, "the worker went on training after its driver was killed"
        time.sleep(0.1)
    written = checkpoint.stat().st_mtime_ns
    time.sleep(1.5)
    assert checkpoint.stat().st_mtime_ns == written


def test_a_failing_cell_is_retried_then_reported(tmp_path, capsys):
    cell = tmp_path / "gru_h8_k8_s0"
    cell.mkdir()
    (cell / "pretrained.state").write_bytes(b"garbage")  # the cell's resumable pretraining cannot load
    argv = ["sweep", "--hidden", "8", "--networks", "1", "--preset", "smoke", "--retries", "1", "--out", str(tmp_path)]
    assert main(argv) == 1
    assert "FAILED: gru_h8_k8_s0" in capsys.readouterr().out
    entry = json.loads((tmp_path / MANIFEST).read_text())["cells"]["gru_h8_k8_s0"]
    assert entry["status"] == "failed" and entry["attempts"] == 2
    assert "pretrained.state" in entry["error"] + entry["traceback"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--backend", "dask"], "--backend must be one of ['local', 'ray'], got 'dask'"),
        (["--hidden", ""], "--hidden is empty"),
        (["--hidden", "16,abc"], "--hidden must be a comma-separated list of integers"),
        (["--hidden", "16.5"], "--hidden must be a comma-separated list of integers"),
        (["--hidden", "0"], "--hidden values must be >= 1"),
        (["--seeds", "1,1"], "--seeds lists a value twice"),
        (["--field-gain", "strong"], "--field-gain must be a comma-separated list of finite numbers"),
        (["--agent", "transformer"], "--agent must be one of"),
        (["--backend", "ray", "--address", f"127.0.0.1:{_closed_port()}"], "is unreachable"),
        (["--backend", "ray", "--address", "head-node"], "--address must be 'auto', host:port"),
        (["--device", "cuda"], "--device 'cuda': no CUDA device on this machine"),
    ],
)
def test_bad_sweeps_fail_before_any_work(argv, message, tmp_path, capsys):
    if "ray" in argv:
        pytest.importorskip("ray")
    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    started = time.time()
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--hidden", "8", "--preset", "smoke", "--out", str(tmp_path / "sweep"), *argv])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert time.time() - started < 15, "bad input must fail fast"
    assert not (tmp_path / "sweep").exists() or not any((tmp_path / "sweep").iterdir())


def test_the_ray_backend_without_ray_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` does where the extra is not installed
    with pytest.raises(SystemExit):
        main(["sweep", "--backend", "ray", "--hidden", "8", "--preset", "smoke", "--out", str(tmp_path)])
    assert "--backend ray needs Ray" in capsys.readouterr().err and "savings-gym[sweep]" in RAY_EXTRA


def test_the_api_names_the_argument_too(tmp_path):
    with pytest.raises(ValueError, match="--hidden is empty"):
        run_sweep(hidden=[], out=tmp_path)
    with pytest.raises(ValueError, match="--hidden must be a comma-separated list of integers"):
        run_sweep(hidden=[16, 16.5], out=tmp_path)
    with pytest.raises(ValueError, match="--hidden must be"):
        parse_ints([True], "--hidden")
    assert parse_ints("16, 32", "--hidden") == [16, 32]


def test_report_on_a_sweep_folder(local_sweep):
    out, _ = local_sweep
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "Savings by network size" in page and NAMES[1] in page and "data:image/png;base64" in page
    group = json.loads((out / SUMMARY).read_text())["groups"][0]
    assert "pretrained endpoint error (cm)" in page and f"{group['pretrained_endpoint_error_cm']:.2f}" in page


def test_a_sweep_folder_from_elsewhere_is_read_as_carefully_as_a_submission(local_sweep, tmp_path, capsys):
    """A cell's result.json linked to a file outside the folder, or a manifest naming a cell
    outside it, is refused with one line naming the file; nothing is read through the link."""
    import shutil

    out, _ = local_sweep
    copy = tmp_path / "sweep"
    shutil.copytree(out, copy, symlinks=True)
    (copy / "report.html").unlink(missing_ok=True)  # another test may have written one
    secret = tmp_path / "elsewhere.json"
    shutil.copy(copy / NAMES[0] / "result.json", secret)
    (copy / NAMES[0] / "result.json").unlink()
    (copy / NAMES[0] / "result.json").symlink_to(secret)
    with pytest.raises(SystemExit) as refused:
        main(["report", str(copy)])
    assert refused.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and NAMES[0] in error[0] and "link" in error[0]
    (copy / NAMES[0] / "result.json").unlink()
    manifest = json.loads((copy / MANIFEST).read_text())
    manifest["cells"]["../escape"] = manifest["cells"].pop(NAMES[0])
    (copy / MANIFEST).write_text(json.dumps(manifest))
    (tmp_path / "escape").mkdir()
    shutil.copy(secret, tmp_path / "escape" / "result.json")
    with pytest.raises(SystemExit) as refused:
        main(["report", str(copy)])
    assert refused.value.code == 2 and "escape" in capsys.readouterr().err
    assert not (copy / "report.html").exists()


def test_the_summary_table_weights_pretraining_competence_by_networks():
    def cell(networks, error_m):
        per_network = {key: [0.1] * networks for key in ("savings_index", "has_savings")}
        per_network |= {"first_error_FF1": [0.04] * networks, "first_error_FF2": [0.03] * networks}
        meta = {} if error_m is None else {"test_endpoint_error_m": error_m}
        return {"config": {"networks": networks, "pretrained_meta": meta}, "metrics": {"per_network": per_network}}

    assert group_savings([cell(1, 0.01), cell(3, 0.05)])["pretrained_endpoint_error_cm"] == pytest.approx(4.0)
    assert group_savings([cell(2, None)])["pretrained_endpoint_error_cm"] is None  # e.g. an SB3 learner's
    summary = {
        "groups": [{"agent": "gru", "hidden": 16, "field_gain": 8.0, **group_savings([cell(2, None)])}],
        "missing_cells": ["gru_h32_k8_s0"],
    }
    header, rule, row, missing = summary_table(summary).splitlines()
    assert header.count("|") == rule.count("|") == row.count("|") == len(SUMMARY_COLUMNS) + 1
    assert row.endswith("| n/a |") and "+0.10 [" in row and missing == "(not finished: gru_h32_k8_s0)"


def test_bench_sweep_prints_both_sides_and_the_ratio(capsys):
    assert main(["bench", "sweep", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "run() one after another" in out and "sweep, local backend" in out
    assert "cells/hour" in out and "ratio" in out


def test_bench_sweep_devices_says_whether_a_gpu_was_found(capsys):
    assert main(["bench", "sweep", "--devices", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "cpu nb/s" in out
    assert ("no GPU found" in out) != torch.cuda.is_available()
