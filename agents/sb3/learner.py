"""Stable-Baselines3 learners through the hidden schedule: any SB3 or sb3-contrib algorithm by name.

This module holds the agent (train / evaluate / checkpoint); its neighbours in :mod:`agents.sb3` hold
the algorithms and hyperparameters (``hyperparams``, rl-zoo3's yaml format, shipped in
``agents/hyperparams/``), the spec (``spec``), policies and normalisation (``policies``), the
checkpointed state (``checkpoint``), imitation (``imitation``) and pretraining (``pretraining``).

One learner ("network") is one SB3 model with its own seed, its own native vector env of
``n_envs`` arms (8 by default, through :class:`savings_gym.sb3.SB3VecEnv`) and its own schedule
counter. With ``n_envs: 8`` and ``n_steps: 100`` a rollout is one episode of the 8 arms, i.e. one
batch of the paper's protocol, so an on-policy learner makes one update per protocol batch; a
protocol of R reaches per update (``make_spec(..., reaches_per_update=R)``) makes the rollout R
episodes (``n_steps`` R / ``n_envs`` x 100) unless the hyperparameters set ``n_steps``, and
``n_envs`` may then be any divisor of R (the ``rl`` preset plays its 64 reaches as one episode of
64 arms: the same experience, each time step one batched step). The
learner trains continuously through NF1 -> FF1 -> NF2 -> FF2: its weights, optimiser and
normalisation statistics are never reset at a phase change, and nothing tells it the phase
(``ArmCurlFieldCued-v0`` shows the field gain: the control with context).

Learning curves come from the deterministic policy (``deterministic=True``, recurrent state kept
per learner and zeroed at the start of each test reach) on the 8 test reaches under the current
field, the same test reaches and lateral deviation as the BPTT agents.

>>> from agents.sb3.learner import SB3Agent
>>> from agents.sb3.spec import make_spec
>>> from savings_gym.schedule import paper_schedule
>>> spec = make_spec("PPO", hyperparams={"n_epochs": 1, "batch_size": 400})
>>> agent = SB3Agent(spec, paper_schedule(batches={"NF1": 1, "FF1": 1}), num_networks=2, seed=0)
>>> agent.train(8)                                   # one protocol batch: 8 episodes per learner
>>> agent.episodes_completed, agent.evaluate(8.0).hand_position.shape
(8, (2, 8, 100, 2))

Checkpoints (:meth:`SB3Agent.state_dict`) hold tensors and plain values only, so they load with
``torch.load(weights_only=True)``; a resumed run continues bitwise identically on the same machine
(see :meth:`SB3Agent.state_dict` for what that takes).
"""

from __future__ import annotations

import copy
import importlib.util
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

try:
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.logger import Logger, configure
    from stable_baselines3.common.utils import get_device
    from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecMonitor, VecNormalize
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError('agents.sb3.learner needs SB3 and sb3-contrib: pip install "savings-gym[rl]"') from error

from agents.bptt import derived_seed
from agents.interface import ProtocolEnvs, ReachRecord, as_protocol_envs, run_test_reaches
from agents.sb3.checkpoint import (
    _attr,
    _load_normalization,
    _load_replay,
    _normalization_or_none,
    _replay_state,
    _tensor_or_none,
)
from agents.sb3.policies import CueScaledNormalize
from agents.sb3.spec import SB3Spec, _plain
from savings_gym import TRIAL_STEPS
from savings_gym.sb3 import SB3VecEnv
from savings_gym.schedule import Schedule
from savings_gym.task import N_TEST_TARGETS

# counters of an SB3 model that a resumed run must continue from (those the algorithm has)
COUNTERS = (
    "num_timesteps",
    "_n_updates",
    "_n_calls",
    "_episode_num",
    "_current_progress_remaining",
    "exploration_rate",
)


