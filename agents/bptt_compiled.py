"""Compiled BPTT: a GRU rollout through the arm and its backward, two compiled calls per step.

Why: BPTT on this task is bound mostly by per-operation overhead, not arithmetic. Each time step
is a few hundred tiny tensor operations (the arm, the task, the gates) and autograd records and
replays each of them. Here each step is one compiled function of the step's inputs (no
autograd graph), and the backward is one compiled vector-Jacobian product per step
(``torch.func.vjp`` of the same function, fused by ``torch.compile``). Around them:

* the test reaches ride along in the same forward pass, as rows of the same batch (joined once
  per episode): one step call runs the matmuls, the gates, the arm and the task once over both
  (:func:`_joint_forward`); the backward takes the training rows' views;
* the recurrent weights' gradient is deferred: one (K, 3H, T*B) x (K, T*B, H) matmul after the
  backward instead of one per step, as :meth:`RecurrentControllers.deferred_weight_grad` does;
* the loss is the paper's (:func:`agents.bptt.paper_loss`), it and its gradient with respect to
  the recorded trajectory one compiled call (``torch.func.grad``), and its gradients enter the
  per-step backward where they belong;
* the hidden states and the recurrent gates' gradients are written, each step, into work arrays
  kept from batch to batch, which the loss and the deferred weight gradient read in place: no
  concatenation of cold memory after the loop, and no fresh pages (arrays made anew each batch,
  a 50 MB concatenation among them, cost 20,000-40,000 page faults per K=40 batch).

The step is the same code as the eager path: :meth:`savings_gym.task.ReachTask.step` for the arm
and task, :func:`agents.controllers.gru_gates` and friends for the network, so the two paths
agree to float32 rounding (``tests/test_bptt_speed.py``). Compiling takes 10-60 s the first time
on a machine and is cached by torch (``/tmp/torchinductor_<user>``) for later processes; with
``compile=False`` the same functions run eagerly (slow; for debugging). Where compiling fails,
:class:`agents.bptt.BPTTAgent` falls back to its ``eager`` engine.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import numpy as np
import torch

from agents.controllers import RecurrentControllers, accumulate_grad, gru_gates, input_gates, readout
from savings_gym.backend import make_backend
from savings_gym.differentiable import DifferentiableArmEnv
from savings_gym.task import NOISE_WIDTH, ReachTask, TaskParams, TaskState, Trials

Tensor = torch.Tensor


class Weights(NamedTuple):
    """The networks' weights as plain tensors (the compiled functions' inputs)."""

    w_ih: Tensor
    b_ih: Tensor
    w_hh_t: Tensor  # (K, H, 3H) contiguous
    b_hh: Tensor
    w_out: Tensor
    b_out: Tensor


def _network_step(
    task: ReachTask, weights: Weights, h: Tensor, gates_h: Tensor, obs: Tensor, state: TaskState, noise: Tensor
) -> tuple[Tensor, Tensor, TaskState, Tensor]:
    """One step of K GRUs (hidden (K, B, H)) and their K*B arms.

    ``state.step`` is a 0-d tensor here, so that the compiled code does not specialise on it.
    Returns the new hidden state, observation and task state, and the desired hand position.
    """
    k, b, _ = h.shape
    h_new = gru_gates(input_gates(weights.w_ih, weights.b_ih, obs.view(k, b, -1)), gates_h, h)[0]
    action = readout(weights.w_out, weights.b_out, h_new)
    new_state, new_obs, _, info = task.step(state, action.reshape(k * b, -1), noise)
    return h_new, new_obs, new_state, info["desired_position"]


def _joint_forward(
    task: ReachTask, weights: Weights, h: Tensor, obs: Tensor, state: TaskState, noise: Tensor, rows: int
) -> tuple[Tensor, Tensor, Tensor, TaskState, Tensor]:
    """One step of the training reaches and the test reaches together, as one batch.

    Each network's hidden states ``h`` (K, B + B_test, H) hold its B training rows first; the
    arms' rows (``obs``, ``state``, ``noise``) hold all K*B training rows first, then the K*B_test
    test rows. ``rows`` is B. The arm, task and gate arithmetic then runs once over both, and the
    recurrent matmul reads the weights once for both.

    Returns the training rows' recurrent gate pre-activations (the backward's input), the new
    hidden state, observation and task state of all rows, and the training rows' desired hand
    position.
    """
    k, both, _ = h.shape
    split = k * rows
    gates_h = torch.baddbmm(weights.b_hh[:, None, :], h, weights.w_hh_t)
    if both == rows:  # no test reaches
        obs_k = obs.view(k, rows, -1)
    else:
        obs_k = torch.cat([obs[:split].view(k, rows, -1), obs[split:].view(k, both - rows, -1)], dim=1)
    h_new = gru_gates(input_gates(weights.w_ih, weights.b_ih, obs_k), gates_h, h)[0]
    action = readout(weights.w_out, weights.b_out, h_new)
    if both == rows:
        action = action.reshape(split, -1)
    else:
        action = torch.cat([action[:, :rows].reshape(split, -1), action[:, rows:].reshape(-1, action.shape[-1])])
    new_state, new_obs, _, info = task.step(state, action, noise)
    return gates_h[:, :rows], h_new, new_obs, new_state, info["desired_position"][:split]


def _rows(state: TaskState, start: int, stop: int | None) -> TaskState:
    """The arms' rows ``start:stop`` of a task state (views)."""
    fields = zip(state._fields, state, strict=True)
    return TaskState(*(x if name == "step" else _slice(x, start, stop) for name, x in fields))


