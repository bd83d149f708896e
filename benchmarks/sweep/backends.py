"""Where a sweep's cells run: local worker processes (:class:`LocalBackend`) or a Ray cluster
(:class:`RayBackend`), each worker limited to its share of the CPUs."""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor

import torch

from benchmarks.sweep.cells import RAY_EXTRA, Cell, CellSettings, run_cell


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
