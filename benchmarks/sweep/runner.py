"""``savings-gym sweep``: the savings protocol over a grid of learners, sizes, field strengths and seeds.

Every combination of the given agents, hidden sizes, curl gains and seeds is one *cell*: a protocol
run (:func:`benchmarks.savings.run.run`) in its own sub-folder of the sweep folder, named after what it
varies (``gru_h64_k8_s0``: agent, hidden units, gain in N*s/m, seed), holding the usual result
files (``result.json``, ``curves.npz``, ``figures/``, ``checkpoint.pt``; each a valid leaderboard
submission, ``savings-gym leaderboard add <cell folder>``) and ``run.log``, the cell's output.

Two backends run the same cell function, :func:`run_cell`:

* ``local`` (default): a process pool on this machine (``forkserver`` or ``spawn``: torch and
  ``fork`` do not mix), one worker per ``threads`` CPUs, each worker on ``threads`` torch threads
  (two threads per process on a 2-core machine oversubscribe it badly);
* ``ray``: Ray tasks on a running cluster (``ray.init(address=...)``), each asking for
  ``cpus_per_cell`` CPUs and ``gpus_per_cell`` GPUs. The nodes need savings-gym installed; the
  sweep folder should be on a file system every node sees (checkpoints are written there). Without
  one the finished cells' result files still come back: the task returns them and the driver writes
  them, but an interrupted cell starts over on another node.

Resumable: rerunning the command skips finished cells (their ``result.json`` exists) and resumes
unfinished ones from their checkpoints. A failing cell is retried up to ``retries`` times per run
of the command, then reported as failed, never dropped. ``sweep.json`` (written atomically after
every change) records each cell's status, attempts, error and time; ``summary.json`` and
``figures/savings_vs_hidden.png`` (:func:`aggregate`) hold the savings per group of cells with
bootstrap CIs.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.safe_io import atomic_write_bytes
from benchmarks.savings.presets import Preset, get_preset
from benchmarks.savings.results import comparable
from benchmarks.savings.run import BPTT_AGENTS, DEFAULT_HIDDEN, check_run_arguments
from benchmarks.sweep.backends import LocalBackend, RayBackend, available_cpus
from benchmarks.sweep.cells import (
    ERROR_CHARS,
    MANIFEST,
    RESULT,
    SUMMARY,
    Cell,
    CellSettings,
    _load_manifest,
    _save_manifest,
)
from benchmarks.sweep.summary import aggregate, summary_table
from savings_gym.field import MAX_FIELD_GAIN

BACKENDS = ("local", "ray")


# -- arguments ------------------------------------------------------------------------------------
def _items(value: Any, name: str, example: str) -> list:
    """A comma-separated string or a sequence as a list; ``ValueError`` naming ``name`` when empty."""
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    else:
        items = list(value) if isinstance(value, Sequence) else [value]
    if not items or items == [""]:
        raise ValueError(f"{name} is empty: give at least one value, e.g. {name} {example}")
    return items


def _unique(values: list, name: str, given: Any) -> list:
    """``values``, or ``ValueError`` naming ``name`` when one stands twice (two cells would share a folder)."""
    if len(set(values)) != len(values):
        raise ValueError(f"{name} lists a value twice: {given!r}")
    return values


def parse_ints(value: str | Sequence[int], name: str, example: str = "16,32,64", minimum: int = 0) -> list[int]:
    """Integers from ``"16,32"`` or a sequence (``True`` and ``16.5`` are refused).

    Raises:
        ValueError: naming ``name``, when empty, repeated, not integers or below ``minimum``.
    """
    numbers = []
    for item in _items(value, name, example):
        if isinstance(item, str) and re.fullmatch(r"[+-]?\d+", item):
            item = int(item)
        if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
            raise ValueError(f"{name} must be a comma-separated list of integers (e.g. {example}), got {value!r}")
        if item < minimum:
            raise ValueError(f"{name} values must be >= {minimum}, got {int(item)}")
        numbers.append(int(item))
    return _unique(numbers, name, value)


def parse_floats(value: str | Sequence[float], name: str, example: str = "4,8,12") -> list[float]:
    """Finite numbers from ``"4,8"`` or a sequence; ``ValueError`` naming ``name`` otherwise."""
    numbers = []
    for item in _items(value, name, example):
        try:
            number = float(item) if not isinstance(item, bool) else math.nan
        except (TypeError, ValueError):
            number = math.nan
        if not math.isfinite(number):
            raise ValueError(f"{name} must be a comma-separated list of finite numbers (e.g. {example}), got {value!r}")
        numbers.append(number)
    return _unique(numbers, name, value)


def check_device(device: str, backend: str = "local") -> None:
    """``ValueError`` for a device torch does not know, or CUDA where this machine has none
    (``backend="ray"``: the cluster's nodes have the GPUs, so only the name is checked)."""
    try:
        kind = torch.device(device).type
    except RuntimeError as error:
        raise ValueError(f"--device {device!r} is not a torch device ({error})") from error
    # a Ray cluster's GPUs are on its nodes, not necessarily here: only the local backend can check
    if backend == "local" and kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device!r}: no CUDA device on this machine (torch.cuda.is_available() is False)")