# -- the test reaches -----------------------------------------------------------------------------
class _DeterministicActor:
    """A model's deterministic policy stepped through test reaches: what ``model.predict(obs,
    state, episode_start, deterministic=True)`` returns (``tests/test_rl.py`` checks it bit for
    bit), without predict's per-call work: the recurrent state stays a tensor instead of a round
    trip through NumPy, and the policy is put in eval mode once (as predict does at every call)."""

    def __init__(self, model: BaseAlgorithm, normalizer: VecNormalize | None):
        self.policy = model.policy
        self.normalizer = normalizer
        self.recurrent = isinstance(self.policy, RecurrentActorCriticPolicy)
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None
        self.policy.set_training_mode(False)

    def __call__(self, obs: np.ndarray, start: bool) -> np.ndarray:
        policy = self.policy
        if self.normalizer is not None:
            obs = self.normalizer.normalize_obs(obs)
        observation = torch.as_tensor(obs, device=policy.device)
        if self.recurrent:
            if self.state is None or start:
                zeros = torch.zeros(
                    (policy.lstm_hidden_state_shape[0], len(obs), policy.lstm_hidden_state_shape[2]),
                    device=policy.device,
                )
                self.state = (zeros, zeros)
            starts = torch.full((len(obs),), float(start), device=policy.device)
            actions, self.state = policy._predict(
                observation, lstm_states=self.state, episode_starts=starts, deterministic=True
            )
        else:
            actions = policy._predict(observation, deterministic=True)
        actions = actions.cpu().numpy().reshape((-1, *policy.action_space.shape))
        if policy.squash_output:
            return policy.unscale_action(actions)
        return np.clip(actions, policy.action_space.low, policy.action_space.high)


@torch.no_grad()
def evaluate_models(
    models: Sequence[tuple[BaseAlgorithm, VecNormalize | None]],
    field_gain: float,
    env_id: str = "ArmCurlField-v0",
    eval_seed: int = 0,
    **env_kwargs: Any,
) -> ReachRecord:
    """The 8 test reaches of K SB3 models under ``field_gain`` (N*s/m), by their deterministic policies
    (:func:`agents.interface.run_test_reaches`).

    Args:
        models: per learner, the model and the ``VecNormalize`` it trains under (None: none).
        field_gain, env_id, eval_seed, env_kwargs: as :func:`~agents.interface.run_test_reaches`.

    Leaves the models unchanged: a separate env, normalisation statistics applied but not updated,
    no random draws. Recurrent policies start each test reach from a zero state; their actor's LSTM
    state after every step is returned in ``hidden`` (K, 8, T, H).
    """
    actors = [_DeterministicActor(model, normalizer) for model, normalizer in models]
    recurrent = all(actor.recurrent for actor in actors)
    hidden: list[list[np.ndarray]] = [[] for _ in models]

    def policy(obs: np.ndarray, t: int) -> np.ndarray:
        actions = []
        for k, actor in enumerate(actors):
            actions.append(actor(obs[k * N_TEST_TARGETS : (k + 1) * N_TEST_TARGETS], start=t == 0))
            if recurrent:
                hidden[k].append(actor.state[0][-1].cpu().numpy())  # actor LSTM, last layer: (8, H)
        return np.concatenate(actions)

    record = run_test_reaches(policy, len(models), field_gain, env_id=env_id, eval_seed=eval_seed, **env_kwargs)
    if recurrent:
        record.hidden = np.stack([np.stack(h, axis=1) for h in hidden])
    return record


# -- the agent ------------------------------------------------------------------------------------
class _ResumableVecEnv(VecEnvWrapper):
    """Checkpoints the native env under SB3's wrappers through its public state.

    SB3's same-step autoreset draws the next episodes inside the step that ends the last ones, so
    between ``learn`` calls the env already holds episodes in progress. The env's ``get_state()``
    then holds its generators from before that draw; :meth:`restore` sets them back and resets the
    native env, which redraws the very same episodes.
    """

    def __init__(self, venv: SB3VecEnv):
        super().__init__(venv)
        self.world = venv.venv.unwrapped  # the native vector env: the experimenter's view and its state

    def reset(self) -> np.ndarray:
        return self.venv.reset()

    def step_wait(self):
        return self.venv.step_wait()

    def checkpoint(self) -> dict[str, Any]:
        if self.world.state is not None and self.world.state.step != 0:
            raise RuntimeError("a checkpoint must fall between episodes")
        return self.world.get_state()

    def restore(self, state: Mapping[str, Any]) -> None:
        self.world.set_state(state)
        self.venv.venv.reset()  # the native env: redraws the episodes in progress, below SB3's wrappers


def _global_rngs() -> dict[str, Any]:
    """Python's, NumPy's and torch's global generators (SB3 samples actions and minibatches from them)."""
    kind, key, pos, has_gauss, cached = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        # a policy on a GPU samples there: keep CUDA's generators too once CUDA is in use
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None,
        "numpy": {
            "kind": kind,
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        },
        "python": [version, list(python_state), gauss_next],
    }


