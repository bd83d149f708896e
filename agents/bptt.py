"""BPTT controllers (the paper's method): K recurrent networks trained by backpropagation through
time through the differentiable arm, all in one batched computation.

Read top to bottom: the arguments, the loss, the rollout, the agent (train / evaluate / checkpoint),
then pretraining as a script:

    python -m agents.bptt --hidden 128 --networks 4 --batches 20010 --out agents/pretrained/gru128.pt

What the paper did and this file does (SPEC.md, "The controller and its training"):

* loss = 1e3 position (L1 hand-to-desired, mean over time) + 1e5 jerk + 1e-1 muscle force
  + 3e-4 squared change of muscle force + 1e-5 squared hidden activity + 1e-3 squared change of
  hidden activity, per network;
* gradient norm clipped at 1, per network;
* pretraining ("growing up"): null-field reaches between random postures, batches of 32 (half of
  them catch trials), Adam lr 3e-3 decayed x0.9999 per batch;
* afterwards: input and output layers frozen, SGD lr 5e-3, batches of the 8 centre-out targets
  (random go times, 4 catch trials), through the hidden NF1 -> FF1 -> NF2 -> FF2 schedule;
* before every update each network does the 8 test reaches under the current field: its
  learning curve.

Over 500 lines because it is the BPTT algorithm's one script, top to bottom (CleanRL style):
arguments, the agent, pretraining and ``__main__``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.bptt_compiled import CompiledBPTT, Episode
from agents.bptt_shards import ShardedBPTT, auto_shards
from agents.controllers import RecurrentControllers
from agents.interface import ProtocolEnvs, ReachRecord, as_protocol_envs
from agents.serialization import atomic_torch_save, load_checkpoint
from savings_gym.arm import muscle_endpoint_force
from savings_gym.differentiable import DifferentiableArmEnv
from savings_gym.schedule import Schedule
from savings_gym.task import N_TEST_TARGETS

LOSS_WEIGHTS = {
    "position": 1e3,
    "jerk": 1e5,
    "force": 1e-1,
    "force_change": 3e-4,
    "hidden": 1e-5,
    "hidden_change": 1e-3,
}
PRETRAIN_BATCH, ADAPT_BATCH = 32, N_TEST_TARGETS
ENGINES = ("compiled", "eager", "reference")
ENGINE_VARIABLE = "SAVINGS_GYM_BPTT_ENGINE"
"""How :class:`BPTTAgent` computes its gradients, fastest first (``benchmarks/RESULTS.md``):

* ``compiled``: each step and its backward compiled (:mod:`agents.bptt_compiled`), the test
  reaches in the same forward pass; GRU only (other cells run ``eager``);
* ``eager``: autograd, with the arm's hand-written backward, fused GRU gates and the deferred
  recurrent-weight gradient;
* ``reference``: plain autograd through every operation (the path every other one is tested against).