def map_tree(fn: Any, *trees: Any) -> Any:
    """``fn`` applied leaf by leaf to (nested) tuples, lists and NamedTuples of one shape (e.g.
    :class:`TaskState` s); a leaf is anything else: a tensor, an array, None, a number."""
    first = trees[0]
    if not isinstance(first, tuple | list):
        return fn(*trees)
    items = [map_tree(fn, *parts) for parts in zip(*trees, strict=True)]
    return type(first)(*items) if hasattr(first, "_fields") else type(first)(items)


def _slice(tree: Any, start: int, stop: int | None) -> Any:
    # None: an optional field left empty, e.g. TaskState.channel in a batch without channels
    return map_tree(lambda x: None if x is None else x[start:stop], tree)


def _both_channels(a: TaskState, b: TaskState) -> tuple[TaskState, TaskState]:
    """Two task states whose channel flags are both tensors or both None (a batch without channel
    trials gets zeros when joined to one with them)."""
    if (a.channel is None) == (b.channel is None):
        return a, b
    a = a if a.channel is not None else a._replace(channel=torch.zeros_like(a.onset))
    b = b if b.channel is not None else b._replace(channel=torch.zeros_like(b.onset))
    return a, b


def _cat_rows(a: Any, b: Any) -> Any:
    """Two (nested) tuples of tensors joined row by row (0-d tensors, the step, from ``a``)."""
    return map_tree(lambda x, y: x if x is None or x.dim() == 0 else torch.cat([x, y]), a, b)


def _step_vjp(
    task: ReachTask, weights: Weights, primals: tuple, noise: Tensor, cotangents: tuple, weight_grads: bool
) -> tuple:
    """Gradients of one step's inputs (h, gates_h, obs, state), and first of the input and
    readout weights when ``weight_grads``, from the cotangents of its outputs (h, obs, state)."""
    h, gates_h, obs, state = primals
    # torch.func transforms take tensors only: a state without channel trials (channel None) goes
    # through them as the tuple of its other fields
    plain = state.channel is None

    def pack(s: TaskState) -> tuple:
        return tuple(s[:-1]) if plain else tuple(s)

    def step(new_weights: Weights, h: Tensor, gates_h: Tensor, obs: Tensor, fields: tuple) -> tuple:
        h, obs, new_state = _network_step(task, new_weights, h, gates_h, obs, TaskState(*fields), noise)[:3]
        return h, obs, pack(new_state)

    inputs = (h, gates_h, obs, pack(state))
    if weight_grads:

        def with_weights(w_ih, b_ih, w_out, b_out, *inputs):  # noqa: ANN001, ANN202
            return step(weights._replace(w_ih=w_ih, b_ih=b_ih, w_out=w_out, b_out=b_out), *inputs)

        _, vjp = torch.func.vjp(with_weights, weights.w_ih, weights.b_ih, weights.w_out, weights.b_out, *inputs)
    else:
        _, vjp = torch.func.vjp(lambda *inputs: step(weights, *inputs), *inputs)
    g_h, g_obs, g_state = cotangents
    grads = vjp((g_h, g_obs, pack(g_state)))
    return (*grads[:-1], TaskState(*grads[-1]))