def make_cells(
    agents: str | Sequence[str],
    hidden: str | Sequence[int | None] | None,
    field_gains: str | Sequence[float],
    seeds: str | Sequence[int],
) -> list[Cell]:
    """The cartesian product, agents outermost; ``hidden=None`` is each agent's default
    (128 for BPTT agents, the hyperparameters' for SB3 ones).

    Raises:
        ValueError: naming the argument, for an empty, repeated or malformed list.
    """
    agent_list = _unique([str(a) for a in _items(agents, "--agent", "gru,lstm")], "--agent", agents)
    sizes: list[int | None] = [None] if hidden is None else parse_ints(hidden, "--hidden", minimum=1)
    gains = parse_floats(field_gains, "--field-gain")
    for gain in gains:
        if abs(gain) > MAX_FIELD_GAIN:
            raise ValueError(
                f"--field-gain {gain:g} is outside the physical range [-{MAX_FIELD_GAIN:g}, {MAX_FIELD_GAIN:g}] N*s/m"
            )
    seed_list = parse_ints(seeds, "--seeds", "0,1,2")
    cells = []
    for agent, size, gain, seed in itertools.product(agent_list, sizes, gains, seed_list):
        if size is None and agent in BPTT_AGENTS:
            size = DEFAULT_HIDDEN
        cells.append(Cell(agent, size, gain, seed))
    return cells


def _finished(out: Path, cell: Cell, settings: CellSettings) -> bool:
    """Whether the cell's folder holds its result; ``ValueError`` when it holds another run's."""
    file = out / cell.name / RESULT
    if not file.exists():
        return False
    config = json.loads(file.read_text())["config"]
    expected = {
        "agent": cell.agent,
        "networks": settings.networks,
        "seed": cell.seed,
        "preset": json.loads(json.dumps(asdict(settings.preset_for(cell)))),
    }
    if cell.hidden is not None:
        expected["hidden"] = cell.hidden
    given = comparable({key: config.get(key) for key in expected})
    differing = sorted(key for key, value in comparable(expected).items() if given.get(key) != value)
    if differing:
        raise ValueError(
            f"{file} is the result of another run ({', '.join(differing)} differ): use another --out, "
            "or the same --networks and --preset as the sweep that made it"
        )
    return True


def _error_text(error: BaseException) -> tuple[str, str]:
    """A one-line error and the traceback (a worker's own, where the future carries it)."""
    root = getattr(error, "cause", None) or error  # Ray wraps the task's exception
    line = f"{type(root).__name__}: {root}".splitlines()[0][:500]
    text = "".join(traceback.format_exception(error))
    if error.__cause__ is not None:  # concurrent.futures keeps the worker's traceback as the cause
        text = "".join(traceback.format_exception(error.__cause__)) + text
    return line, text[-ERROR_CHARS:]


def _store_files(folder: Path, files: dict[str, bytes]) -> None:
    """Writes the files a task returned where the folder lacks them (a worker without shared storage)."""
    if (folder / RESULT).exists():
        return
    for name, data in files.items():  # result.json comes last
        atomic_write_bytes(folder / name, data)