def _set_global_rngs(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None:
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    version, python_state, gauss_next = state["python"]
    random.setstate((version, tuple(python_state), gauss_next))


@dataclass
class _Learner:
    """One SB3 model, its env stack and its own random generators."""

    index: int
    model: BaseAlgorithm
    resumable: _ResumableVecEnv
    normalizer: VecNormalize | None
    rngs: dict[str, Any]
    last_episode_return: float = float("nan")

    @contextmanager
    def own_rngs(self) -> Iterator[None]:
        """Runs with this learner's global generators, so learners do not depend on each other or on K."""
        outer = _global_rngs()
        _set_global_rngs(self.rngs)
        try:
            yield
        finally:
            self.rngs = _global_rngs()
            _set_global_rngs(outer)


class SB3Agent:
    """K SB3 learners living through the hidden schedule (implements :class:`agents.interface.Agent`).

    Args:
        spec: the algorithm and hyperparameters (:func:`make_spec`).
        envs: where they train: the :class:`~agents.interface.ProtocolEnvs` the protocol hands the
            agent's factory (each learner builds its own ``n_envs``-arm vector env from it), or a
            schedule (then the agent builds its own, of ``env_id`` and ``env_kwargs``).
        num_networks: K, the learners.
        seed: the run's seed; learner n is seeded ``derived_seed(seed, n)`` (weights, sampling) and
            its arm i ``derived_seed(seed, n) + i``.
        first_network: index of the first learner (so learner n does not depend on K).
        device: torch device.
        pretrained: a blob from :func:`load_pretrained` whose learner n gives learner n its
            policy weights and normalisation statistics (optimiser state starts fresh).
        tensorboard_log: folder for SB3's own scalars (losses, entropy...) and the episode return,
            one subfolder ``learner_<n>`` per learner, against training episodes (needs tensorboard).
        env_id: the env to train in (default ``spec.env_id``; ``ArmReach-v0`` for pretraining); with
            ``envs`` a ProtocolEnvs, its own (a different one is refused).
        env_kwargs: further env arguments (task constants, ``cued``); with a ProtocolEnvs, its own.
    """

    def __init__(
        self,
        spec: SB3Spec,
        envs: ProtocolEnvs | Schedule,
        num_networks: int,
        *,
        seed: int = 0,
        first_network: int = 0,
        device: str = "cpu",
        pretrained: Mapping[str, Any] | None = None,
        tensorboard_log: str | Path | None = None,
        env_id: str | None = None,
        env_kwargs: Mapping[str, Any] | None = None,
    ):
        if isinstance(num_networks, bool) or not isinstance(num_networks, int) or num_networks < 1:
            raise ValueError(f"num_networks must be a positive integer, got {num_networks!r}")
        if pretrained is not None and len(pretrained["policies"]) < first_network + num_networks:
            raise ValueError(
                f"the pretrained weights hold {len(pretrained['policies'])} learners, "
                f"{first_network + num_networks} are needed"
            )
        self.spec = spec
        self.num_networks = num_networks
        self.first_network = first_network
        if isinstance(envs, Schedule):
            env_id = env_id or spec.env_id
        self.envs = as_protocol_envs(envs, env_id, env_kwargs)
        self.env_id = self.envs.env_id
        self.env_kwargs = self.envs.env_kwargs
        self.schedule = self.envs.schedule
        self.device = get_device(device)
        if tensorboard_log is not None and importlib.util.find_spec("tensorboard") is None:
            raise ValueError(f"tensorboard_log={str(tensorboard_log)!r} needs tensorboard: pip install tensorboard")
        self._log_folder = None if tensorboard_log is None else Path(tensorboard_log)
        outer = _global_rngs()  # building a model seeds the global generators: leave the caller's alone
        try:
            self.learners = [
                self._build(n, derived_seed(seed, n), pretrained)
                for n in range(first_network, first_network + num_networks)
            ]
        finally:
            _set_global_rngs(outer)

    def _build(self, n: int, seed: int, pretrained: Mapping[str, Any] | None) -> _Learner:
        raw = SB3VecEnv(self.envs.vector(self.spec.n_envs, autoreset_mode=AutoresetMode.SAME_STEP))
        resumable = _ResumableVecEnv(raw)
        env: VecEnv = VecMonitor(resumable)  # raw episode returns, under the normaliser
        normalizer = None
        if self.spec.normalize is not None:
            cued = raw.observation_space.shape[0] > CueScaledNormalize.CUE_INDEX
            normalizer = (CueScaledNormalize if cued else VecNormalize)(env, **self.spec.normalize)
        spec = self.spec
        model = spec.algo_class(
            spec.policy_class, normalizer or env, seed=seed, device=self.device, verbose=0, **spec.model_kwargs()
        )
        if self._log_folder is not None:
            model.set_logger(configure(str(self._log_folder / f"learner_{n}"), ["tensorboard"]))
        else:
            model.set_logger(Logger(folder=None, output_formats=[]))
        if pretrained is not None:
            _load_weights(model, normalizer, pretrained["policies"][n], pretrained["normalization"][n])
        if spec.exploration_std is not None:
            with torch.no_grad():
                model.policy.log_std.fill_(math.log(spec.exploration_std))
        # start the episodes now (SB3 would at the first learn), so a checkpoint before any training holds them
        model._last_obs = model.env.reset()
        model._last_episode_starts = np.ones(self.spec.n_envs, dtype=bool)
        if normalizer is not None:
            model._last_original_obs = normalizer.get_original_obs()
        return _Learner(n, model, resumable, normalizer, _global_rngs())

    @property
    def episodes_completed(self) -> int:
        """Training episodes each learner has completed (all learners advance together)."""
        return self.learners[0].resumable.world.episodes_completed

    @property
    def phase(self) -> str:
        """The schedule's current phase (the experimenter's view; the learners never see it)."""
        return self.learners[0].resumable.world.phase

    @property
    def last_episode_returns(self) -> np.ndarray:
        """(K,) mean undiscounted return of each learner's episodes in the last :meth:`train` call."""
        return np.array([learner.last_episode_return for learner in self.learners])

    def train(self, episodes: int) -> None:
        """``episodes`` more training episodes per learner (a multiple of ``n_envs``, in whole rollouts)."""
        n_envs = self.spec.n_envs
        if episodes % n_envs:
            raise ValueError(f"episodes must be a multiple of n_envs={n_envs}, got {episodes}")
        timesteps = episodes * TRIAL_STEPS  # SB3 counts the steps of every arm
        for learner in self.learners:
            before = learner.resumable.world.episodes_completed
            with learner.own_rngs():
                learner.model.learn(timesteps, reset_num_timesteps=False, log_interval=None, progress_bar=False)
            done = learner.resumable.world.episodes_completed - before
            if done != episodes:  # the spec checks rollouts fit whole batches; this is the invariant behind it
                raise RuntimeError(f"learner {learner.index} trained {done} episodes instead of {episodes}")
            returns = [info["r"] for info in list(learner.model.ep_info_buffer)[-episodes:]]
            learner.last_episode_return = float(np.mean(returns)) if returns else float("nan")
            if self._log_folder is not None:
                learner.model.logger.record("train/episode_return", learner.last_episode_return)
                learner.model.logger.dump(step=self.episodes_completed)

    def evaluate(self, field_gain: float, eval_seed: int = 0, channel: bool = False) -> ReachRecord:
        """The 8 test reaches of every learner under ``field_gain`` (in the error-clamp channel when
        ``channel``), by its deterministic policy
        (:func:`evaluate_models`); learner n's test arms are seeded ``eval_seed + 8n + j``, whoever
        else is evaluated with it. Leaves the learners unchanged."""
        return evaluate_models(
            [(learner.model, learner.normalizer) for learner in self.learners],
            field_gain,
            self.env_id,
            eval_seed=eval_seed + self.first_network * N_TEST_TARGETS,
            channel=channel,
            **self.env_kwargs,
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and plain values (``weights_only``-loadable).

        Per learner: the networks and optimisers (SB3's own list of them), the counters SB3 keeps,
        the last observation and recurrent state, the normalisation statistics, the replay buffer
        of off-policy algorithms (its filled part), the world's schedule counter and arm
        generators, and the learner's global random generators. A resumed run is then bitwise
        identical on the same machine and torch build; SB3 itself offers no such guarantee across
        devices or thread counts (float reductions may be ordered differently).
        """
        return copy.deepcopy(
            {
                "spec": self.spec.as_config(),
                "episodes_completed": self.episodes_completed,
                "learners": [self._learner_state(learner) for learner in self.learners],
            }
        )

    def _learner_state(self, learner: _Learner) -> dict[str, Any]:
        model = learner.model
        return {
            **self._learnt(learner),
            "last_obs": torch.as_tensor(model._last_obs),
            "last_episode_starts": torch.as_tensor(model._last_episode_starts),
            "last_original_obs": _tensor_or_none(model._last_original_obs),
            "action_space_rng": model.action_space.np_random.bit_generator.state,
            "world": learner.resumable.checkpoint(),
            "rngs": learner.rngs,
        }

    @staticmethod
    def _learnt(learner: _Learner) -> dict[str, Any]:
        """What one learner has learnt: networks and optimisers, SB3's counters, recurrent state,
        normalisation statistics and replay buffer (not its env, observations or random streams)."""
        model = learner.model
        _, tensor_names = model._get_torch_save_params()
        lstm = getattr(model, "_last_lstm_states", None)
        return {
            "parameters": model.get_parameters(),
            "tensors": {name: _attr(model, name).detach().clone() for name in tensor_names},
            "counters": {name: getattr(model, name) for name in COUNTERS if hasattr(model, name)},
            "lstm": None if lstm is None else [t.detach().clone() for t in (*lstm.pi, *lstm.vf)],
            "normalization": _normalization_or_none(learner.normalizer),
            "replay_buffer": _replay_state(model),
        }

    @staticmethod
    def _load_learnt(learner: _Learner, saved: Mapping[str, Any]) -> None:
        model = learner.model
        model.set_parameters(saved["parameters"], exact_match=True, device=model.device)
        for name, value in saved["tensors"].items():
            _attr(model, name).data.copy_(value)
        for name, value in saved["counters"].items():
            setattr(model, name, value)
        if saved["lstm"] is not None:
            h_pi, c_pi, h_vf, c_vf = (t.to(model.device) for t in saved["lstm"])
            model._last_lstm_states = type(model._last_lstm_states)((h_pi, c_pi), (h_vf, c_vf))
        if saved["normalization"] is not None:
            _load_normalization(learner.normalizer, saved["normalization"])
        if saved["replay_buffer"] is not None:
            _load_replay(model, saved["replay_buffer"])

    def learner_state(self) -> dict[str, Any]:
        """What the learners have learnt (:class:`agents.interface.Resettable`), as copies: per learner
        the networks and optimisers, SB3's counters, the recurrent state, the normalisation statistics
        and the replay buffer of an off-policy algorithm; not their envs (schedule counters, arm
        generators), last observations or random generators."""
        return copy.deepcopy(
            {"spec": self.spec.as_config(), "learners": [self._learnt(learner) for learner in self.learners]}
        )

    def load_learner_state(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`learner_state` into an agent built with the same spec and K."""
        self._check_state(state)
        for learner, saved in zip(self.learners, state["learners"], strict=True):
            self._load_learnt(learner, saved)

    def _check_state(self, state: Mapping[str, Any]) -> None:
        if len(state["learners"]) != self.num_networks:
            raise ValueError(f"the state holds {len(state['learners'])} learners, this agent has {self.num_networks}")
        if _plain(state["spec"]) != _plain(self.spec.as_config()):
            raise ValueError(f"the state was saved by learners of another spec ({state['spec']})")

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict` into an agent built with the same spec, K and seed."""
        self._check_state(state)
        for learner, saved in zip(self.learners, state["learners"], strict=True):
            model = learner.model
            self._load_learnt(learner, saved)
            model._last_obs = saved["last_obs"].numpy()
            model._last_episode_starts = saved["last_episode_starts"].numpy()
            if saved["last_original_obs"] is not None:
                model._last_original_obs = saved["last_original_obs"].numpy()
            model.action_space.np_random.bit_generator.state = saved["action_space_rng"]
            learner.resumable.restore(saved["world"])
            learner.rngs = saved["rngs"]


def _weights(learner: _Learner) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """What a pretrained file holds of one learner: policy weights and normalisation statistics (copies)."""
    return copy.deepcopy((learner.model.policy.state_dict(), _normalization_or_none(learner.normalizer)))


def _load_weights(
    model: BaseAlgorithm, normalizer: VecNormalize | None, policy: Mapping[str, Any], normalization: Any
) -> None:
    """Puts :func:`_weights` back (the optimiser and counters are left alone)."""
    model.policy.load_state_dict(policy)
    if normalizer is not None and normalization is not None:
        _load_normalization(normalizer, normalization)
