"""Stable-Baselines3 adapter: the native vector env as an SB3 ``VecEnv``.

SB3 has no adapter for Gymnasium's batched vector envs, only ``DummyVecEnv``/``SubprocVecEnv`` of
single envs. :class:`SB3VecEnv` presents one batched simulation of N arms to any SB3 or
sb3-contrib algorithm:

>>> from stable_baselines3 import PPO
>>> from savings_gym.sb3 import make_sb3_vec_env
>>> venv = make_sb3_vec_env("ArmCurlField-v0", num_envs=4, phase_episodes={"NF1": 8})
>>> model = PPO("MlpPolicy", venv, n_steps=8, batch_size=32, n_epochs=1, seed=0)
>>> _ = model.learn(total_timesteps=32)

Episode ends follow SB3's contract: ``dones`` marks them, and each ending arm's info holds its
``terminal_observation`` and ``TimeLimit.truncated=True`` (every episode ends by its time limit),
while the returned observation is already the first of the next episode. Wrap with SB3's
``VecMonitor`` for episode returns in the logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

try:
    from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError('savings_gym.sb3 needs Stable-Baselines3: pip install "savings-gym[rl]"') from error

from gymnasium.vector import AutoresetMode

from savings_gym.envs import ArmCurlFieldVectorEnv


def make_sb3_vec_env(env_id: str, num_envs: int, **kwargs: Any) -> SB3VecEnv:
    """``gym.make_vec(env_id, num_envs)`` (native, same-step autoreset) wrapped for SB3.

    Args:
        env_id: a savings-gym id.
        num_envs: arms simulated together.
        **kwargs: env arguments (schedule, phase_episodes, task parameters...).
    """
    venv = gym.make_vec(
        env_id,
        num_envs=num_envs,
        vectorization_mode="vector_entry_point",
        autoreset_mode=AutoresetMode.SAME_STEP,
        **kwargs,
    )
    return SB3VecEnv(venv)


class SB3VecEnv(VecEnv):
    """An SB3 ``VecEnv`` over a native :class:`~savings_gym.envs.ArmCurlFieldVectorEnv`.

    Args:
        venv: the vector env; it must use ``AutoresetMode.SAME_STEP``.

    Seeds set with :meth:`seed` (arm i gets ``seed + i``) and options set with ``set_options``
    apply at the next :meth:`reset`, as in SB3's own vector envs. Attributes are those of the
    whole batch: ``get_attr(name)`` returns the batch's value once per requested index.
    """

    def __init__(self, venv: ArmCurlFieldVectorEnv):
        inner = venv.unwrapped if hasattr(venv, "unwrapped") else venv
        if not isinstance(inner, ArmCurlFieldVectorEnv):
            raise ValueError(f"venv must be a savings-gym vector env, got {type(inner).__name__}")
        if inner.autoreset_mode != AutoresetMode.SAME_STEP:
            raise ValueError("venv must use autoreset_mode=AutoresetMode.SAME_STEP (make_sb3_vec_env does this)")
        self.venv = venv
        super().__init__(inner.num_envs, inner.single_observation_space, inner.single_action_space)
        self._actions: np.ndarray | None = None

    def reset(self) -> VecEnvObs:
        seeds = self._seeds
        seed = None if all(s is None for s in seeds) else seeds
        options = self._options
        if any(o != options[0] for o in options):
            raise ValueError("all arms of a batched env share their reset options; set the same options for every env")
        obs, _ = self.venv.reset(seed=seed, options=options[0] or None)
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, terminated, truncated, info = self.venv.step(self._actions)
        dones = terminated | truncated
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = info["final_obs"][i]
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, rewards, dones, infos

    def close(self) -> None:
        self.venv.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self.venv.unwrapped, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self.venv.unwrapped, attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        result = getattr(self.venv.unwrapped, method_name)(*method_args, **method_kwargs)
        return [result for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]
