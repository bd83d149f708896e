"""The compiled BPTT engine of another commit beside this one's, timed in the same run.

What one change inside ``agents/bptt_compiled.py`` bought (``benchmarks/RESULTS.md`` records each
lever of issue 17 this way): the file as it was at ``REV`` is loaded as a module of its own, and
two agents, one on each version's :class:`~agents.bptt_compiled.CompiledBPTT`, time network-batches
(:func:`benchmarks.speed.bptt_throughput.network_batch`) alternately, so a noisy machine moves both
alike. Everything outside that file (the task, the controllers, the agent) is this checkout's, so
``REV`` must be a commit whose ``CompiledBPTT`` has this one's interface.

    python -m benchmarks.speed.engine_ab 72e84c5 --networks 40 --threads 1 --repeats 7
    python -m benchmarks.speed.engine_ab 72e84c5 --ours 83d2085   # two commits, neither checked out
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

from agents.bptt import BPTTAgent
from benchmarks.speed.bptt_throughput import bench_agent, network_batch

ENGINE_FILE = "agents/bptt_compiled.py"


def load_engine(rev: str) -> types.ModuleType:
    """``agents/bptt_compiled.py`` as it was at commit ``rev``, as a module of its own.

    Raises:
        ValueError: when git cannot show that file at ``rev``.
    """
    root = Path(__file__).resolve().parents[2]
    shown = subprocess.run(["git", "show", f"{rev}:{ENGINE_FILE}"], cwd=root, capture_output=True, text=True)
    if shown.returncode:
        raise ValueError(f"cannot read {ENGINE_FILE} at {rev!r}: {shown.stderr.strip()}")
    name = f"_bptt_compiled_{rev.replace('/', '_').replace('~', '_').replace('^', '_')}"
    path = Path(tempfile.mkdtemp()) / f"{name}.py"
    path.write_text(shown.stdout)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


def _timed(agent: BPTTAgent) -> tuple[float, float]:
    """Wall and CPU seconds (this process, all threads) of one network-batch on the CPU."""
    wall, cpu = time.perf_counter(), time.process_time()
    network_batch(agent)
    return time.perf_counter() - wall, time.process_time() - cpu


def compare(rev: str, networks: int = 40, repeats: int = 7, ours_rev: str | None = None) -> dict[str, float]:
    """Seconds per network-batch of ``rev``'s compiled engine and of this checkout's (or of
    ``ours_rev``'s), on the CPU.

    Returns:
        ``base_s`` and ``ours_s`` (best wall time of ``repeats``, after two warm-up batches each),
        ``speedup`` (base / ours of the best), ``median_speedup`` (median of per-round ratios) and
        ``cpu_speedup`` (of the best CPU times: on a machine shared with other work, the wall
        time includes waiting for a core, the CPU time does not).
    """
    base, ours = bench_agent(networks, "cpu"), bench_agent(networks, "cpu")
    base._compiled = load_engine(rev).CompiledBPTT(base.controllers, base.env.task)
    if ours_rev is not None:
        ours._compiled = load_engine(ours_rev).CompiledBPTT(ours.controllers, ours.env.task)
    for agent in (base, ours, base, ours):  # compiling, then one warm batch each
        network_batch(agent)
    base_times, our_times = [], []
    for _ in range(repeats):
        base_times.append(_timed(base))
        our_times.append(_timed(ours))
    (base_wall, base_cpu), (our_wall, our_cpu) = zip(*base_times, strict=True), zip(*our_times, strict=True)
    return {
        "base_s": min(base_wall),
        "ours_s": min(our_wall),
        "speedup": min(base_wall) / min(our_wall),
        "median_speedup": statistics.median(b / o for b, o in zip(base_wall, our_wall, strict=True)),
        "cpu_speedup": min(base_cpu) / min(our_cpu),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the commit whose agents/bptt_compiled.py is the baseline")
    parser.add_argument("--ours", default=None, help="time this commit's engine instead of the checkout's")
    parser.add_argument("--networks", type=int, default=40, help="K networks (default 40)")
    parser.add_argument("--repeats", type=int, default=7, help="alternating rounds (default 7)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    r = compare(args.rev, args.networks, args.repeats, args.ours)
    ours = "this checkout" if args.ours is None else args.ours
    print(
        f"K={args.networks}, {args.threads} thread(s): {args.rev} {r['base_s']:.3f} s/batch, {ours} "
        f"{r['ours_s']:.3f} s/batch: {r['speedup']:.2f}x (median of rounds {r['median_speedup']:.2f}x; "
        f"CPU time {r['cpu_speedup']:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