def check_sweep_arguments(
    agents: str | Sequence[str],
    hidden: str | Sequence[int | None] | None,
    networks: int,
    preset: str | Preset,
    out: str | Path,
    field_gains: str | Sequence[float] | None,
    seeds: str | Sequence[int],
    backend: str,
    workers: int | None,
    retries: int,
    cpus_per_cell: float | None,
    gpus_per_cell: float,
    device: str,
    threads: int,
) -> tuple[list[Cell], Preset, Path]:
    """Validates a sweep before any work: the cells, the preset and the output folder.

    Raises:
        ValueError: naming the argument and what was expected.
    """
    if backend not in BACKENDS:
        raise ValueError(f"--backend must be one of {list(BACKENDS)}, got {backend!r}")
    preset_obj = preset if isinstance(preset, Preset) else get_preset(preset)
    gains = [preset_obj.field_gain] if field_gains is None else field_gains
    cells = make_cells(agents, hidden, gains, seeds)
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ValueError(f"--workers must be an integer >= 1, got {workers!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"--retries must be an integer >= 0, got {retries!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"--threads must be an integer >= 0 (0: torch's default), got {threads!r}")
    if cpus_per_cell is not None and not cpus_per_cell > 0:
        raise ValueError(f"--cpus-per-cell must be > 0, got {cpus_per_cell!r}")
    if not gpus_per_cell >= 0:
        raise ValueError(f"--gpus-per-cell must be >= 0, got {gpus_per_cell!r}")
    check_device(device, backend)
    out = Path(out)
    for agent, size in dict.fromkeys((c.agent, c.hidden) for c in cells):
        out = check_run_arguments(agent, size, networks, out)
    return cells, preset_obj, out


def run_sweep(
    agents: str | Sequence[str] = ("gru",),
    hidden: str | Sequence[int | None] | None = (DEFAULT_HIDDEN,),
    networks: int = 8,
    preset: str | Preset = "quick",
    out: str | Path = "runs/sweep",
    *,
    field_gains: str | Sequence[float] | None = None,
    seeds: str | Sequence[int] = (0,),
    backend: str = "local",
    address: str | None = None,
    workers: int | None = None,
    retries: int = 2,
    cpus_per_cell: float | None = None,
    gpus_per_cell: float = 0,
    device: str = "cpu",
    threads: int = 1,
    checkpoint_seconds: float = 120.0,
    log: Callable[[str], None] | None = print,
) -> dict[str, Any]:
    """Runs (or resumes) every cell of a sweep and writes the manifest and the summary.

    Args:
        agents: learners (``"gru,lstm"`` or a list).
        hidden: hidden sizes (``"16,32"`` or a list; None: each agent's default).
        networks: independent networks per cell.
        preset: a preset name or :class:`~benchmarks.savings.presets.Preset`.
        out: the sweep folder (one sub-folder per cell, ``sweep.json``, ``summary.json``).
        field_gains: curl gains of the FF phases (N*s/m); None: the preset's.
        seeds: run seeds.
        backend: ``local`` (process pool) or ``ray``.
        address: Ray only: the cluster (``auto``, ``host:port``, ``ray://host:port``).
        workers: local only: processes (default: the CPUs here // ``threads``, at most one per cell;
            one for ``threads=0``).
        retries: further attempts of a failing cell in this run of the sweep.
        cpus_per_cell: Ray only: CPUs a task asks for (default ``threads``, at least 1).
        gpus_per_cell: Ray only: GPUs a task asks for (may be fractional).
        device: torch device of the cells (``cuda`` for the BPTT trainer on a GPU).
        threads: torch threads per cell (0: torch's default).
        checkpoint_seconds: seconds between a cell's checkpoints.
        log: where one line per event goes (None: nowhere).

    Returns:
        The manifest (also in ``out/sweep.json``): per cell its status (``done``, ``failed``, ...),
        attempts, error and seconds; ``summary``: the path of the aggregated results.

    Raises:
        ValueError: for bad arguments or an unreachable Ray cluster, before any cell starts.
    """
    say = log or (lambda _: None)
    cells, preset_obj, out = check_sweep_arguments(
        agents,
        hidden,
        networks,
        preset,
        out,
        field_gains,
        seeds,
        backend,
        workers,
        retries,
        cpus_per_cell,
        gpus_per_cell,
        device,
        threads,
    )
    settings = CellSettings(networks, preset_obj, device, threads, checkpoint_seconds)
    todo = [cell for cell in cells if not _finished(out, cell, settings)]
    runner = None
    if todo:  # connecting checks the Ray cluster too: still before any cell or manifest is written
        if backend == "ray":
            runner = RayBackend(address, cpus_per_cell or max(threads, 1), gpus_per_cell)
        else:
            # threads=0 is torch's default, all the cores: then one worker, or they fight over the cores
            count = workers or max(1, available_cpus() // (threads or available_cpus()))
            runner = LocalBackend(min(count, len(todo)), threads)
    try:
        manifest = _load_manifest(out)
        manifest["spec"] = {
            "agents": sorted({c.agent for c in cells}),
            "hidden": sorted({c.hidden for c in cells}, key=lambda h: -1 if h is None else h),
            "field_gains": sorted({c.field_gain for c in cells}),
            "seeds": sorted({c.seed for c in cells}),
            "networks": networks,
            "preset": asdict(preset_obj),
            "backend": backend,
            "address": address,
            "device": device,
            "threads": threads,
            "retries": retries,
        }
        for cell in cells:
            entry = manifest["cells"].setdefault(cell.name, {**asdict(cell), "attempts": 0, "error": None})
            entry["status"] = "pending" if cell in todo else "done"
        _save_manifest(out, manifest)
        say(f"sweep {out}: {len(cells)} cells, {len(cells) - len(todo)} already done, {len(todo)} to run ({backend})")
        if runner is not None:
            _drive(runner, todo, settings, out, manifest, retries, say)
    except BaseException:  # interrupted: do not wait for running cells (their checkpoints resume them)
        if runner is not None:
            runner.close(wait=False)
        raise
    if runner is not None:
        runner.close()
    summary = aggregate(out, manifest)
    manifest["summary"] = SUMMARY
    _save_manifest(out, manifest)
    failed = [name for name, entry in manifest["cells"].items() if entry["status"] == "failed"]
    say(
        f"sweep {out}: {manifest['counts'].get('done', 0)} of {len(manifest['cells'])} cells done"
        + (f"; FAILED: {', '.join(failed)} (errors in {out / MANIFEST}; rerun the command to retry)" if failed else "")
    )
    say(summary_table(summary))
    return manifest


def _drive(
    runner: LocalBackend | RayBackend,
    todo: list[Cell],
    settings: CellSettings,
    out: Path,
    manifest: dict[str, Any],
    retries: int,
    say: Callable[[str], None],
) -> None:
    """Keeps up to ``runner.capacity`` cells in flight; retries a failure up to ``retries`` times."""
    queue, running = deque(todo), {}
    tries = dict.fromkeys((c.name for c in todo), 0)
    try:
        while queue or running:
            while queue and len(running) < runner.capacity:
                cell = queue.popleft()
                entry = manifest["cells"][cell.name]
                tries[cell.name] += 1
                entry["attempts"] += 1
                entry["status"] = "running"
                entry["resumed_from_checkpoint"] = (out / cell.name / "checkpoint.pt").exists()
                running[runner.submit(cell, settings, str(out / cell.name))] = (cell, runner.generation)
            _save_manifest(out, manifest)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                cell, generation = running.pop(future)
                entry = manifest["cells"][cell.name]
                try:
                    outcome = future.result()
                except Exception as error:
                    entry["error"], entry["traceback"] = _error_text(error)
                    again = tries[cell.name] <= retries
                    entry["status"] = "retrying" if again else "failed"
                    say(f"  {cell.name}: attempt {entry['attempts']} failed ({entry['error']})")
                    if again:
                        queue.append(cell)
                    if isinstance(error, BrokenProcessPool) and generation == runner.generation:
                        runner.restart()  # a dead worker breaks the whole pool
                    continue
                _store_files(out / cell.name, outcome["files"])
                entry.update(status="done", error=None, seconds=round(outcome["seconds"], 1))
                entry.pop("traceback", None)
                done = sum(e["status"] == "done" for e in manifest["cells"].values())
                say(f"  {cell.name}: done in {outcome['seconds']:.0f} s ({done}/{len(manifest['cells'])} cells)")
            _save_manifest(out, manifest)
    finally:  # interrupted: what was running is resumed by the next run of the command
        for cell, _ in running.values():
            manifest["cells"][cell.name]["status"] = "interrupted"
        _save_manifest(out, manifest)
