"""The compiled BPTT engine of another commit beside this one's, timed in the same run.

What one change inside ``agents/bptt_compiled.py`` bought (``benchmarks/RESULTS.md`` records each
lever of issue 17 this way): the file as it was at ``REV`` is loaded as a module of its own, and
two agents, one on each version's :class:`~agents.bptt_compiled.CompiledBPTT`, time network-batches
(:func:`benchmarks.bptt_throughput.network_batch`) alternately, so a noisy machine moves both
alike. Everything outside that file (the task, the controllers, the agent) is this checkout's, so
``REV`` must be a commit whose ``CompiledBPTT`` has this one's interface.

    python -m benchmarks.engine_ab 72e84c5 --networks 40 --threads 1 --repeats 7
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import torch

from benchmarks.bptt_throughput import bench_agent, timed_network_batch

ENGINE_FILE = "agents/bptt_compiled.py"


def load_engine(rev: str) -> types.ModuleType:
    """``agents/bptt_compiled.py`` as it was at commit ``rev``, as a module of its own.

    Raises:
        ValueError: when git cannot show that file at ``rev``.
    """
    root = Path(__file__).resolve().parent.parent
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


def compare(rev: str, networks: int = 40, repeats: int = 7, device: str = "cpu") -> dict[str, float]:
    """Seconds per network-batch of ``rev``'s compiled engine and of this checkout's.

    Returns:
        ``base_s`` and ``ours_s`` (best of ``repeats``, after two warm-up batches each), and
        ``speedup`` (base / ours of the best) and ``median_speedup`` (median of per-round ratios).
    """
    base, ours = bench_agent(networks, device), bench_agent(networks, device)
    base._compiled = load_engine(rev).CompiledBPTT(base.controllers, base.env.task)
    for agent in (base, ours, base, ours):  # compiling, then one warm batch each
        timed_network_batch(agent, device)
    base_times, our_times = [], []
    for _ in range(repeats):
        base_times.append(timed_network_batch(base, device))
        our_times.append(timed_network_batch(ours, device))
    return {
        "base_s": min(base_times),
        "ours_s": min(our_times),
        "speedup": min(base_times) / min(our_times),
        "median_speedup": statistics.median(b / o for b, o in zip(base_times, our_times, strict=True)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the commit whose agents/bptt_compiled.py is the baseline")
    parser.add_argument("--networks", type=int, default=40, help="K networks (default 40)")
    parser.add_argument("--repeats", type=int, default=7, help="alternating rounds (default 7)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    r = compare(args.rev, args.networks, args.repeats)
    print(
        f"K={args.networks}, {args.threads} thread(s): {args.rev} {r['base_s']:.3f} s/batch, this checkout "
        f"{r['ours_s']:.3f} s/batch: {r['speedup']:.2f}x (median of rounds {r['median_speedup']:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
