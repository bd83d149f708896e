"""Sweep throughput (``savings-gym bench sweep``), baseline beside ours in the same run:

* cells per hour of ``savings-gym sweep``'s local backend (a process pool, one torch thread per
  worker) against the same cells run one after another with the single-run function
  (:func:`benchmarks.savings.run.run`, in this process, on one torch thread as ``savings-gym demo`` runs:
  on a busy 2-core machine torch's default of two threads is several times slower, which would
  flatter the pool), the learning curves of both sides compared;
* ``--devices``: a fixed slice of a protocol cell (the 8 test reaches and one SGD update on 8
  reaches of 100 steps, in FF1, for ``networks`` GRUs trained together) timed on the CPU and on the
  GPU, where torch finds one (otherwise it says so and times the CPU side alone).

Both sides of the cell comparison include everything a user waits for: the pool's start-up (its
workers import torch and MotorNet), pretraining where no shipped network fits, the metrics and the
figures.
"""

from __future__ import annotations

import contextlib
import io
import json
import platform
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks.savings.presets import PRESETS, Preset, get_preset
from benchmarks.sweep.backends import available_cpus
from benchmarks.sweep.runner import make_cells, run_sweep

# shipped pretrained GRU-16 and GRU-32 (one network each) fit it: the cells start adapting at once
BENCH_PRESET = Preset(
    "bench-sweep",
    {"NF1": 0, "FF1": 10, "NF2": 5, "FF2": 10},
    lr=PRESETS["quick"].lr,  # one home for the quick preset's rate
    pretrain_batches=200,
    use_shipped_pretrained=True,
    description="bench sweep cells: FF1 10, NF2 5, FF2 10 batches from the shipped networks (the quick preset's lr)",
)
QUICK_PRESET = Preset(
    "bench-sweep-quick",
    {"NF1": 0, "FF1": 1, "NF2": 0, "FF2": 1},
    pretrain_batches=1,
    use_shipped_pretrained=True,
    description="a smoke cell: 1 batch of FF1 and FF2 from the shipped GRU-16 (numbers not for the record)",
)