def _loss_grad(
    loss_fn: Any, sizes: tuple[int, int], hand: Tensor, force: Tensor, hidden: Tensor, desired: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The (K,) losses of a recorded trajectory and their sum's gradients with respect to it.

    Args:
        loss_fn: maps the (K, B, T, .) trajectory dict (see :func:`agents.bptt.paper_loss`) to (K,).
        sizes: K networks and B reaches each.
        hand, force, desired: (T, K*B, .) stacks of the steps' hand states, muscle forces and
            desired hand positions.
        hidden: (K, T+1, B, H), the hidden state entering each step and the last one (slot t+1
            holds step t's output).

    Returns:
        The losses, and the gradients of their sum with respect to ``hand``, ``force`` and
        ``hidden``, each shaped like it (slot 0 of ``hidden``'s is zero).
    """
    k, b = sizes

    def network_major(x: Tensor) -> Tensor:  # (T, K*B, .) -> (K, B, T, .)
        return x.view(x.shape[0], k, b, -1).permute(1, 2, 0, 3)

    def total(hand: Tensor, force: Tensor, hidden: Tensor) -> tuple[Tensor, Tensor]:
        hand = network_major(hand)
        losses = loss_fn(
            {
                "hand_position": hand[..., 0:2],
                "hand_velocity": hand[..., 2:4],
                "desired_position": network_major(desired),
                "muscle_force": network_major(force),
                "hidden": hidden[:, 1:].transpose(1, 2),
            }
        )
        return losses.sum(), losses

    grads, losses = torch.func.grad(total, argnums=(0, 1, 2), has_aux=True)(hand, force, hidden)
    return (losses, *grads)


# Compiled once per process, and specialised by torch on the task object and on shapes: agents
# share the task object of their parameters (below), so a new agent does not recompile.
_COMPILED_FORWARD = torch.compile(_joint_forward, dynamic=None)
_COMPILED_VJP = torch.compile(_step_vjp, dynamic=None)
_COMPILED_LOSS_GRAD = torch.compile(_loss_grad, dynamic=None)


@functools.lru_cache(maxsize=16)
def traceable_task(params: TaskParams, cued: bool, device: str) -> ReachTask:
    """The task on a differentiable backend whose arm has no hand-written backward (``torch.func``
    traces every operation instead), one object per parameters, cue and device."""
    task = ReachTask(params, make_backend("torch", device, differentiable=True, hand_written_grads=False), cued)
    # One eager step fills the backend's cache of constants; tracing it would change a dict the
    # compiled code is guarded on, and so recompile once.
    with torch.no_grad():
        noise = torch.zeros(1, NOISE_WIDTH, device=device)
        trials = Trials(np.zeros((1, 4), np.float32), np.zeros((1, 2), np.float32), np.zeros(1, np.float32),
                        np.zeros(1, bool), np.zeros(1, np.float32))  # fmt: skip
        state, _, _ = task.reset(trials, noise)
        task.step(state, torch.zeros(1, 6, device=device), noise)
    return task


def _dynamics(params: TaskParams) -> TaskParams:
    """What of the task's parameters :meth:`ReachTask.step` uses (trial sampling left out)."""
    return dataclasses.replace(
        params,
        go_time_range=(0.0, 0.0),
        catch_probability=0.0,
        targets="centre_out",
        reach_distance=0.1,
        start_joint_angles=(0.0, 0.0),
        test_go_time=0.0,
    )


class Episode(NamedTuple):
    """The episode an env's reset just started, for a batch of arms: what a compiled rollout
    rolls out (the arms' rows may be a slice of the env's, see :meth:`rows`)."""

    state: TaskState
    obs: Tensor  # (N, observation size), what the reset returned
    noise: Tensor  # (N, T + 1, NOISE_WIDTH); step t uses column t
    params: TaskParams
    cued: bool

    @classmethod
    def of(cls, env: DifferentiableArmEnv, obs: Tensor) -> Episode:
        """The episode ``env`` was just reset to, and the observation its reset returned."""
        return cls(env.state, obs, env.episode_noise, env.params, env.task.cued)

    def rows(self, start: int, stop: int) -> Episode:
        """Arms ``start:stop`` of the episode (views)."""
        return self._replace(
            state=_rows(self.state, start, stop), obs=self.obs[start:stop], noise=self.noise[start:stop]
        )


class Trajectory(NamedTuple):
    """What a compiled rollout returns: the losses, the test record, and where the arms ended
    (for :meth:`DifferentiableArmEnv.advance`)."""

    losses: Tensor  # (K,)
    test_hand_position: Tensor | None  # (K, B_test, T, 2)
    test_hidden: Tensor | None  # (K, B_test, T, H)
    train_state: TaskState  # the training arms after the episode's last step
    test_state: TaskState | None


class CompiledBPTT:
    """Rolls K GRUs through their arms and backpropagates, for :class:`agents.bptt.BPTTAgent`.

    Args:
        controllers: GRU networks (``cell="gru"``).
        task: the env's dynamics (its params and cue are copied; gradients are traced through a
            copy whose arm has no hand-written backward, which ``torch.func`` cannot trace).
        compile: compile the step and its backward with ``torch.compile``.

    Raises:
        ValueError: for a cell other than the GRU.
    """

    def __init__(self, controllers: RecurrentControllers, task: ReachTask, compile: bool = True):
        if controllers.cell != "gru":
            raise ValueError(f"the compiled BPTT path runs GRUs only, got cell={controllers.cell!r}")
        self.controllers = controllers
        device = controllers.w_hh.device
        self.task = traceable_task(task.params, task.cued, str(device))
        self._forward, self._vjp = (_COMPILED_FORWARD, _COMPILED_VJP) if compile else (_joint_forward, _step_vjp)
        self._first_step = torch.zeros((), device=device)  # the step count as data (see _network_step)
        self._dynamics = (self.task.cued, _dynamics(self.task.params))
        self._loss_grad = _COMPILED_LOSS_GRAD if compile else _loss_grad
        self._buffers: dict[str, Tensor] = {}

    def _weights(self) -> Weights:
        c = self.controllers
        # w_ih as the transpose of a contiguous copy (the matmuls read it transposed); w_out as
        # it is: with 6 output columns, MKL reads the (K, 6, H) original transposed 2x faster
        return Weights(
            c.transposed("w_ih").transpose(1, 2),
            c.b_ih.detach(),
            c.transposed("w_hh"),
            c.b_hh.detach(),
            c.w_out.detach(),
            c.b_out.detach(),
        )

    def run(
        self, train: Episode, loss_fn: Any, test: Episode | None = None, test_out: tuple[Tensor, Tensor] | None = None
    ) -> Trajectory:
        """One episode of every training arm with gradients, and of the test arms (optional)
        without; adds the loss's gradient to the controllers' ``.grad`` and returns the losses,
        the test reaches and the arms' end states (the caller advances its envs with them).

        Args:
            train: the training episode (:meth:`Episode.of` an env just reset), K * B arms.
            loss_fn: maps the (K, B, T, .) trajectory dict (see :func:`agents.bptt.paper_loss`) to (K,).
            test: the same for the test reaches.
            test_out: the (K, B_test, T, 2) and (K, B_test, T, H) arrays to write the test
                reaches' hand positions and hidden states into (default: new ones).
        """
        for episode in (train, test):
            if episode is not None and (episode.cued, _dynamics(episode.params)) != self._dynamics:
                raise ValueError(
                    f"the compiled rollout steps the dynamics of {self.task.params} (cued={self.task.cued}); "
                    f"an env with other dynamics ({episode.params}, cued={episode.cued}) needs its own CompiledBPTT"
                )
        c, k = self.controllers, self.controllers.num_networks
        weights = self._weights()
        with torch.no_grad():
            h, obs, state = self._start(train)
            b, split = h.shape[1], k * h.shape[1]  # training reaches per network, training rows
            noise_train = noise = train.noise
            if test is not None:  # the test rows ride along, after the training rows
                h_test, obs_test, state_test = self._start(test)
                h, obs = torch.cat([h, h_test], dim=1), torch.cat([obs, obs_test])
                state = _joint_start(_cat_rows(*_both_channels(state, state_test)))
                noise = torch.cat([noise_train, test.noise])
            steps = train.params.trial_steps
            # h entering each step and the last h, filled while each step's h is in cache: the
            # loss reads slots 1.., the recurrent weights' gradient slots ..T-1, neither copies it
            hidden = self._buffer("hidden", (k, steps + 1, b, c.hidden_size))
            # what the loss reads, written step by step while it is in cache (stacking 100 steps'
            # tensors after the loop reads them again from memory): work arrays kept between
            # batches; the test record is the caller's, so it is made anew
            hand = self._buffer("hand", (steps, split, state.arm.hand.shape[-1]))
            force = self._buffer("force", (steps, split, state.arm.force.shape[-1]))
            desired = self._buffer("desired", (steps, split, 2))
            if test is not None:
                shapes = (k, h.shape[1] - b, steps, 2), (k, h.shape[1] - b, steps, c.hidden_size)
                test_hand, test_hidden = test_out or (h.new_empty(shape) for shape in shapes)
            inputs, gates = [], []
            for t in range(steps):
                hidden[:, t].copy_(h[:, :b])
                inputs.append((h, obs, state))
                gates_h, h, obs, state, desired_t = self._forward(self.task, weights, h, obs, state, noise[:, t + 1], b)
                gates.append(gates_h)
                hand[t].copy_(state.arm.hand[:split])
                force[t].copy_(state.arm.force[:split])
                desired[t].copy_(desired_t)
                if test is not None:
                    test_hand[:, :, t].copy_(state.arm.hand[split:, 0:2].view(k, -1, 2))
                    test_hidden[:, :, t].copy_(h[:, b:])
            hidden[:, steps].copy_(h[:, :b])

            # the loss over the recorded trajectory and its gradients, (T, K*B, .) and (K, T+1, B, H)
            losses, g_hand, g_force, g_hidden = self._loss_grad(loss_fn, (k, b), hand, force, hidden, desired)

        # backward through time, one compiled vector-Jacobian product per step
        weight_grads = any(getattr(c, n).requires_grad for n in ("w_ih", "b_ih", "w_out", "b_out"))
        with torch.no_grad():
            g_h = torch.zeros_like(hidden[:, 0])
            g_obs = torch.zeros_like(obs[:split])
            g_state = _zeros_like(_rows(state, 0, split))
            tape = self._buffer("gates", (k, steps, b, gates[0].shape[-1]))  # recurrent gates' gradients
            summed = None
            for t in reversed(range(steps)):
                arm = g_state.arm
                g_state = g_state._replace(arm=arm._replace(hand=arm.hand + g_hand[t], force=arm.force + g_force[t]))
                h_prev, obs_prev, state_prev = inputs[t]
                grads = self._vjp(
                    self.task,
                    weights,
                    (h_prev[:, :b], gates[t], obs_prev[:split], _rows(state_prev, 0, split)),
                    noise_train[:, t + 1],
                    (g_h + g_hidden[:, t + 1], g_obs, g_state),
                    weight_grads,
                )
                if weight_grads:
                    step_sums, grads = grads[:4], grads[4:]
                    summed = (
                        step_sums if summed is None else tuple(a + s for a, s in zip(summed, step_sums, strict=True))
                    )
                g_h, g_gates, g_obs, g_state = grads
                g_h = torch.baddbmm(g_h, g_gates, c.w_hh.detach())
                tape[:, t].copy_(g_gates)
            c.add_recurrent_grad(hidden[:, :steps].reshape(k, steps * b, -1), tape.view(k, steps * b, -1))
            accumulate_grad(c.h0, g_h.sum(1))
            if summed is not None:
                for name, value in zip(("w_ih", "b_ih", "w_out", "b_out"), summed, strict=True):
                    accumulate_grad(getattr(c, name), value)

        train_end = _rows(state, 0, split)._replace(step=steps)
        if test is None:
            return Trajectory(losses, None, None, train_end, None)
        return Trajectory(losses, test_hand, test_hidden, train_end, _rows(state, split, None)._replace(step=steps))

    def _buffer(self, name: str, shape: tuple[int, ...]) -> Tensor:
        """A work array kept from batch to batch: allocating one anew each batch costs page faults."""
        like, buffer = self.controllers.w_hh, self._buffers.get(name)
        if buffer is None or (buffer.shape, buffer.dtype, buffer.device) != (shape, like.dtype, like.device):
            buffer = self._buffers[name] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return buffer

    def _start(self, episode: Episode) -> tuple[Tensor, Tensor, TaskState]:
        """(h, obs, state) at the start of ``episode``."""
        state = episode.state
        if state is None or state.step != 0:
            raise RuntimeError("reset the env before a compiled rollout")
        k = self.controllers.num_networks
        h = self.controllers.h0.detach()[:, None, :].expand(-1, episode.obs.shape[0] // k, -1).contiguous()
        # Reset fills the delay lines with one tensor repeated; a step leaves them distinct. The
        # compiled code is specialised on which inputs are the same tensor, so start distinct.
        state = state._replace(
            step=self._first_step.clone(),
            vision=tuple(x.clone() for x in state.vision),
            proprioception=tuple(x.clone() for x in state.proprioception),
            velocity_2=state.arm.hand.clone()[:, 2:4],  # a view of a hand state, as after a step
        )
        return h, episode.obs, state


def _joint_start(state: TaskState) -> TaskState:
    """A start state of training and test rows joined, laid out as :meth:`ReachTask.step` leaves
    its states (the compiled step is specialised on strides and on which inputs are the same
    tensor): the muscle force of one step ago is the arm's force tensor itself, and both
    velocities are views of 4-wide hand states, the last one's of the arm's (at a reset all
    three hold the hand's velocity)."""
    hand = state.arm.hand
    return state._replace(velocity_1=hand[:, 2:4], velocity_2=hand.clone()[:, 2:4], force_1=state.arm.force)


def _zeros_like(tree: Any) -> Any:
    """Zeros shaped like a (nested) tuple of tensors, e.g. a :class:`TaskState` (None stays None)."""
    return map_tree(lambda x: None if x is None else torch.zeros_like(x), tree)
