"""Compiled BPTT with the networks split into shards, each rolled out by a worker process.

Why: on a CPU with a few cores, K networks rolled out as S shards of K/S, each in its own process
at one torch thread, run faster than all K in one process at S threads (K=40 on 2 cores: 1.3-1.4x,
``benchmarks/RESULTS.md``): a compiled step is many small kernels and small batched matmuls,
which torch's intra-op threads split poorly, and the Python between them runs on one core.

The networks are independent (their own weights, arms, trial draws and gradient clipping), so
shard s is networks ``start:stop`` and their arms' rows of the episode. The workers share the
networks' weights and gradients with the agent's process (shared memory): each adds its networks'
gradient in place, and the optimiser step in the agent's process updates the weights they read.
Everything else (the envs and their draws, the optimiser, checkpoints) stays with the agent, so a
run with any number of shards is the same run, to float32 rounding (``tests/test_bptt_speed.py``).

The workers start by ``spawn``: a script that builds a sharded agent must guard its entry point
with ``if __name__ == "__main__":``, as for any use of :mod:`multiprocessing`.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import traceback
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from agents.bptt_compiled import CompiledBPTT, Episode, Trajectory, map_tree, traceable_task
from agents.controllers import RecurrentControllers
from savings_gym.task import ReachTask

MIN_NETWORKS_PER_SHARD = 4
"""Below this, a shard's per-step overhead (the same whatever its size) outweighs the second core."""