All three give the same results to float32 rounding (``tests/test_bptt_speed.py``).
"""


def bptt_update_refusal(reaches_per_update: int, source: str = "--reaches-per-update") -> str:
    """Why a BPTT agent does not run at ``reaches_per_update`` other than 8 (the error message;
    ``source``: where the value came from)."""
    return (
        f"reaches_per_update={reaches_per_update} ({source}): BPTT agents (gru, lstm, rnn) make one "
        f"update per batch of {ADAPT_BATCH} reaches, as the paper's BPTT (one gradient step on a batch of the "
        f"{ADAPT_BATCH} centre-out targets, with a curve point before each); more reaches per update are for learners "
        "that collect them (sb3:<Algo>, or a learner of your own)"
    )


@dataclass
class Args:
    """Pretraining run (``python -m agents.bptt``)."""

    cell: str = "gru"
    """recurrent cell: gru (the paper's), lstm or rnn"""
    hidden: int = 128
    """recurrent units per network"""
    networks: int = 4
    """independent networks trained together"""
    seed: int = 0
    """the run's seed: network k's weights, arms and trials depend on (seed, k) only"""
    first_network: int = 0
    """index of the first network: a run's networks pretrained in pieces (0-7, 8-15, ...) are the
    networks the whole run would make, joined by :func:`join_pretrained`"""
    batches: int = 20010
    """pretraining batches (the paper's 20,010)"""
    lr: float = 3e-3
    """Adam learning rate"""
    lr_decay: float = 0.9999
    """learning-rate factor per batch"""
    device: str = "cpu"
    """torch device"""
    out: str = "runs/pretrained/gru128.pt"
    """where to write the pretrained networks (the shipped files in agents/pretrained/ are replaced
    only when named here)"""
    log_every: int = 100
    """batches between progress lines and checkpoints"""
    threads: int = 0
    """torch CPU threads (0: torch's default)"""


def derived_seed(*key: int) -> int:
    """A 32-bit seed derived from a tuple of integers (NumPy's SeedSequence), e.g. (run seed, network)."""
    return int(np.random.SeedSequence(list(key)).generate_state(1)[0])


def network_seeds(seed: int, count: int, first: int = 0) -> list[int]:
    """Weight seeds of networks ``first .. first + count - 1`` of a run: independent of how many train together."""
    return [derived_seed(seed, k) for k in range(first, first + count)]


def paper_loss(trajectory: dict[str, torch.Tensor], weights: dict[str, float] = LOSS_WEIGHTS) -> torch.Tensor:
    """The paper's loss, one value per network.

    Args:
        trajectory: (K, B, T, .) tensors ``hand_position``, ``desired_position``, ``hand_velocity``,
            ``muscle_force`` and ``hidden``, recorded after each of the T steps.
        weights: weight of each term.

    Returns:
        (K,) loss per network (each term averaged over its network's reaches and steps).
    """
    x, d = trajectory["hand_position"], trajectory["desired_position"]
    v, f, h = trajectory["hand_velocity"], trajectory["muscle_force"], trajectory["hidden"]

    def squared(t: torch.Tensor) -> torch.Tensor:
        return t * t  # square()'s backward (a pow) is ~5x slower than a product's on these sizes

    terms = {
        "position": (x - d).abs().sum(-1).mean((1, 2)),
        "jerk": squared(v.diff(n=2, dim=2)).sum(-1).mean((1, 2)),
        "force": f.sum(-1).mean((1, 2)),
        "force_change": squared(f.diff(dim=2)).sum(-1).mean((1, 2)),
        "hidden": squared(h).mean((1, 2, 3)),
        "hidden_change": squared(h.diff(dim=2)).mean((1, 2, 3)),
    }
    return sum(weights[name] * value for name, value in terms.items())


def rollout(
    env: DifferentiableArmEnv,
    controllers: RecurrentControllers,
    obs: torch.Tensor,
    hidden_offset: torch.Tensor | None = None,
    offset_step: int = 16,
    keep_joint: bool = False,
) -> dict:
    """One episode of every arm, stepped through the env (autograd records what it needs);
    returns (K, B, T, .) tensors (see :func:`paper_loss`).

    Args:
        env, obs: an env just reset, and the observation its reset returned.
        hidden_offset: (K, H) added to every reach's hidden state just before the controller's
            update at ``offset_step`` (after that many steps), for perturbation experiments.
        keep_joint: also return the joint states (``joint``, (K, B, T, 4)).
    """
    k = controllers.num_networks
    batch = obs.shape[0] // k
    state = controllers.initial_state(batch)
    keys = ["hand_position", "desired_position", "hand_velocity", "muscle_force"]
    record: dict[str, list[torch.Tensor]] = {key: [] for key in [*keys, "hidden"] + (["joint"] if keep_joint else [])}
    truncated, t = False, 0
    while not truncated:
        if hidden_offset is not None and t == offset_step:
            state = (state[0] + hidden_offset[:, None, :], *state[1:])
        action, state = controllers(obs.view(k, batch, -1), state)
        obs, _, _, truncated, info = env.step(action.reshape(k * batch, -1))
        for key in keys:
            record[key].append(info[key].view(k, batch, -1))
        record["hidden"].append(state[0])
        if keep_joint:
            record["joint"].append(env.state.arm.joint.view(k, batch, -1))
        t += 1
    return {key: torch.stack(values, dim=2) for key, values in record.items()}


class BPTTAgent:
    """K recurrent networks learning by BPTT through the hidden schedule (implements
    :class:`agents.interface.Agent`).

    Args:
        controllers: the K networks.
        envs: where they train: the :class:`~agents.interface.ProtocolEnvs` the protocol hands the
            agent's factory, or a schedule (then the agent builds its own, of ``env_id`` and ``task``).
            Each network lives in its own world of the differentiable env built from it.
        env_id: ``ArmCurlField-v0`` (adaptation) or ``ArmReach-v0`` (pretraining); with ``envs`` a
            ProtocolEnvs, its own (a different one is refused).
        batch_size: reaches per network per update (8 centre-out targets, or 32 random reaches).
        optimizer: ``"sgd"`` or ``"adam"``.
        lr: learning rate; ``lr_decay``: factor applied after every update.
        seed: the run's seed (arms and trial draws of network k depend on it and k only).
        device: torch device.
        engine: one of :data:`ENGINES`; default: the environment variable
            ``SAVINGS_GYM_BPTT_ENGINE``, else ``compiled`` (which falls back to ``eager``, with a
            warning, where ``torch.compile`` cannot build its code).
        task: task constants replacing the id's defaults (:class:`savings_gym.task.TaskParams`
            fields, e.g. ``{"test_go_time": 0.44}``); with ``envs`` a ProtocolEnvs, its own.
        shards: worker processes the ``compiled`` engine's rollouts are split over, by network
            (:mod:`agents.bptt_shards`; the same results to float32 rounding); 1: none, in this
            process; ``"auto"``: one per torch thread on the CPU, at least 4 networks each
            (:func:`agents.bptt_shards.auto_shards`). Workers start by ``spawn``: guard a script's
            entry point with ``if __name__ == "__main__":``.

    Raises:
        ValueError: for an unknown engine or optimiser, a centre-out batch size other than 8, or
            ``shards`` not ``"auto"`` nor an integer from 1 to K (above 1 on the CPU only).
    """

    def __init__(
        self,
        controllers: RecurrentControllers,
        envs: ProtocolEnvs | Schedule,
        *,
        env_id: str | None = None,
        batch_size: int = ADAPT_BATCH,
        optimizer: str = "sgd",
        lr: float = 5e-3,
        lr_decay: float = 1.0,
        seed: int = 0,
        first_network: int = 0,
        device: str = "cpu",
        max_grad_norm: float = 1.0,
        engine: str | None = None,
        task: Mapping[str, Any] | None = None,
        shards: int | str = 1,
    ):
        if engine is None:
            engine = os.environ.get(ENGINE_VARIABLE, "compiled")
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES} (argument or ${ENGINE_VARIABLE}), got {engine!r}")
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
        shards = _check_shards(shards, controllers.num_networks, device)
        envs = as_protocol_envs(envs, env_id, task)
        env_id = envs.env_id
        if env_id == "ArmCurlField-v0" and batch_size != ADAPT_BATCH:
            raise ValueError(
                f"centre-out batches hold the {ADAPT_BATCH} targets once each, got batch_size={batch_size}"
            )
        self.controllers = controllers.to(device)
        self.num_networks = controllers.num_networks
        self.batch_size = batch_size
        self.max_grad_norm = max_grad_norm
        self.env_id = env_id
        self.task = dict(envs.task)
        self.first_network = first_network
        k = self.num_networks
        networks = range(first_network, first_network + k)
        arm_seeds = [derived_seed(seed, n, i) for n in networks for i in range(batch_size)]
        reference = engine == "reference"
        self.env = envs.differentiable(k * batch_size, num_worlds=k, device=device, hand_written_grads=not reference)
        self.env.reset(seed=arm_seeds)
        controllers.fused = not reference
        if engine == "compiled" and controllers.cell != "gru":
            engine = "eager"
        self.engine = engine
        self.shards = shards if engine == "compiled" else 1
        self._compiled: CompiledBPTT | ShardedBPTT | None = None
        if engine == "compiled":
            if self.shards > 1:
                self._compiled = ShardedBPTT(controllers, self.env.task, self.shards)
            else:
                self._compiled = CompiledBPTT(controllers, self.env.task)
        self._rngs = [np.random.default_rng([seed, n]) for n in networks]
        params = [p for p in controllers.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=lr) if optimizer == "sgd" else torch.optim.Adam(params, lr=lr)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=lr_decay)
        self.last_loss: np.ndarray | None = None

    @property
    def episodes_completed(self) -> int:
        return self.env.episodes_completed

    @property
    def phase(self) -> str:
        return self.env.phase

    def _balanced_trials(self) -> dict[str, np.ndarray]:
        """The paper's batches: each centre-out target once (or random reaches) and exactly half
        catch trials, drawn per network from its own generator."""
        catch, go_time, target = [], [], []
        low, high = self.env.params.go_time_range
        for rng in self._rngs:
            flags = np.zeros(self.batch_size, bool)
            flags[rng.permutation(self.batch_size)[: self.batch_size // 2]] = True
            catch.append(flags)
            go_time.append(rng.uniform(low, high, self.batch_size))
            target.append(np.arange(self.batch_size) % N_TEST_TARGETS)
        trials = {"catch": np.concatenate(catch), "go_time": np.concatenate(go_time)}
        if self.env.params.targets == "centre_out":
            trials["target"] = np.concatenate(target)
        return trials

    def train(self, episodes: int) -> None:
        """``episodes // batch_size`` updates of every network."""
        if episodes % self.batch_size:
            raise ValueError(f"episodes must be a multiple of the batch size {self.batch_size}, got {episodes}")
        for _ in range(episodes // self.batch_size):
            self.train_batch()

    def train_batch(self) -> np.ndarray:
        """One update of every network on one batch; returns the (K,) losses."""
        return self._train_batch(None)[0]

    def evaluate_then_train(
        self, field_gain: float, eval_seed: int = 0, channel: bool = False, episodes: int = ADAPT_BATCH
    ) -> ReachRecord:
        """:meth:`evaluate` under ``field_gain`` (in the channel when ``channel``), then one
        :meth:`train_batch`, from the same weights: what the protocol does before every update. The
        ``compiled`` engine plays field test reaches in the training rollout's forward pass (they
        share its matmuls).

        Raises:
            ValueError: for ``episodes`` other than the batch size: the protocol's curve point is
                before every update, and a BPTT update is one batch.
        """
        if episodes != self.batch_size:
            raise ValueError(bptt_update_refusal(episodes))
        if self._compiled is None or channel:
            record = self.evaluate(field_gain, eval_seed, channel=channel)
            self.train_batch()
            return record
        return self._train_batch((field_gain, eval_seed))[1]

    def _train_batch(self, test: tuple[float, int] | None) -> tuple[np.ndarray, ReachRecord | None]:
        test_env = test_obs = None
        if test is not None:
            test_env = self._test_env()
            test_obs, _ = test_env.reset(options=self._test_options(*test))
        obs, _ = self.env.reset(options={"trials": self._balanced_trials()})
        self.optimizer.zero_grad(set_to_none=False)
        record = out = None
        if self._compiled is not None:
            test_episode = None if test_env is None else Episode.of(test_env, test_obs)
            try:
                out = self._compiled.run(Episode.of(self.env, obs), paper_loss, test_episode)
            except torch._dynamo.exc.TorchDynamoException as error:  # no working compiler here
                self._fall_back(error)  # and redo this batch, on the same reset, eagerly
                self.optimizer.zero_grad(set_to_none=False)  # a shard may have added its part
        if out is not None:
            self.env.advance(out.train_state)
            if test_env is not None:
                test_env.advance(out.test_state)
            losses = out.losses
            if test is not None:
                record = self._record(test_env, test[0], out.test_hand_position, out.test_hidden)
        else:
            if test is not None:
                record = self.evaluate(*test)
            with self.controllers.deferred_weight_grad() if self.engine == "eager" else contextlib.nullcontext():
                losses = paper_loss(rollout(self.env, self.controllers, obs))
                losses.sum().backward()  # network k's gradient is that of its own loss
        self._clip_per_network()
        self.optimizer.step()
        self.scheduler.step()
        self.last_loss = losses.detach().cpu().numpy()
        return self.last_loss, record

    def close(self) -> None:
        """Stops the shard workers, if any (also done when the agent is collected or the process
        exits); the agent then trains in its own process."""
        if isinstance(self._compiled, ShardedBPTT):
            self._compiled.close()
            self._compiled, self.shards = CompiledBPTT(self.controllers, self.env.task), 1

    def _fall_back(self, error: Exception) -> None:
        warnings.warn(
            f"torch.compile could not build the compiled BPTT step ({type(error).__name__}: {str(error)[:200]}); "
            "using engine='eager' (the same results, slower)",
            RuntimeWarning,
            stacklevel=3,
        )
        self.close()
        self.engine, self._compiled = "eager", None

    def _clip_per_network(self) -> None:
        params = [p for p in self.controllers.parameters() if p.requires_grad and p.grad is not None]
        squared = sum(p.grad.reshape(self.num_networks, -1).square().sum(1) for p in params)
        scale = (self.max_grad_norm / (squared.sqrt() + 1e-6)).clamp(max=1.0)
        for p in params:
            p.grad.mul_(scale.view(-1, *([1] * (p.grad.dim() - 1))))

    @torch.no_grad()
    def evaluate(
        self,
        field_gain: float,
        eval_seed: int = 0,
        hidden_offset: np.ndarray | None = None,
        offset_step: int = 16,
        endpoint_force: bool = False,
        channel: bool = False,
    ) -> ReachRecord:
        """The 8 test reaches of every network under ``field_gain``, outside the schedule.

        Args:
            field_gain: curl gain (N*s/m).
            eval_seed: test noise seed.
            hidden_offset: (K, H) added to the hidden state before the update at ``offset_step``.
            endpoint_force: also compute the force the muscles put on the hand at every step.
            channel: make the reaches in the error-clamp channel (``field_gain`` must then be 0).
        """
        test_env = self._test_env()
        obs, _ = test_env.reset(options=self._test_options(field_gain, eval_seed, channel))
        offset = None
        if hidden_offset is not None:
            offset = torch.as_tensor(hidden_offset, dtype=torch.float32, device=test_env.device)
        trajectory = rollout(test_env, self.controllers, obs, offset, offset_step, keep_joint=endpoint_force)
        force = None
        if endpoint_force:
            joint, muscle = trajectory["joint"], trajectory["muscle_force"]
            flat = muscle_endpoint_force(test_env.task.arm, test_env.xp, joint.reshape(-1, 4), muscle.reshape(-1, 6))
            force = flat.reshape(*joint.shape[:3], 2).cpu().numpy()
        record = self._record(test_env, field_gain, trajectory["hand_position"], trajectory["hidden"], force)
        record.hand_velocity = trajectory["hand_velocity"].cpu().numpy()
        record.channel = channel
        return record

    def _test_options(self, field_gain: float, eval_seed: int, channel: bool = False) -> dict:
        # test arm i is seeded eval_seed + i: offset by the first network so network n's test noise
        # does not depend on how many networks are evaluated together
        seed = eval_seed + self.first_network * N_TEST_TARGETS
        return {"mode": "test", "field_gain": field_gain, "eval_seed": seed} | ({"channel": True} if channel else {})

    @staticmethod
    def _record(
        test_env: DifferentiableArmEnv,
        field_gain: float,
        hand_position: torch.Tensor,
        hidden: torch.Tensor,
        endpoint_force: np.ndarray | None = None,
    ) -> ReachRecord:
        return ReachRecord(
            hand_position=hand_position.cpu().numpy(),
            target=test_env.state.target[:N_TEST_TARGETS].cpu().numpy(),
            field_gain=float(field_gain),
            hidden=hidden.cpu().numpy(),
            endpoint_force=endpoint_force,
        )

    def _test_env(self) -> DifferentiableArmEnv:
        if not hasattr(self, "_test"):
            k = self.num_networks
            self._test = DifferentiableArmEnv(
                k * N_TEST_TARGETS,
                self.env.schedule,
                num_worlds=k,
                device=self.env.device,
                differentiable=False,
                **self.task,  # the test reaches run under the same task constants (go time, delays)
            )
            self._test.reset(seed=0)
        return self._test

    def state_dict(self) -> dict[str, Any]:
        """A snapshot (copies, not views of the live tensors) of everything a resumed run needs."""
        return copy.deepcopy(
            {
                "controllers": self.controllers.state_dict(),
                "controllers_config": self.controllers.config(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "world": self.env.get_state(),
                "rngs": [rng.bit_generator.state for rng in self._rngs],
            }
        )

    def learner_state(self) -> dict[str, Any]:
        """What the networks have learnt (:class:`agents.interface.Resettable`): weights, optimiser and
        learning-rate schedule (copies); not the world (schedule counter, arm noise) nor the trial draws."""
        state = self.state_dict()
        return {key: state[key] for key in ("controllers", "controllers_config", "optimizer", "scheduler")}

    def load_learner_state(self, state: dict[str, Any]) -> None:
        """Restores :meth:`learner_state` (in place: a compiled step keeps working)."""
        self.controllers.load_state_dict(state["controllers"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.load_learner_state(state)
        self.env.set_state(state["world"])
        for rng, rng_state in zip(self._rngs, state["rngs"], strict=True):
            rng.bit_generator.state = rng_state


def _check_shards(shards: int | str, networks: int, device: str) -> int:
    if shards == "auto":
        return auto_shards(networks, device)
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= networks:
        raise ValueError(f"shards must be 'auto' or an integer from 1 to the {networks} networks, got {shards!r}")
    if shards > 1 and torch.device(device).type != "cpu":
        raise ValueError(f"shards split the work over CPU processes; on device {device!r} use shards=1")
    return shards


# -- pretrained networks ------------------------------------------------------------------------
PRETRAINED_DIR = Path(__file__).parent / "pretrained"


def save_pretrained(controllers: RecurrentControllers, path: str | Path, meta: dict) -> None:
    """Writes networks and how they were made (atomically)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({"config": controllers.config(), "state": controllers.state_dict(), "meta": meta}, path)


def load_pretrained(path: str | Path, networks: Sequence[int] | None = None) -> tuple[RecurrentControllers, dict]:
    """Loads networks written by :func:`save_pretrained` (safely: ``weights_only=True``).

    Args:
        path: the file.
        networks: indices of the networks to keep (default all).

    Raises:
        ValueError: for a file that is not a savings-gym checkpoint or does not match its config.
    """
    blob = load_checkpoint(path)
    try:
        controllers = RecurrentControllers.from_config(blob["config"])
        controllers.load_state_dict(blob["state"])
    except (KeyError, TypeError, RuntimeError, ValueError) as error:
        raise ValueError(f"{path}: not a valid pretrained-controllers checkpoint ({error})") from error
    if networks is not None:
        if max(networks) >= controllers.num_networks:
            raise ValueError(f"{path} holds {controllers.num_networks} networks, asked for {list(networks)}")
        controllers = controllers.select(networks)
    return controllers, blob.get("meta", {})


# what may differ between the pieces of one pretraining run (the rest of their arguments must agree)
_PIECE_KEYS = ("networks", "first_network", "out", "device", "threads", "log_every", "seconds", "test_endpoint_error_m")


def join_pretrained(paths: Sequence[str | Path], out: str | Path) -> RecurrentControllers:
    """Joins files that :func:`pretrain` wrote for consecutive pieces of one run (``first_network``
    0, 8, 16, ...: the same networks the whole run would make) into one file, in network order.

    The joined file's meta holds the run's arguments with ``networks`` the total, the summed wall
    time, the network-weighted test endpoint error, and each piece's file name and SHA-256.

    Raises:
        ValueError: for pieces of different runs (cell, size, seed, learning rate, batches), pieces
            not finished, or networks missing or repeated between them.
    """
    if len(paths) < 1:
        raise ValueError("--join needs at least one pretrained file")
    pieces = []
    for path in paths:
        controllers, meta = load_pretrained(path)
        if meta.get("batches_done") != meta.get("batches"):
            raise ValueError(f"{path}: unfinished piece ({meta.get('batches_done')} of {meta.get('batches')} batches)")
        pieces.append((int(meta.get("first_network", 0)), Path(path), controllers, meta))
    pieces.sort(key=lambda piece: piece[0])
    run = {k: v for k, v in pieces[0][3].items() if k not in _PIECE_KEYS}
    expected_first = 0
    for first, path, controllers, meta in pieces:
        other = {k: v for k, v in meta.items() if k not in _PIECE_KEYS}
        if other != run:
            differ = sorted(k for k in set(other) | set(run) if other.get(k) != run.get(k))
            raise ValueError(f"{path} is not a piece of the same run as {pieces[0][1]}: {differ} differ")
        if first != expected_first:
            raise ValueError(
                f"{path} starts at network {first}, expected {expected_first} (pieces must follow each other from 0)"
            )
        expected_first += controllers.num_networks
    joined = RecurrentControllers.concatenate([controllers for _, _, controllers, _ in pieces])
    total = joined.num_networks
    meta = {
        **run,
        "networks": total,
        "first_network": 0,
        "out": str(out),
        "seconds": sum(meta["seconds"] for *_, meta in pieces),
        "test_endpoint_error_m": sum(m["test_endpoint_error_m"] * c.num_networks for _, _, c, m in pieces) / total,
        "joined_from": [
            {
                "file": path.name,
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "first_network": first,
                "networks": controllers.num_networks,
            }
            for first, path, controllers, _ in pieces
        ],
    }
    save_pretrained(joined, out, meta)
    return joined


def pretrain(args: Args) -> RecurrentControllers:
    """Grows networks up in the null field (``ArmReach-v0``), as the paper's first phase.

    Writes the networks to ``args.out`` and the full training state beside it (``.state``) every
    ``log_every`` batches; rerunning the same command resumes from that state.
    """
    from savings_gym.schedule import null_schedule

    if args.threads:
        torch.set_num_threads(args.threads)
    probe = DifferentiableArmEnv(1, env_id="ArmReach-v0")
    controllers = RecurrentControllers(
        args.cell,
        network_seeds(args.seed, args.networks, args.first_network),
        probe.single_observation_space.shape[0],
        args.hidden,
    )
    agent = BPTTAgent(
        controllers,
        null_schedule(),
        env_id="ArmReach-v0",
        batch_size=PRETRAIN_BATCH,
        optimizer="adam",
        lr=args.lr,
        lr_decay=args.lr_decay,
        seed=args.seed,
        first_network=args.first_network,
        device=args.device,
        shards="auto",  # one worker process per torch thread (--threads)
    )
    state_path = Path(args.out).with_suffix(".state")
    done, seconds = 0, 0.0
    if state_path.exists():
        saved = load_checkpoint(state_path, map_location=args.device)
        if saved["args"] != {k: v for k, v in asdict(args).items() if k not in ("batches", "threads", "log_every")}:
            raise ValueError(
                f"{state_path} was written with other arguments ({saved['args']}); remove it or match them"
            )
        agent.load_state_dict(saved["agent"])
        done, seconds = saved["batches_done"], saved["seconds"]
        print(f"resuming at batch {done} from {state_path}", flush=True)
    start = time.time() - seconds
    for batch in range(done + 1, args.batches + 1):
        losses = agent.train_batch()
        if batch % args.log_every == 0 or batch == args.batches:
            record = agent.evaluate(0.0)
            error = np.linalg.norm(record.hand_position[:, :, -1] - record.target[None], axis=-1).mean()
            elapsed = time.time() - start
            print(
                f"batch {batch}/{args.batches}  loss {losses.mean():.2f}  test endpoint error "
                f"{error * 100:.2f} cm  {elapsed:.0f} s",
                flush=True,
            )
            meta = {**asdict(args), "batches_done": batch, "seconds": elapsed, "test_endpoint_error_m": float(error)}
            save_pretrained(controllers, args.out, meta)
            atomic_torch_save(
                {
                    "args": {k: v for k, v in asdict(args).items() if k not in ("batches", "threads", "log_every")},
                    "agent": agent.state_dict(),
                    "batches_done": batch,
                    "seconds": elapsed,
                },
                state_path,
            )
    return controllers


def _parse(argv: Sequence[str] | None = None) -> Args:
    parser = argparse.ArgumentParser(description="Pretrain BPTT controllers in the null field.")
    for name, value in asdict(Args()).items():
        if name != "extra":
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    return Args(**vars(parser.parse_args(argv)))


if __name__ == "__main__":
    pretrain(_parse())
