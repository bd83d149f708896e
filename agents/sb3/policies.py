"""Policies and normalisation the SB3 learners add to SB3's own: a recurrent policy trained on whole
sequences and an observation normaliser that scales the go cue by a fixed amount."""

from __future__ import annotations

import numpy as np
import torch

try:
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
    from stable_baselines3.common.vec_env import VecNormalize
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError('agents.sb3.policies needs SB3 and sb3-contrib: pip install "savings-gym[rl]"') from error
from savings_gym.schedule import PAPER_GAIN
from savings_gym.task import CUE_LAYOUT


class WholeSequenceLstmPolicy(RecurrentActorCriticPolicy):
    """sb3-contrib's ``MlpLstmPolicy``, computing the same function with a faster training pass.

    sb3-contrib runs the LSTM one step at a time over any training sequence that holds an episode
    start, to zero the state there. When rollouts are whole episodes (``n_steps`` 100, the episode
    length, as the shipped hyperparameters) every sequence starts an episode at its first step and
    nowhere else; zeroing the initial state and running the sequence in one LSTM call is then the
    same computation, about 3x faster per update on a CPU. Other sequences take sb3-contrib's loop.
    The adapter uses it wherever ``MlpLstmPolicy`` is asked for (same weights, same state dict).
    """

    @staticmethod
    def _process_sequence(
        features: torch.Tensor,
        lstm_states: tuple[torch.Tensor, torch.Tensor],
        episode_starts: torch.Tensor,
        lstm: torch.nn.LSTM,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        n_seq = lstm_states[0].shape[1]
        starts = episode_starts.reshape((n_seq, -1)).swapaxes(0, 1)  # (length, n_seq)
        if not torch.all(starts[1:] == 0.0):
            return RecurrentActorCriticPolicy._process_sequence(features, lstm_states, episode_starts, lstm)
        keep = (1.0 - starts[0]).view(1, n_seq, 1)
        sequence = features.reshape((n_seq, -1, lstm.input_size)).swapaxes(0, 1)
        output, states = lstm(sequence, (keep * lstm_states[0], keep * lstm_states[1]))
        return torch.flatten(output.transpose(0, 1), start_dim=0, end_dim=1), states


class CueScaledNormalize(VecNormalize):
    """``VecNormalize`` for the cued env: running statistics for every channel but the cue (the
    field gain), which is divided by the paper's gain (8 N*s/m) instead, so the paper's field reads 1.

    Why: learners are pretrained in the null field, where the cue is always 0. The running variance
    of that channel is then ~0, and the first field trial entered as +10 clipped standard deviations
    through weights that had never seen it (first FF1 deviations of -18.5 to +13.8 cm;
    ``benchmarks/RESULTS.md``). A fixed scale keeps the cue 0 in the null field, as before, and
    makes the field a unit step. The cue's running statistics are still kept (unused).
    """

    CUE_INDEX = CUE_LAYOUT[0]

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:  # type: ignore[override]
        normalized = super().normalize_obs(obs)
        if self.norm_obs:
            normalized[..., self.CUE_INDEX] = np.asarray(obs)[..., self.CUE_INDEX] / PAPER_GAIN
        return normalized
