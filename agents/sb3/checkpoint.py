"""An SB3 learner's state as plain tensors and values, for weights-only checkpoints: policy weights,
normalisation statistics and the replay buffer (SB3's own save format pickles objects)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

try:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.vec_env import VecNormalize
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError('agents.sb3.checkpoint needs SB3 and sb3-contrib: pip install "savings-gym[rl]"') from error

REPLAY_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _attr(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _normalization_state(normalizer: VecNormalize) -> dict[str, Any]:
    obs, ret = normalizer.obs_rms, normalizer.ret_rms
    return {
        "obs_mean": torch.from_numpy(np.array(obs.mean, np.float64)),
        "obs_var": torch.from_numpy(np.array(obs.var, np.float64)),
        "obs_count": float(obs.count),
        "ret_mean": torch.from_numpy(np.array(ret.mean, np.float64)),
        "ret_var": torch.from_numpy(np.array(ret.var, np.float64)),
        "ret_count": float(ret.count),
        "returns": torch.from_numpy(np.array(normalizer.returns, np.float64)),
    }


def _normalization_or_none(normalizer: VecNormalize | None) -> dict[str, Any] | None:
    return None if normalizer is None else _normalization_state(normalizer)


def _tensor_or_none(array: np.ndarray | None) -> torch.Tensor | None:
    return None if array is None else torch.from_numpy(np.ascontiguousarray(array))


def _load_normalization(normalizer: VecNormalize, state: Mapping[str, Any]) -> None:
    normalizer.obs_rms.mean = state["obs_mean"].numpy().copy()
    normalizer.obs_rms.var = state["obs_var"].numpy().copy()
    normalizer.obs_rms.count = state["obs_count"]
    normalizer.ret_rms.mean = state["ret_mean"].numpy().copy()
    normalizer.ret_rms.var = state["ret_var"].numpy().copy()
    normalizer.ret_rms.count = state["ret_count"]
    if len(state["returns"]) == normalizer.num_envs:  # pretrained statistics may come from another n_envs
        normalizer.returns = state["returns"].numpy().copy()


def _replay_state(model: BaseAlgorithm) -> dict[str, Any] | None:
    buffer = getattr(model, "replay_buffer", None)
    if buffer is None:
        return None
    filled = buffer.buffer_size if buffer.full else buffer.pos
    arrays = {name: getattr(buffer, name, None) for name in REPLAY_FIELDS}
    return {
        "pos": buffer.pos,
        "full": buffer.full,
        **{name: _tensor_or_none(None if a is None else a[:filled]) for name, a in arrays.items()},
    }


def _load_replay(model: BaseAlgorithm, state: Mapping[str, Any]) -> None:
    buffer = model.replay_buffer
    for name in REPLAY_FIELDS:
        if state[name] is not None:
            values = state[name].numpy()
            getattr(buffer, name)[: len(values)] = values
    buffer.pos, buffer.full = state["pos"], state["full"]
