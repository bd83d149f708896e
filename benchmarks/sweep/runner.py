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
import os
import re
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.safe_io import atomic_write_bytes, atomic_write_json, read_json
from benchmarks.savings.metrics import bootstrap_ci, format_ci
from benchmarks.savings.presets import Preset, get_preset
from benchmarks.savings.results import comparable
from benchmarks.savings.run import BPTT_AGENTS, DEFAULT_HIDDEN, check_run_arguments, run
from savings_gym.field import MAX_FIELD_GAIN

BACKENDS = ("local", "ray")
MANIFEST = "sweep.json"
SUMMARY = "summary.json"
FIGURE = Path("figures") / "savings_vs_hidden.png"
RESULT = "result.json"
LOG = "run.log"
SWEEP_VERSION = 1
RAY_EXTRA = "pip install 'savings-gym[sweep]' (or pip install 'ray>=2.9')"
ERROR_CHARS = 4000  # of a failed attempt's traceback kept in the manifest


@dataclass(frozen=True)
class Cell:
    """One protocol run of a sweep.

    Attributes:
        agent: ``gru``, ``lstm``, ``rnn`` or ``sb3:<Algo>``.
        hidden: recurrent units (None: an SB3 agent's default from its hyperparameters).
        field_gain: curl gain of the FF phases (N*s/m).
        seed: the run's seed.
    """

    agent: str
    hidden: int | None
    field_gain: float
    seed: int

    @property
    def name(self) -> str:
        """The cell's folder: readable, and unique within a sweep."""
        agent = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.agent)
        size = "default" if self.hidden is None else str(self.hidden)
        return f"{agent}_h{size}_k{self.field_gain:g}_s{self.seed}"


@dataclass(frozen=True)
class CellSettings:
    """What every cell of a sweep shares (sent to the workers with each cell)."""

    networks: int
    preset: Preset
    device: str = "cpu"
    threads: int = 1
    checkpoint_seconds: float = 120.0

    def preset_for(self, cell: Cell) -> Preset:
        """The preset with the cell's field gain (its name kept: the config records the gain)."""
        return replace(self.preset, field_gain=float(cell.field_gain))


def run_cell(cell: Cell, settings: CellSettings, folder: str) -> dict[str, Any]:
    """Runs (or resumes) one cell; what a local worker or a Ray task executes.

    The run's output goes to ``folder/run.log`` so that parallel cells do not interleave on the
    terminal.

    Returns:
        ``seconds`` of this attempt and ``files``: relative path -> bytes of the result files
        (the driver writes them where the worker's file system is not the driver's).
    """
    if settings.threads:
        torch.set_num_threads(settings.threads)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(out / LOG, "a") as log, redirect_stdout(log), redirect_stderr(log):
        print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} on {socket.gethostname()}", flush=True)
        try:
            run(
                cell.agent,
                cell.hidden,
                settings.networks,
                settings.preset_for(cell),
                out,
                seed=cell.seed,
                device=settings.device,
                progress=False,
                checkpoint_seconds=settings.checkpoint_seconds,
            )
        except Exception:
            traceback.print_exc()  # into the log as well as back to the driver
            raise
    # what the driver needs to aggregate and report; result.json last, its presence marks a finished cell
    returned = [out / "curves.npz", *sorted((out / "figures").glob("*.png")), out / RESULT]
    files = {str(path.relative_to(out)): path.read_bytes() for path in returned if path.exists()}
    return {"seconds": time.time() - started, "files": files}


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


# -- backends -------------------------------------------------------------------------------------
def _init_worker(threads: int, driver: int) -> None:
    if threads:
        torch.set_num_threads(threads)
    threading.Thread(target=_exit_with_driver, args=(driver,), daemon=True, name="driver-watch").start()


def _exit_with_driver(driver: int, every: float = 1.0) -> None:
    """Ends this worker once the driver process is gone.

    A driver killed with SIGTERM or SIGKILL cannot shut its pool down, and the fork server keeps
    the workers alive: they would go on training (and writing checkpoints into the sweep folder)
    while a rerun of the sweep starts the same cells again.
    """
    while True:
        time.sleep(every)
        try:
            os.kill(driver, 0)
        except ProcessLookupError:
            os._exit(1)  # no cleanup to run: a cell's files are written atomically
        except PermissionError:  # alive, owned by someone else
            pass