@dataclass
class SweepBench:
    """Both sides of the cell comparison."""

    cells: list[str]
    preset: str
    networks: int
    baseline_threads: int
    baseline_seconds: float
    workers: int
    ours_seconds: float
    max_curve_difference: float  # m, largest |difference| between the two sides' learning curves

    @property
    def baseline_rate(self) -> float:
        """Cells per hour, one after another."""
        return len(self.cells) / self.baseline_seconds * 3600

    @property
    def ours_rate(self) -> float:
        """Cells per hour, the sweep's local backend."""
        return len(self.cells) / self.ours_seconds * 3600

    @property
    def ratio(self) -> float:
        return self.ours_rate / self.baseline_rate


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """Torch's CPU threads set to ``threads`` (0: left as they are) for a block; yields the count."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def _curves(folder: Path) -> dict[str, np.ndarray]:
    curves = json.loads((folder / "result.json").read_text())["learning_curves"]
    return {phase: np.asarray(c, np.float64) for phase, c in curves.items()}


def run(
    quick: bool = False,
    workers: int | None = None,
    hidden: tuple[int, ...] = (16, 32),
    seeds: tuple[int, ...] = (0, 1),
    networks: int = 1,
    baseline_threads: int = 1,
) -> SweepBench:
    """Times the same cells run one after another with :func:`benchmarks.savings.run.run`, then as a sweep.

    Args:
        quick: two tiny cells (hidden 16, 2 batches): a smoke run, not a figure for the record.
        workers: the sweep's processes (default: one per CPU here).
        hidden: hidden sizes of the cells (GRU; the shipped pretrained sizes need no pretraining).
        seeds: seeds of the cells.
        networks: networks per cell.
        baseline_threads: torch threads of the one-after-another side (0: torch's default).
    """
    from benchmarks.savings.run import run as run_one

    preset = QUICK_PRESET if quick else BENCH_PRESET
    if quick:
        hidden, seeds = (16,), (0, 1)
    cells = make_cells("gru", list(hidden), [preset.field_gain], list(seeds))
    workers = workers or min(available_cpus(), len(cells))
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        root = Path(tmp)
        with torch_threads(baseline_threads) as threads, contextlib.redirect_stdout(io.StringIO()):
            started = time.perf_counter()  # the runs' own lines (pretraining) stay quiet
            for cell in cells:
                folder = root / "one" / cell.name
                run_one(cell.agent, cell.hidden, networks, preset, folder, seed=cell.seed, progress=False)
            baseline_seconds = time.perf_counter() - started
        started = time.perf_counter()
        run_sweep("gru", list(hidden), networks, preset, root / "sweep", seeds=list(seeds), workers=workers, log=None)
        ours_seconds = time.perf_counter() - started
        difference = 0.0
        for cell in cells:
            one, swept = _curves(root / "one" / cell.name), _curves(root / "sweep" / cell.name)
            difference = max([difference] + [float(np.abs(one[p] - swept[p]).max()) for p in one])
    return SweepBench(
        [c.name for c in cells], preset.name, networks, threads, baseline_seconds, workers, ours_seconds, difference
    )


def report(bench: SweepBench) -> str:
    """The comparison as the other benches print theirs: both sides and the ratio."""
    lines = [
        f"{len(bench.cells)} cells ({', '.join(bench.cells)}), preset {bench.preset}, {bench.networks} network(s) each",
        f"{'side':<52} {'seconds':>8} {'cells/hour':>11}",
        f"{f'run() one after another ({bench.baseline_threads} torch threads)':<52} "
        f"{bench.baseline_seconds:>8.1f} {bench.baseline_rate:>11.1f}",
        f"{f'sweep, local backend ({bench.workers} workers x 1 torch thread)':<52} "
        f"{bench.ours_seconds:>8.1f} {bench.ours_rate:>11.1f}",
        f"ratio {bench.ratio:.2f}x; learning curves of the two sides: "
        + (
            "identical"
            if bench.max_curve_difference == 0
            else f"differ by up to {bench.max_curve_difference * 100:.2g} cm"
        ),
    ]
    return "\n".join(lines)


# -- the GPU path ---------------------------------------------------------------------------------
@dataclass
class DeviceRow:
    """Network-batches per second of a fixed protocol slice on each device (None: not timed)."""

    hidden: int
    networks: int
    cpu_threads: int
    cpu_rate: float
    cuda_rate: float | None

    @property
    def ratio(self) -> float | None:
        return None if self.cuda_rate is None else self.cuda_rate / self.cpu_rate


def _slice_rate(device: str, hidden: int, networks: int, batches: int) -> float:
    """Network-batches per second of ``batches`` protocol batches (test reaches + one update) in FF1."""
    from agents.bptt import BPTTAgent, network_seeds
    from agents.controllers import RecurrentControllers
    from savings_gym.schedule import PAPER_BATCH_SIZE

    preset = get_preset("quick")  # starts in FF1: the curl field is on
    controllers = RecurrentControllers("gru", network_seeds(0, networks), 17, hidden)
    controllers.freeze_input_and_output()
    agent = BPTTAgent(controllers, preset.schedule(), optimizer="sgd", lr=preset.lr, seed=0, device=device)

    def batch() -> None:
        agent.evaluate(preset.field_gain)
        agent.train(PAPER_BATCH_SIZE)

    batch()  # warm-up (allocations, CUDA kernels)
    if device != "cpu":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(batches):
        batch()
    if device != "cpu":
        torch.cuda.synchronize()
    return networks * batches / (time.perf_counter() - started)


def device_slice(
    quick: bool = False,
    sizes: tuple[int, ...] = (16, 64, 256),
    networks: int = 8,
    batches: int = 5,
    cpu_threads: int = 1,
) -> list[DeviceRow]:
    """The same seeded slice on the CPU (``cpu_threads`` torch threads, 0: torch's default; 1 as
    a sweep's cells) and, when torch finds one, the GPU (``cuda``).

    ``quick``: hidden 16, 2 networks, 1 batch (a smoke run).
    """
    if quick:
        sizes, networks, batches = (16,), 2, 1
    gpu = torch.cuda.is_available()
    rows = []
    for hidden in sizes:
        with torch_threads(cpu_threads) as threads:
            cpu = _slice_rate("cpu", hidden, networks, batches)
        cuda = _slice_rate("cuda", hidden, networks, batches) if gpu else None
        rows.append(DeviceRow(hidden, networks, threads, cpu, cuda))
    return rows


def device_report(rows: list[DeviceRow]) -> str:
    threads = f"CPU: {rows[0].cpu_threads} torch thread(s)" if rows else ""
    if torch.cuda.is_available():
        head = f"GPU: {torch.cuda.get_device_name(0)}; {threads}"
    else:
        head = f"no GPU found (torch.cuda.is_available() is False): the CPU side alone is timed; {threads}"
    lines = [
        head,
        "network-batch: the 8 test reaches + one SGD update on 8 reaches of 100 steps (FF1), GRU",
        f"{'hidden':>6} {'networks':>8} {'cpu nb/s':>9} {'cuda nb/s':>10} {'ratio':>7}",
    ]
    for r in rows:
        cuda = "-" if r.cuda_rate is None else f"{r.cuda_rate:.2f}"
        ratio = "-" if r.ratio is None else f"{r.ratio:.1f}x"
        lines.append(f"{r.hidden:>6} {r.networks:>8} {r.cpu_rate:>9.2f} {cuda:>10} {ratio:>7}")
    return "\n".join(lines)


def header(what: str) -> str:
    machine = platform.processor() or platform.machine()
    return f"# savings-gym bench sweep{what}  ({machine}, {available_cpus()} CPUs, python {platform.python_version()})"


def main(quick: bool = False, devices: bool = False, workers: int | None = None) -> str:
    """What ``savings-gym bench sweep`` prints."""
    if devices:
        return header(" --devices") + "\n" + device_report(device_slice(quick=quick))
    return header("") + "\n" + report(run(quick=quick, workers=workers))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--devices", action="store_true", help="the protocol slice on the CPU and the GPU")
    parser.add_argument("--workers", type=int, default=None, help="the sweep's processes (default: one per CPU)")
    args = parser.parse_args()
    print(main(args.quick, args.devices, args.workers))
