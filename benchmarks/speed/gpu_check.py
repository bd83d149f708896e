"""The GPU check: on a machine with a CUDA GPU, run the GPU tests and time BPTT there, in one go.

``savings-gym bench gpu`` (or ``benchmarks/speed/gpu_check.sh``, which first installs what is missing)
prints one summary, within a time budget of 8 minutes:

1. the machine: torch, CUDA and the GPU's name;
2. the tests that run on the GPU (``tests/test_bptt_speed.py -k gpu``: the engines agree there);
3. network-batches per second of the ``compiled`` engine at K = 40, 200 and 1,000 GRU-128s, the
   ``reference`` engine at K = 40 and the sequential MotorNet baseline on the CPU, as
   ``savings-gym bench bptt`` times them, with each K's first batch (compiling) apart;
4. a 10-batch slice of the paper's protocol (40 fresh GRU-128s through
   :func:`benchmarks.savings.protocol.run_protocol`, checkpoints and curves included) and the paper's
   whole protocol extrapolated from it.

``--dry-run`` runs the same steps on the CPU at toy sizes (K = 2 and 4, H = 16): it checks the
script, not the figures.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.speed.bptt_throughput import (
    PAPER_BATCHES_PER_NETWORK,
    PAPER_NETWORKS,
    SequentialBaseline,
    bench_agent,
    paper_hours,
    timed_network_batch,
)

BUDGET_SECONDS = 8 * 60
ROOT = Path(__file__).resolve().parents[2]


def run(dry_run: bool = False, budget: float = BUDGET_SECONDS) -> list[str]:
    """Runs the check; returns the summary's lines. Steps that would overrun ``budget`` (s) are
    skipped and say so.

    Raises:
        RuntimeError: without ``dry_run`` on a machine where torch sees no CUDA GPU.
    """
    if not dry_run and not torch.cuda.is_available():
        raise RuntimeError("the GPU check needs a CUDA GPU that torch can see (or --dry-run, to check it on the CPU)")
    began = time.perf_counter()
    device = "cpu" if dry_run else "cuda"
    sizes = (2, 4) if dry_run else (40, 200, 1000)
    hidden = 16 if dry_run else 128
    name = "CPU (dry run)" if dry_run else torch.cuda.get_device_name(0)
    lines = [f"GPU check: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}, device {device}"]

    def left() -> float:
        return budget - (time.perf_counter() - began)

    # 2. the GPU tests
    env = {**os.environ, "SAVINGS_GYM_TEST_DEVICE": device}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_bptt_speed.py", "-k", "gpu"]
    try:
        tests = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(left() / 3, 1))
        last = (tests.stdout.strip().splitlines() or ["(no output)"])[-1]
        lines.append(f"tests on {device}: {'passed' if tests.returncode == 0 else 'FAILED'}: {last}")
    except subprocess.TimeoutExpired:
        lines.append(f"tests on {device}: stopped at the time budget")

    # 3. throughput at growing K, beside today's path and the sequential baseline
    baseline = SequentialBaseline(hidden=hidden)
    baseline.network_batch()
    start = time.perf_counter()
    baseline.network_batch()
    baseline_rate = 1.0 / (time.perf_counter() - start)
    lines.append(f"sequential MotorNet baseline (CPU): {baseline_rate:.2f} network-batches/s")
    reference = bench_agent(sizes[0], device, "reference", hidden)
    timed_network_batch(reference, device)
    today = sizes[0] / min(timed_network_batch(reference, device) for _ in range(2))
    lines.append(f"today's path (reference engine), K={sizes[0]}: {today:.1f} network-batches/s")
    for k in sizes:
        if left() < 60:
            lines.append(f"K={k}: skipped (time budget)")
            continue
        agent = bench_agent(k, device, "compiled", hidden)
        first = timed_network_batch(agent, device)
        rate = k / min(timed_network_batch(agent, device) for _ in range(3))
        lines.append(
            f"compiled engine, K={k}: {rate:.1f} network-batches/s ({rate / baseline_rate:.0f}x the baseline, "
            f"{rate / today:.1f}x today's path at K={sizes[0]}; first batch {first:.1f} s)"
        )

    # 4. a slice of the paper's protocol, extrapolated
    if left() < 60:
        lines.append("paper protocol slice: skipped (time budget)")
    else:
        lines.append(_protocol_slice(device, 2 if dry_run else PAPER_NETWORKS, hidden))
    lines.append(f"GPU check done in {time.perf_counter() - began:.0f} s")
    return lines


def _protocol_slice(device: str, networks: int, hidden: int, batches: int = 10) -> str:
    from agents.bptt import BPTTAgent, network_seeds
    from agents.controllers import RecurrentControllers
    from benchmarks.savings.presets import PRESETS
    from benchmarks.savings.protocol import run_protocol

    def make_agent(envs):  # noqa: ANN001, ANN202
        controllers = RecurrentControllers("gru", network_seeds(0, networks), 17, hidden)
        controllers.freeze_input_and_output()
        return BPTTAgent(controllers, envs, seed=0, device=device)

    config = {"agent": "gru", "hidden": hidden, "networks": networks, "seed": 0, "env_id": "ArmCurlField-v0"}
    with tempfile.TemporaryDirectory() as out:
        run_protocol(make_agent, PRESETS["paper"], out, config, progress=False, stop_after=1)  # compiles
        start = time.perf_counter()
        run_protocol(make_agent, PRESETS["paper"], out, config, progress=False, stop_after=1 + batches)
        seconds = (time.perf_counter() - start) / batches
    rate = networks / seconds
    return (
        f"paper protocol slice ({networks} networks, {batches} batches through run_protocol): {seconds:.2f} s/batch; "
        f"the whole protocol ({PAPER_NETWORKS} x {PAPER_BATCHES_PER_NETWORK:,} batches) would take "
        f"{paper_hours(rate):.1f} h at this rate"
    )


def main(dry_run: bool) -> int:
    for line in run(dry_run):
        print(line, flush=True)
    return 0