def auto_shards(networks: int, device: str | torch.device = "cpu", threads: int | None = None) -> int:
    """Shards for ``networks`` networks: one per torch thread (``threads``, default
    ``torch.get_num_threads()``) on the CPU, at least :data:`MIN_NETWORKS_PER_SHARD` networks each;
    1 (no workers) on a GPU."""
    if torch.device(device).type != "cpu":
        return 1
    threads = torch.get_num_threads() if threads is None else threads
    return max(1, min(threads, networks // MIN_NETWORKS_PER_SHARD))


def shard_bounds(networks: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous ``(start, stop)`` network ranges, as even as can be, the larger ones first."""
    size, extra = divmod(networks, shards)
    bounds, start = [], 0
    for s in range(shards):
        stop = start + size + (s < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


class ShardedBPTT:
    """:meth:`CompiledBPTT.run` over K networks in ``shards`` worker processes (see the module).

    Args:
        controllers: the K GRU networks, on the CPU. Their parameters and gradients are moved to
            shared memory (in place: the module, its parameters and an optimiser over them keep
            working); the gradients must then stay where they are (``zero_grad(set_to_none=False)``).
        task: the env's dynamics (its params and cue).
        shards: worker processes, 2 to K.

    Raises:
        ValueError: for a cell other than the GRU, parameters off the CPU, or ``shards`` outside 2..K.
    """

    def __init__(self, controllers: RecurrentControllers, task: ReachTask, shards: int):
        k = controllers.num_networks
        if controllers.cell != "gru":
            raise ValueError(f"the compiled BPTT path runs GRUs only, got cell={controllers.cell!r}")
        if isinstance(shards, bool) or not isinstance(shards, int) or not 2 <= shards <= k:
            raise ValueError(f"shards must be an integer from 2 to the {k} networks, got {shards!r}")
        if controllers.w_hh.device.type != "cpu":
            raise ValueError(f"shards run on the CPU; the networks are on {controllers.w_hh.device}")
        self.controllers, self.shards = controllers, shards
        self.bounds = shard_bounds(k, shards)
        for param in controllers.parameters():
            if param.requires_grad and param.grad is None:
                param.grad = torch.zeros_like(param)
        controllers.share_memory()
        self._shared = self._addresses()
        self._buffers: dict[str, torch.Tensor] = {}
        params = {name: p.detach() for name, p in controllers.named_parameters()}
        grads = {name: p.grad for name, p in controllers.named_parameters() if p.requires_grad}
        context = multiprocessing.get_context("spawn")
        self._connections, self._processes = [], []
        for start, stop in self.bounds:
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_serve,
                args=(theirs, controllers.config(), params, grads, start, stop, task.params, task.cued),
                daemon=True,
                name=f"bptt-shard-{start}-{stop}",
            )
            process.start()
            theirs.close()
            self._connections.append(ours)
            self._processes.append(process)
        self._finalizer = weakref.finalize(self, _stop, self._connections, self._processes)

    def _addresses(self) -> list[tuple[int, int]]:
        return [
            (p.data_ptr(), p.grad.data_ptr() if p.requires_grad and p.grad is not None else 0)
            for p in self.controllers.parameters()
        ]

    def run(self, train: Episode, loss_fn: Callable[[dict], torch.Tensor], test: Episode | None = None) -> Trajectory:
        """As :meth:`CompiledBPTT.run`: the shards roll out their networks' rows at once; the
        losses, test records and end states come back joined in network order."""
        if self._addresses() != self._shared:
            raise RuntimeError(
                "the networks' weights or gradients moved since the shards started (the workers would not see "
                "them): keep them in place (load_state_dict and zero_grad(set_to_none=False) do)"
            )
        k, h = self.controllers.num_networks, self.controllers.hidden_size
        # the large arrays go through shared memory: the episodes' noise in, the test record out
        episodes = {"train": train} | ({} if test is None else {"test": test})
        fresh = {}
        for name, episode in episodes.items():
            fresh |= self._buffer(f"noise_{name}", episode.noise.shape)
        if test is not None:
            steps, rows = test.noise.shape[1] - 1, test.obs.shape[0] // k
            fresh |= self._buffer("test_hand", (k, rows, steps, 2)) | self._buffer("test_hidden", (k, rows, steps, h))
        for name, episode in episodes.items():
            self._buffers[f"noise_{name}"].copy_(episode.noise)
        workers = list(zip(self.bounds, self._connections, self._processes, strict=True))
        for (start, stop), connection, process in workers:
            parts = {
                name: _host(episode.rows(*arm_rows(episode.obs.shape[0], k, start, stop))._replace(noise=None))
                for name, episode in episodes.items()
            }
            try:
                connection.send((parts, loss_fn, fresh or None))
            except OSError:  # a broken pipe
                raise _died(process) from None
        out = _join([self._receive(connection, process) for _, connection, process in workers])
        if test is None:
            return out
        # copies: the record outlives the buffers' next batch
        return out._replace(
            test_hand_position=self._buffers["test_hand"].clone(), test_hidden=self._buffers["test_hidden"].clone()
        )

    def _buffer(self, name: str, shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        """Makes shared array ``name`` of ``shape`` unless it exists; returns it if new (the
        workers are then sent it once)."""
        buffer = self._buffers.get(name)
        if buffer is not None and buffer.shape == shape:
            return {}
        self._buffers[name] = torch.empty(shape).share_memory_()
        return {name: self._buffers[name]}

    @staticmethod
    def _receive(connection: Any, process: Any) -> Trajectory:
        try:
            status, *payload = connection.recv()
        except (EOFError, OSError):
            raise _died(process) from None
        if status == "ok":
            return _torch(payload[0])
        compiler, text = payload
        if compiler:  # BPTTAgent falls back to its eager engine on this one
            raise torch._dynamo.exc.TorchDynamoException(f"in BPTT shard worker {process.name}:\n{text}")
        raise RuntimeError(f"BPTT shard worker {process.name} failed:\n{text}")

    def close(self) -> None:
        """Stops the workers (also done when the object is collected or the process exits)."""
        self._finalizer()


def _died(process: Any) -> RuntimeError:
    process.join(timeout=1)
    return RuntimeError(f"BPTT shard worker {process.name} died (exit code {process.exitcode})")


def _stop(connections: list, processes: list) -> None:
    for connection in connections:
        with contextlib.suppress(OSError, ValueError):  # already gone
            connection.send(None)
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():
            process.terminate()
    for connection in connections:
        connection.close()


def _serve(
    connection: Any,
    config: dict,
    params: dict[str, torch.Tensor],
    grads: dict[str, torch.Tensor],
    start: int,
    stop: int,
    task_params: Any,
    cued: bool,
) -> None:
    """A worker: networks ``start:stop`` as views of the shared weights and gradients, rolled out
    at one thread on each episode the agent sends, until it sends None or goes away."""
    torch.set_num_threads(1)
    controllers = RecurrentControllers.from_config(config | {"seeds": config["seeds"][start:stop]})
    for name, param in controllers.named_parameters():
        param.data = params[name][start:stop]
        param.requires_grad_(name in grads)
        if name in grads:
            param.grad = grads[name][start:stop]
    rollout = CompiledBPTT(controllers, traceable_task(task_params, cued, "cpu"))
    networks = len(config["seeds"])
    buffers: dict[str, torch.Tensor] = {}
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        episodes, loss_fn, fresh = message
        buffers |= fresh or {}
        # the agent's optimiser changed the weights in place; a version counter does not cross
        # processes, so the cached transposed copies are remade
        controllers._transposed.clear()
        try:
            train, test = (_worker_episode(episodes.get(name), buffers.get(f"noise_{name}"), networks, start, stop)
                           for name in ("train", "test"))  # fmt: skip
            test_out = None if test is None else (buffers["test_hand"][start:stop], buffers["test_hidden"][start:stop])
            out = rollout.run(train, loss_fn, test, test_out)
            connection.send(("ok", _host(out._replace(test_hand_position=None, test_hidden=None))))
        except Exception as error:  # sent back whole: the agent raises it with this traceback
            compiler = isinstance(error, torch._dynamo.exc.TorchDynamoException)
            connection.send(("error", compiler, traceback.format_exc()))


def arm_rows(arms: int, networks: int, start: int, stop: int) -> tuple[int, int]:
    """The rows of networks ``start:stop`` among ``arms`` arms laid out network by network."""
    per_network = arms // networks
    return start * per_network, stop * per_network


def _worker_episode(
    episode: Episode | None, noise: torch.Tensor | None, networks: int, start: int, stop: int
) -> Episode | None:
    """A shard's episode as sent (its noise left out) with its rows of the shared noise."""
    if episode is None:
        return None
    return _torch(episode)._replace(noise=noise[slice(*arm_rows(noise.shape[0], networks, start, stop))])


def _host(tree: Any) -> Any:
    """Tensors of a (nested) tuple as NumPy arrays: pickled by value through the pipe (a tensor
    would go through a new shared-memory file each time)."""
    return map_tree(lambda x: x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, tree)


def _torch(tree: Any) -> Any:
    """The inverse of :func:`_host`."""
    return map_tree(lambda x: torch.from_numpy(x) if isinstance(x, np.ndarray) else x, tree)


def _join(parts: list[Any]) -> Any:
    """Shards' outputs joined along their first (network or arm) axis; what is not a tensor (the
    step count, an empty field) is the same in every shard and kept once."""
    return map_tree(lambda *xs: torch.cat(xs) if isinstance(xs[0], torch.Tensor) else xs[0], *parts)