def available_cpus() -> int:
    """CPUs this process may use (the affinity mask where there is one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def worker_context():
    """``forkserver`` where there is one, else ``spawn``; never ``fork`` (torch's threads do not survive it).

    The fork server imports the protocol's modules once and forks each worker from that state,
    so a worker starts in a fraction of a second instead of importing torch and MotorNet again.
    """
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # torch._dynamo: torch imports it when the first optimizer is made, seconds per worker otherwise;
    # a name that fails to import is skipped by the server; no effect once the server runs
    context.set_forkserver_preload(["benchmarks.sweep.runner", "benchmarks.savings.run", "torch._dynamo"])
    return context


class LocalBackend:
    """A pool of ``workers`` processes (:func:`worker_context`); a pool broken by a dead worker is replaced."""

    def __init__(self, workers: int, threads: int):
        self.workers, self.threads, self.generation = workers, threads, 0
        self.capacity = workers  # cells in flight: only running cells hold a future, so attempts are honest
        self.pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            self.workers, mp_context=worker_context(), initializer=_init_worker, initargs=(self.threads, os.getpid())
        )

    def submit(self, cell: Cell, settings: CellSettings, folder: str) -> Future:
        return self.pool.submit(run_cell, cell, settings, folder)

    def restart(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.pool = self._start()
        self.generation += 1

    def close(self, wait: bool = True) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=True)


def import_ray():
    """Ray, imported only when asked for (the CLI works without the extra)."""
    try:
        import ray
    except ImportError as error:
        raise ValueError(f"--backend ray needs Ray, which is not installed: {RAY_EXTRA}") from error
    return ray


def _probe(address: str, timeout: float = 5.0) -> None:
    """Fails fast when nothing listens at ``host:port`` (``ray.init`` would retry for minutes)."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--address must be 'auto', host:port or ray://host:port, got {address!r}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        raise ValueError(
            f"--address {address!r} is unreachable ({error.strerror or error}): is a Ray cluster running there "
            "(`ray start --head` on its head node)?"
        ) from error


class RayBackend:
    """Cells as Ray tasks (``max_retries=0``: the sweep counts and bounds the attempts itself).

    Uses the Ray session this process already has (``ray.init`` called before, as the tests do),
    else connects to ``address`` (None: Ray's own choice, ``RAY_ADDRESS`` or a new local instance)
    and disconnects at the end.
    """

    def __init__(self, address: str | None, cpus_per_cell: float, gpus_per_cell: float):
        ray = import_ray()
        self.ray, self.generation = ray, 0
        self.owned = not ray.is_initialized()
        if self.owned:
            if address not in (None, "auto"):
                _probe(address)
            try:
                ray.init(address=address, log_to_driver=False)
            except (ConnectionError, RuntimeError, TimeoutError) as error:
                raise ValueError(f"--address {address!r}: could not connect to a Ray cluster ({error})") from error
        resources = ray.cluster_resources()
        for flag, key, wanted in (("--cpus-per-cell", "CPU", cpus_per_cell), ("--gpus-per-cell", "GPU", gpus_per_cell)):
            if wanted > resources.get(key, 0):
                self.close()
                raise ValueError(
                    f"{flag} {wanted:g}: the Ray cluster has {resources.get(key, 0):g} {key}s, no cell could start"
                )
        self.capacity = math.inf  # Ray queues the tasks itself
        self.task = ray.remote(num_cpus=cpus_per_cell, num_gpus=gpus_per_cell, max_retries=0)(run_cell)

    def submit(self, cell: Cell, settings: CellSettings, folder: str) -> Future:
        return self.task.remote(cell, settings, folder).future()

    def restart(self) -> None:  # a dead Ray worker fails its task only
        pass

    def close(self, wait: bool = True) -> None:
        if self.owned:
            self.ray.shutdown()


# -- the sweep ------------------------------------------------------------------------------------
def _load_manifest(out: Path) -> dict[str, Any]:
    file = out / MANIFEST
    if os.path.lexists(file):
        manifest = read_json(out, MANIFEST)  # bounded, no links: a sweep folder may come from elsewhere
        if isinstance(manifest, dict) and manifest.get("format") == "savings-gym-sweep":
            return manifest
    return {"format": "savings-gym-sweep", "version": SWEEP_VERSION, "cells": {}}


