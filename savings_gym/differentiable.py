"""The differentiable batched environment: the same task and schedule, as torch tensors with
gradients flowing from the actions through the arm to observations, rewards and info.

This is the interface BPTT controllers train through (the paper's method). It runs the same
:class:`~savings_gym.world.World` as the Gymnasium envs, on the torch backend:

>>> import torch
>>> from savings_gym.differentiable import make_differentiable
>>> env = make_differentiable("ArmCurlField-v0", num_envs=8, phase_episodes={"NF1": 8})
>>> obs, info = env.reset(seed=0)
>>> action = torch.full((8, 6), 0.1, requires_grad=True)
>>> obs, reward, terminated, truncated, info = env.step(action)
>>> reward.sum().backward()
>>> bool(action.grad.abs().sum() > 0)
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from savings_gym.backend import make_backend
from savings_gym.envs import VARIANTS, ScheduleLike, _Configured
from savings_gym.task import N_MUSCLES, ReachTask, TaskState
from savings_gym.world import check_action, generators


def make_differentiable(env_id: str, num_envs: int, **kwargs: Any) -> DifferentiableArmEnv:
    """The differentiable version of a registered id.

    Args:
        env_id: a registered id (:data:`savings_gym.ENV_IDS`), e.g. ``ArmCurlField-v0``.
        num_envs: arms in the batch.
        **kwargs: as :class:`DifferentiableArmEnv`.

    Raises:
        ValueError: for an id with no differentiable version.
    """
    return DifferentiableArmEnv(num_envs, env_id=env_id, **kwargs)


class DifferentiableArmEnv(_Configured):
    """N arms in one torch simulation, through the hidden schedule, with gradients.

    The API mirrors Gymnasium's (``reset``/``step`` returning the usual tuples) but everything is
    a torch tensor on ``device``: observations (N, 17 or 18), rewards (N,), and info tensors
    ``hand_position``, ``hand_velocity``, ``desired_position`` (N, 2) and ``muscle_force``
    (N, 6), the ingredients of the paper's loss. ``truncated`` is a Python bool, True after the
    trial's last step (all arms end together); nothing resets by itself.

    Args:
        num_envs: arms in the batch.
        env_id: the registered id whose defaults to take (schedule, targets, cue).
        schedule, field_gain, phase_episodes, cued, **task_params: as :class:`~savings_gym.envs.ArmCurlFieldEnv`.
        num_worlds: independent groups of arms with their own schedule counter (one per learner).
        device: torch device.
        differentiable: if False, steps run under ``torch.no_grad`` (for evaluation).
        hand_written_grads: the arm step is one autograd node with a hand-written backward
            (:mod:`savings_gym.arm_grad`); False records its every operation (the reference, ~3x slower).

    Seeding, options (``mode="test"`` for the 8 test reaches, ``trials`` overrides) and the
    experimenter's attributes (``phase``, ``field_gain(s)``, ``episodes_completed``, ``get_state`` /
    ``set_state``) are those of
    :class:`~savings_gym.envs.ArmCurlFieldVectorEnv`.
    """

    def __init__(
        self,
        num_envs: int,
        schedule: ScheduleLike | None = None,
        *,
        env_id: str = "ArmCurlField-v0",
        num_worlds: int = 1,
        device: str | torch.device = "cpu",
        differentiable: bool = True,
        hand_written_grads: bool = True,
        field_gain: float | None = None,
        phase_episodes: Mapping[str, int | None] | None = None,
        cued: bool | None = None,
        **task_params: Any,
    ):
        if env_id not in VARIANTS:
            raise ValueError(f"{env_id!r} has no differentiable version; ids with one: {sorted(VARIANTS)}")
        self.env_id = env_id
        self.variant = VARIANTS[env_id]
        self.xp = make_backend("torch", str(device), differentiable, hand_written_grads)
        self._world = self._configure(
            num_envs, schedule, field_gain, phase_episodes, cued, task_params, self.xp, num_worlds
        )
        self.num_envs = self._world.num_envs
        self.device = self.xp.device
        self.differentiable = differentiable

    @property
    def unwrapped(self) -> DifferentiableArmEnv:
        """The env itself (as Gymnasium's ``unwrapped``), so code can read any front-end the same way."""
        return self

    def _grad_mode(self) -> contextlib.AbstractContextManager:
        # a differentiable env leaves the caller's grad mode alone (torch.no_grad around it works)
        return contextlib.nullcontext() if self.differentiable else torch.no_grad()

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Starts new episodes; a seed gives arm i a generator seeded ``seed + i`` and restarts the schedule."""
        if seed is not None or self._world._rngs is None:
            self._world.restart(generators(seed, self.num_envs))
        with self._grad_mode():
            return self._world.reset(options)

    @property
    def task(self) -> ReachTask:
        """The pure dynamics (:meth:`ReachTask.step`) this env steps, for learners that roll them
        out themselves, e.g. compiled BPTT (:mod:`agents.bptt_compiled`)."""
        return self._world.task

    @property
    def episode_noise(self) -> torch.Tensor:
        """(N, trial_steps + 1, NOISE_WIDTH) noise of the current episode; step t uses column t."""
        return self._world.episode_noise

    def advance(self, state: TaskState) -> None:
        """Adopts a state reached by stepping :attr:`task` from :attr:`state` with :attr:`episode_noise`
        outside :meth:`step`; a training episode it finishes counts in the schedule as with :meth:`step`."""
        self._world.advance(state)

    def step(self, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool, bool, dict[str, torch.Tensor]]:
        """Steps every arm with a (N, 6) excitation tensor."""
        action = check_action(action, (self.num_envs, N_MUSCLES), self.xp)
        with self._grad_mode():
            obs, reward, info = self._world.step(action)
        return obs, reward, False, self._world.episode_steps >= self.params.trial_steps, info