def _save_manifest(out: Path, manifest: dict[str, Any]) -> None:
    counts: dict[str, int] = {}
    for entry in manifest["cells"].values():
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    manifest["counts"] = dict(sorted(counts.items()))
    manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    atomic_write_json(out / MANIFEST, manifest)


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


# -- aggregation ----------------------------------------------------------------------------------
def _interval(values: np.ndarray, scale: float = 1.0) -> dict[str, float]:
    ci = bootstrap_ci(np.asarray(values, np.float64) * scale)
    return {"estimate": ci.estimate, "low": ci.low, "high": ci.high}


def group_savings(results: list[dict]) -> dict[str, Any]:
    """Savings of a group of cells, their networks pooled (each network is an independent learner).

    Returns:
        ``networks`` (all); ``competent``, those past the competence gate, over which everything
        else is computed (:func:`benchmarks.savings.metrics.savings`); ``networks_with_fit``; the mean
        savings index log(r_FF2 / r_FF1), the fraction of networks with r_FF2 > r_FF1 (among
        those with both fits), the first-batch errors of FF1 and FF2 (cm) and the fraction of
        networks with a smaller FF2 one, each with a 95% bootstrap CI over networks
        (:func:`benchmarks.savings.metrics.bootstrap_ci`); and ``pretrained_endpoint_error_cm``, the mean
        endpoint error of the networks on the 8 test reaches when pretraining ended (None where
        no cell recorded it), because savings means little in networks that never learned to reach.
    """

    def pooled(key: str) -> np.ndarray:
        return np.concatenate([np.asarray(r["metrics"]["per_network"][key], np.float64) for r in results])

    index = pooled("savings_index")
    valid = np.isfinite(index)
    first1, first2 = pooled("first_error_FF1"), pooled("first_error_FF2")
    # each pretraining run records the mean over its networks: weight the cells by their networks
    competence = [
        (r["config"]["pretrained_meta"]["test_endpoint_error_m"], r["config"]["networks"])
        for r in results
        if "test_endpoint_error_m" in r["config"].get("pretrained_meta", {})
    ]
    pretrained_error = (
        100 * sum(error * n for error, n in competence) / sum(n for _, n in competence) if competence else None
    )
    total = sum(
        r["metrics"].get("competence", {}).get("networks", len(r["metrics"]["per_network"]["savings_index"]))
        for r in results
    )
    return {
        "networks": int(total),
        "competent": int(len(index)),
        "networks_with_fit": int(valid.sum()),
        "savings_index": _interval(index),
        "fraction_with_savings": _interval(pooled("has_savings")[valid]),
        "first_error_FF1_cm": _interval(first1, 100),
        "first_error_FF2_cm": _interval(first2, 100),
        "fraction_smaller_first_error": _interval(first2 < first1),
        "pretrained_endpoint_error_cm": pretrained_error,
    }


def aggregate(out: str | Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Savings per (agent, hidden size, field gain), seeds pooled, from the finished cells' result
    files; writes ``summary.json`` and ``figures/savings_vs_hidden.png`` (each atomically).

    Raises:
        ValueError: when ``out`` is not a sweep folder.
    """
    out = Path(out)
    if manifest is None:
        if not (out / MANIFEST).exists():
            raise ValueError(f"{out} holds no {MANIFEST}: run `savings-gym sweep ... --out {out}` first")
        manifest = _load_manifest(out)
    groups: dict[tuple[str, int | None, float], list[tuple[str, dict]]] = {}
    missing = []
    for name in manifest["cells"]:
        file = out / name / RESULT
        if not os.path.lexists(file):
            missing.append(name)
            continue
        result = read_json(out, f"{name}/{RESULT}")
        config = result["config"]
        key = (config["agent"], config.get("hidden"), float(config["preset"]["field_gain"]))  # hidden None: no RNN
        groups.setdefault(key, []).append((name, result))
    rows = []
    for (agent, hidden, gain), members in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1] or 0, g[0][2])):
        rows.append(
            {
                "agent": agent,
                "hidden": hidden,
                "field_gain": gain,
                "cells": [name for name, _ in members],
                "seeds": sorted(r["config"]["seed"] for _, r in members),
                **group_savings([r for _, r in members]),
            }
        )
    sized = any(row["hidden"] is not None for row in rows)
    summary = {
        "format": "savings-gym-sweep-summary",
        "version": SWEEP_VERSION,
        "groups": rows,
        "missing_cells": missing,
        "figure": str(FIGURE) if sized else None,
    }
    if sized:
        from benchmarks.savings.figures import png

        atomic_write_bytes(out / FIGURE, png(savings_vs_hidden_figure(rows)))
    atomic_write_json(out / SUMMARY, summary)
    return summary


def savings_vs_hidden_figure(rows: list[dict]):
    """Savings index, fraction of networks with savings and first-batch errors against hidden size,
    one line per (agent, field gain), 95% CIs as error bars."""
    from benchmarks.savings.figures import _figure

    fig = _figure(13, 3.8)
    panels = [fig.add_subplot(1, 3, i + 1) for i in range(3)]
    series: dict[tuple[str, float], list[dict]] = {}
    for row in rows:
        if row["hidden"] is None:  # a feed-forward learner has no size to place
            continue
        series.setdefault((row["agent"], row["field_gain"]), []).append(row)

    def draw(ax, members: list[dict], key: str, label: str, **style) -> None:
        x = np.array([m["hidden"] for m in members], np.float64)
        y = np.array([m[key]["estimate"] for m in members])
        error = np.abs(np.array([[m[key]["low"] for m in members], [m[key]["high"] for m in members]]) - y)
        ax.errorbar(x, y, yerr=np.nan_to_num(error), marker="o", capsize=3, label=label, **style)

    for (agent, gain), members in series.items():
        members = sorted(members, key=lambda m: m["hidden"])
        label = f"{agent}, k={gain:g}"
        draw(panels[0], members, "savings_index", label)
        draw(panels[1], members, "fraction_with_savings", label)
        draw(panels[2], members, "first_error_FF1_cm", f"{label} FF1", ls="--")
        draw(panels[2], members, "first_error_FF2_cm", f"{label} FF2")
    titles = ("savings index log(r_FF2 / r_FF1)", "networks with r_FF2 > r_FF1", "first-batch error (cm)")
    sizes = sorted({row["hidden"] for row in rows if row["hidden"] is not None})
    for ax, title in zip(panels, titles, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, labels=[str(size) for size in sizes])
        ax.minorticks_off()
        ax.set_xlabel("hidden units")
        ax.set_title(title)
        ax.legend(fontsize=7)
    panels[0].axhline(0, color="0.6", lw=0.8)
    panels[1].set_ylim(-0.05, 1.05)
    fig.suptitle("savings vs network size (mean over networks, 95% bootstrap CIs)")
    return fig


SUMMARY_COLUMNS = (
    "agent",
    "hidden",
    "k (N*s/m)",
    "networks (competent, fits)",
    "savings index",
    "with savings",
    "first error FF1 (cm)",
    "first error FF2 (cm)",
    "pretrained endpoint error (cm)",
)


def summary_rows(summary: dict[str, Any]) -> list[list[str]]:
    """The groups of a sweep summary as rows of text under :data:`SUMMARY_COLUMNS`."""
    rows = []
    for g in summary["groups"]:
        competence = g["pretrained_endpoint_error_cm"]
        rows.append(
            [
                g["agent"],
                str(g["hidden"]),
                f"{g['field_gain']:g}",
                f"{g['networks']} ({g.get('competent', g['networks'])}, {g['networks_with_fit']})",
                format_ci(g["savings_index"], "{:+.2f}"),
                format_ci(g["fraction_with_savings"], "{:.2f}"),
                format_ci(g["first_error_FF1_cm"], "{:.2f}"),
                format_ci(g["first_error_FF2_cm"], "{:.2f}"),
                "n/a" if competence is None else f"{competence:.2f}",
            ]
        )
    return rows


def summary_table(summary: dict[str, Any]) -> str:
    """The groups of a sweep summary as a Markdown table."""
    lines = ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|" + "---|" * len(SUMMARY_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(summary)]
    if summary["missing_cells"]:
        lines.append(f"(not finished: {', '.join(summary['missing_cells'])})")
    return "\n".join(lines)
