"""Stable-Baselines3 learners through the hidden schedule: any SB3 or sb3-contrib algorithm by name.

Read top to bottom: the algorithms and their hyperparameters (rl-zoo3's yaml format, shipped in
``agents/hyperparams/``), the agent (train / evaluate / checkpoint), then pretraining and the
pretrained weights.

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

>>> from agents.sb3.learner import SB3Agent, make_spec
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

import ast
import copy
import importlib.util
import inspect
import math
import random
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium.vector import AutoresetMode

try:
    import stable_baselines3
    from sb3_contrib import RecurrentPPO
    from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.logger import Logger, configure
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.utils import get_device
    from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper, VecMonitor, VecNormalize
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError('agents.sb3.learner needs SB3 and sb3-contrib: pip install "savings-gym[rl]"') from error

import sb3_contrib

from agents.bptt import PRETRAINED_DIR, derived_seed
from agents.controllers import RecurrentControllers
from agents.interface import ProtocolEnvs, ReachRecord, as_protocol_envs, run_test_reaches
from agents.serialization import atomic_torch_save, load_checkpoint
from savings_gym import ENV_IDS, TRIAL_STEPS
from savings_gym.sb3 import SB3VecEnv, make_sb3_vec_env
from savings_gym.schedule import PAPER_BATCH_SIZE, PAPER_GAIN, Schedule, null_schedule
from savings_gym.task import CUE_LAYOUT, N_MUSCLES, N_TEST_TARGETS, observation_bounds

HYPERPARAMS_DIR = Path(__file__).parents[1] / "hyperparams"
DEFAULT_TEACHER = PRETRAINED_DIR / "gru128.pt"  # the BPTT networks SB3 learners imitate by default
PROTOCOL_ENV_IDS = ("ArmCurlField-v0", "ArmCurlFieldCued-v0")
"""The envs a savings run can use (``ArmReach-v0`` is for pretraining)."""
PRETRAIN_ENV_ID = "ArmReach-v0"

ZOO_NAMES = {
    "A2C": "a2c",
    "DDPG": "ddpg",
    "DQN": "dqn",
    "PPO": "ppo",
    "SAC": "sac",
    "TD3": "td3",
    "CrossQ": "crossq",
    "MaskablePPO": "ppo_mask",
    "QRDQN": "qrdqn",
    "RecurrentPPO": "ppo_lstm",
    "TQC": "tqc",
    "TRPO": "trpo",
}
"""Algorithm class name -> rl-zoo3's name for it (and the name of its yaml in ``agents/hyperparams/``)."""

# rl-zoo3 keys the adapter understands beside the algorithm's own arguments
ZOO_KEYS = ("n_envs", "n_timesteps", "policy", "normalize", "policy_kwargs", "noise_type", "noise_std")
# the adapter's own keys: exploration_std sets a Gaussian policy's action std after pretrained weights
# are loaded (a shipped learner imitated with a wide std explores too much to adapt at 64 reaches per
# update: issue 19), without changing which pretrained files fit the spec
ADAPTER_KEYS = ("exploration_std",)
PROTOCOL_CALLBACK = "benchmarks.savings.zoo_callback.ProtocolCallback"
"""The callback that measures the protocol in an rl-zoo3 run: a yaml's ``callback`` naming only it is
ignored here, where the protocol measures itself, so one file serves both routes."""
# rl-zoo3 keys that would change the env or the training loop the protocol owns
ZOO_UNSUPPORTED = (
    "env_wrapper",
    "vec_env_wrapper",
    "callback",
    "frame_stack",
    "monitor_kwargs",
    "env_kwargs",
    "replay_buffer_class",
    "replay_buffer_kwargs",
    "rollout_buffer_class",
    "rollout_buffer_kwargs",
)
# constructor arguments the adapter sets itself
ADAPTER_OWNED = ("env", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model", "action_noise")
SCHEDULABLE = ("learning_rate", "clip_range", "clip_range_vf")
NORMALIZE_KEYS = ("norm_obs", "norm_reward", "clip_obs", "clip_reward", "gamma", "epsilon")
NOISE_TYPES = ("normal", "ornstein-uhlenbeck")
# counters of an SB3 model that a resumed run must continue from (those the algorithm has)
COUNTERS = (
    "num_timesteps",
    "_n_updates",
    "_n_calls",
    "_episode_num",
    "_current_progress_remaining",
    "exploration_rate",
)
REPLAY_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


# -- algorithms and hyperparameters ---------------------------------------------------------------
def algorithms() -> dict[str, type[BaseAlgorithm]]:
    """The SB3 and sb3-contrib algorithms the adapter drives, by class name.

    Every on-policy and off-policy algorithm is included; ARS is not (it evaluates perturbed
    policies in a loop of its own, so it cannot stop after an exact number of episodes).
    """
    found = {}
    for module in (stable_baselines3, sb3_contrib):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, OnPolicyAlgorithm | OffPolicyAlgorithm):
                found[name] = obj
    return dict(sorted(found.items()))


def resolve_algorithm(name: str) -> type[BaseAlgorithm]:
    """The algorithm class called ``name``.

    Raises:
        ValueError: for an unknown name, listing the valid ones.
    """
    table = algorithms()
    if name not in table:
        raise ValueError(f"unknown SB3 algorithm {name!r}; valid algorithms are {[f'sb3:{n}' for n in table]}")
    return table[name]


def is_recurrent(algo: type[BaseAlgorithm]) -> bool:
    """Whether the algorithm's policies carry a recurrent state (RecurrentPPO)."""
    return issubclass(algo, RecurrentPPO)


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


_ACTIVATIONS = ("ReLU", "Tanh", "ELU", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Softplus", "Identity")


def parse_zoo_literal(text: str, where: str) -> Any:
    """Reads one of rl-zoo3's Python-literal strings (``"dict(net_arch=[64], activation_fn=nn.ReLU)"``)
    without ``eval``: literals, ``dict(...)`` calls and ``nn.<activation>`` names only.

    Activation names are kept as strings (``"nn.ReLU"``) so the result stays JSON-able.

    Raises:
        ValueError: naming ``where`` for anything else.
    """

    def convert(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return -node.operand.value
        if isinstance(node, ast.List | ast.Tuple):
            return [convert(item) for item in node.elts]
        if isinstance(node, ast.Dict):
            return {convert(k): convert(v) for k, v in zip(node.keys, node.values, strict=True)}
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
            return {kw.arg: convert(kw.value) for kw in node.keywords}
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("nn", "th.nn", "torch.nn")
            and node.attr in _ACTIVATIONS
        ):
            return f"nn.{node.attr}"
        raise ValueError(
            f"{where}: {text!r} is not a literal the adapter can read (dicts, lists, numbers, strings and "
            f"nn.<activation> among {list(_ACTIVATIONS)}); write it as a YAML mapping instead"
        )

    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        raise ValueError(f"{where}: {text!r} is not valid Python literal syntax ({error.msg})") from error
    return convert(tree.body)


def _policy_kwargs_objects(policy_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-able policy kwargs -> what SB3 takes (activation names become torch classes)."""
    out = dict(policy_kwargs)
    if isinstance(out.get("activation_fn"), str):
        out["activation_fn"] = getattr(torch.nn, out["activation_fn"].removeprefix("nn."))
    return out


def read_hyperparams_file(path: str | Path, env_id: str) -> dict[str, Any]:
    """The entry for ``env_id`` (else ``default``) of an rl-zoo3 hyperparameter file.

    Raises:
        ValueError: for a missing or unreadable file, or one without an entry for the env.
    """
    import yaml

    path = Path(path)
    try:
        table = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"hyperparams file {str(path)!r} cannot be read ({error})") from error
    if not isinstance(table, dict):
        raise ValueError(f"hyperparams file {str(path)!r} must map env ids to hyperparameters (rl-zoo3's format)")
    entry = table.get(env_id, table.get("default"))
    if not isinstance(entry, dict):
        raise ValueError(f"hyperparams file {str(path)!r} has no entry for {env_id!r} (nor 'default')")
    return dict(entry)


def shipped_hyperparams_path(algo: str) -> Path:
    """Where the project's hyperparameters for an algorithm live (the file may not exist)."""
    return HYPERPARAMS_DIR / f"{ZOO_NAMES.get(algo, algo.lower())}.yml"


@dataclass(frozen=True)
class SB3Spec:
    """A validated recipe for SB3 learners: algorithm, env and hyperparameters (JSON-able).

    Attributes:
        algo: algorithm class name, e.g. ``"RecurrentPPO"``.
        env_id: the env the learners live in.
        policy: policy alias, e.g. ``"MlpLstmPolicy"``.
        n_envs: arms per learner (a divisor of the protocol's reaches per update: 8 for a batch).
        normalize: ``VecNormalize`` keyword arguments, or None for no normalisation.
        policy_kwargs: policy keyword arguments (activation functions as ``"nn.<Name>"``).
        algo_kwargs: the other constructor arguments.
        noise: off-policy action noise ``{"type": ..., "std": ...}`` or None.
        sources: where the values came from, in order of precedence (lowest first).
        exploration_std: the action standard deviation a Gaussian on-policy policy starts from,
            set after any pretrained weights are loaded (they keep their own otherwise); None: keep.
    """

    algo: str
    env_id: str
    policy: str
    n_envs: int
    normalize: dict[str, Any] | None
    policy_kwargs: dict[str, Any]
    algo_kwargs: dict[str, Any]
    noise: dict[str, Any] | None = None
    sources: tuple[str, ...] = ()
    exploration_std: float | None = None

    @property
    def algo_class(self) -> type[BaseAlgorithm]:
        return resolve_algorithm(self.algo)

    @property
    def recurrent(self) -> bool:
        return is_recurrent(self.algo_class)

    @property
    def imitates(self) -> bool:
        """Whether :func:`imitate` can warm-start this policy: an actor-critic with a mean action
        and a state value (PPO, A2C, TRPO, RecurrentPPO), not SAC/TD3/DDPG, whose critics value
        state-action pairs."""
        policy = self.algo_class.policy_aliases.get(self.policy, self.policy)
        return isinstance(policy, type) and issubclass(policy, ActorCriticPolicy)

    @property
    def cued(self) -> bool:
        return self.env_id == "ArmCurlFieldCued-v0"

    @property
    def hidden(self) -> int | None:
        """LSTM units of a recurrent policy (SB3's default 256 unless set), else None."""
        return int(self.policy_kwargs.get("lstm_hidden_size", 256)) if self.recurrent else None

    @property
    def policy_class(self) -> str | type:
        """What the model is built with: :class:`WholeSequenceLstmPolicy` for ``MlpLstmPolicy``, else the alias."""
        return WholeSequenceLstmPolicy if self.recurrent and self.policy == "MlpLstmPolicy" else self.policy

    def architecture(self) -> dict[str, Any]:
        """What pretrained weights must match to be loaded: the networks and their inputs."""
        return {
            "algo": self.algo,
            "policy": self.policy,
            "policy_kwargs": self.policy_kwargs,
            "normalize": self.normalize,
            "cued": self.cued,
        }

    def as_config(self) -> dict[str, Any]:
        """The spec as plain values, for result files."""
        return asdict(self) | {"sources": list(self.sources)}

    def model_kwargs(self) -> dict[str, Any]:
        """Constructor keyword arguments for the algorithm (without env, seed and device)."""
        kwargs = dict(self.algo_kwargs)
        if isinstance(kwargs.get("train_freq"), list):  # YAML has no tuples (rl-zoo3 converts too)
            kwargs["train_freq"] = tuple(kwargs["train_freq"])
        if self.noise is not None:
            size = N_MUSCLES
            noise_class = NormalActionNoise if self.noise["type"] == "normal" else OrnsteinUhlenbeckActionNoise
            kwargs["action_noise"] = noise_class(mean=np.zeros(size), sigma=self.noise["std"] * np.ones(size))
        return kwargs | {"policy_kwargs": _policy_kwargs_objects(self.policy_kwargs)}


HyperparamsLike = Mapping[str, Any] | str | Path


def hyperparam_layers(hyperparams: HyperparamsLike | Sequence[HyperparamsLike] | None) -> list[HyperparamsLike]:
    """Hyperparameters as :func:`make_spec` takes them (None, a dict, a yaml path, or a list of
    those applied in order) as a list of layers, so that callers can add their own on top."""
    if hyperparams is None:
        return []
    if isinstance(hyperparams, Mapping | str | Path):
        return [hyperparams]
    return list(hyperparams)


def _protocol_batch_steps(n_envs: int, reaches_per_update: int = PAPER_BATCH_SIZE) -> int:
    """Vector-env steps per protocol update of ``reaches_per_update`` episodes (8: a batch) with
    ``n_envs`` arms."""
    return reaches_per_update // n_envs * TRIAL_STEPS


def _check_reaches_per_update(reaches: Any) -> None:
    if isinstance(reaches, bool) or not isinstance(reaches, int) or reaches < 1 or reaches % PAPER_BATCH_SIZE:
        raise ValueError(
            f"reaches_per_update (--reaches-per-update) must be a positive multiple of {PAPER_BATCH_SIZE}, "
            f"got {reaches!r}"
        )


def _default(algo: type[BaseAlgorithm], name: str) -> Any:
    return inspect.signature(algo.__init__).parameters[name].default


def _collection_steps(train_freq: Any, n_envs: int) -> int | None:
    """Vector-env steps of one collection of an off-policy algorithm with ``train_freq`` (an int of
    steps, or ``(n, "step" | "episode")``) and ``n_envs`` arms; None for a value SB3 would not take."""
    frequency, unit = (train_freq, "step") if isinstance(train_freq, int) else (None, None)
    if isinstance(train_freq, list | tuple) and len(train_freq) == 2:
        frequency, unit = train_freq
    if (
        isinstance(frequency, bool)
        or not isinstance(frequency, int)
        or frequency < 1
        or unit not in ("step", "episode")
    ):
        return None
    return frequency if unit == "step" else math.ceil(frequency / n_envs) * TRIAL_STEPS


def check_rollout_fits_a_batch(
    algo: type[BaseAlgorithm], values: Mapping[str, Any], n_envs: int, reaches_per_update: int = PAPER_BATCH_SIZE
) -> None:
    """The protocol trains in whole updates (``reaches_per_update`` episodes per learner; 8: a batch):
    one collection of the algorithm must fit a whole number of times."""
    batch = _protocol_batch_steps(n_envs, reaches_per_update)
    unit = (
        "a protocol batch"
        if reaches_per_update == PAPER_BATCH_SIZE
        else f"a protocol update (--reaches-per-update {reaches_per_update})"
    )
    if issubclass(algo, OnPolicyAlgorithm):
        n_steps = values.get("n_steps", _default(algo, "n_steps"))
        if not isinstance(n_steps, int) or n_steps < 1 or batch % n_steps:
            raise ValueError(
                f"hyperparams n_steps={n_steps!r}: a rollout must divide {unit} of {batch} steps of "
                f"{n_envs} arms ({reaches_per_update} episodes of {TRIAL_STEPS} steps); use a divisor of {batch}, "
                f"e.g. {batch}"
            )
        return
    train_freq = values.get("train_freq", _default(algo, "train_freq"))
    steps = _collection_steps(train_freq, n_envs)
    if steps is None or batch % steps:
        raise ValueError(
            f"hyperparams train_freq={train_freq!r}: one collection must divide {unit} of {batch} "
            f"steps of {n_envs} arms; use (n, 'step') with n dividing {batch}, or (1, 'episode')"
        )


def collection_episodes(spec: SB3Spec) -> int:
    """The fewest training episodes per learner that are whole collections (on-policy: rollouts of
    ``n_steps``; off-policy: ``train_freq``) of whole episodes of every arm and whole batches of 8:
    what :meth:`SB3Agent.train` can be asked for in multiples of (8 for every spec that fits a batch)."""
    algo = spec.algo_class
    if issubclass(algo, OnPolicyAlgorithm):
        steps = spec.algo_kwargs.get("n_steps", _default(algo, "n_steps"))
    else:
        steps = _collection_steps(spec.algo_kwargs.get("train_freq", _default(algo, "train_freq")), spec.n_envs)
    episodes = math.lcm(steps, TRIAL_STEPS) // TRIAL_STEPS * spec.n_envs
    return math.lcm(episodes, PAPER_BATCH_SIZE)


def make_spec(
    algo: str,
    env_id: str = "ArmCurlField-v0",
    hyperparams: HyperparamsLike | Sequence[HyperparamsLike] | None = None,
    hidden: int | None = None,
    reaches_per_update: int = PAPER_BATCH_SIZE,
) -> SB3Spec:
    """Validates an algorithm, env and hyperparameters into an :class:`SB3Spec`, before any training.

    Defaults come from the shipped ``agents/hyperparams/<rl-zoo name>.yml`` (entry ``env_id``),
    else SB3's own. ``hyperparams`` overrides them: a flat dict, the path of an rl-zoo3 yaml file
    (its ``env_id`` or ``default`` entry), or a list of those applied in order.

    Args:
        algo: class name of an SB3 or sb3-contrib algorithm (:func:`algorithms`).
        env_id: ``ArmCurlField-v0``, ``ArmCurlFieldCued-v0`` or ``ArmReach-v0``.
        hyperparams: overrides, see above.
        hidden: LSTM units (``policy_kwargs.lstm_hidden_size``) of a recurrent policy.
        reaches_per_update: the protocol's training episodes per learner per update (R; a positive
            multiple of 8, the preset's :attr:`~benchmarks.savings.protocol.Preset.reaches_per_update`). For
            R other than 8, an on-policy learner's ``n_steps`` becomes R / ``n_envs`` episodes of 100
            steps (one rollout, one update per curve point; recorded in ``sources``) unless
            ``hyperparams`` set it, and then it must divide that; an off-policy learner's
            ``train_freq`` must divide it. At 8, the hyperparameters stand as given (a rollout must
            divide a batch).

    Raises:
        ValueError: naming the argument: an unknown algorithm or env, an action space the
            algorithm cannot act in, unknown or unsupported hyperparameter keys, a learning-rate
            schedule, a rollout that does not fit the protocol's updates.
    """
    _check_reaches_per_update(reaches_per_update)
    algo_class = resolve_algorithm(algo)
    if env_id not in ENV_IDS:
        raise ValueError(f"env_id must be one of {list(ENV_IDS)}, got {env_id!r}")
    layers: list[tuple[str, dict[str, Any]]] = []
    shipped = shipped_hyperparams_path(algo)
    if shipped.exists():
        layers.append((f"{shipped.name}[{env_id}]", read_hyperparams_file(shipped, env_id)))
    elif not hyperparams:
        warnings.warn(
            f"sb3:{algo} has no shipped hyperparameters (no {shipped.name} in agents/hyperparams/): it runs on "
            "SB3's defaults, not tuned for this task, whose cost charges exploration noise heavily (README, "
            "'RL agents through the same protocol'); give --hyperparams FILE or key=value to choose them",
            UserWarning,
            stacklevel=2,
        )
    shipped_layers = len(layers)
    for item in hyperparam_layers(hyperparams):
        if isinstance(item, Mapping):
            layers.append(("hyperparams dict", dict(item)))
        elif isinstance(item, str | Path):
            layers.append((f"hyperparams file {str(item)!r}", read_hyperparams_file(item, env_id)))
        else:
            raise ValueError(f"hyperparams must be a dict or a yaml path, got {type(item).__name__}")

    constructor = set(inspect.signature(algo_class.__init__).parameters) - {"self", "policy", *ADAPTER_OWNED}
    for where, values in layers:
        if _only_protocol_callback(values.get("callback")):
            del values["callback"]
        keys = [str(k) for k in values]
        unsupported = sorted(set(keys) & set(ZOO_UNSUPPORTED))
        if unsupported:
            raise ValueError(
                f"{where}: {unsupported} not supported by the savings-gym adapter (the protocol owns the env "
                "and the training loop)"
            )
        owned = sorted(set(keys) & set(ADAPTER_OWNED) - {"action_noise"})
        if owned:
            raise ValueError(f"{where}: {owned} are set by the adapter; remove them")
        unknown = sorted(set(keys) - constructor - set(ZOO_KEYS) - set(ADAPTER_KEYS))
        if "reaches_per_update" in unknown:
            raise ValueError(
                f"{where}: reaches_per_update is a protocol setting (how many reaches between two curve points), "
                "not a hyperparameter: give savings-gym run --reaches-per-update R, or a preset's reaches_per_update"
            )
        if unknown:
            valid = sorted(constructor | set(ZOO_KEYS) | set(ADAPTER_KEYS))
            raise ValueError(f"{where}: unknown key(s) {unknown} for sb3:{algo}; valid keys are {valid}")
    values: dict[str, Any] = {}
    for _, layer in layers:
        values.update(layer)
    set_by_user = {key for _, layer in layers[shipped_layers:] for key in layer}

    policy = values.pop("policy", "MlpLstmPolicy" if is_recurrent(algo_class) else "MlpPolicy")
    if policy not in algo_class.policy_aliases:
        raise ValueError(f"hyperparams policy={policy!r}: sb3:{algo} takes {sorted(algo_class.policy_aliases)}")
    n_envs = values.pop("n_envs", PAPER_BATCH_SIZE)
    if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1 or reaches_per_update % n_envs:
        raise ValueError(
            f"hyperparams n_envs={n_envs!r}: must divide the protocol's {reaches_per_update} reaches per update"
        )
    values.pop("n_timesteps", None)  # rl-zoo3's budget; the protocol sets its own
    for key in SCHEDULABLE:
        if isinstance(values.get(key), str):
            raise ValueError(
                f"hyperparams {key}={values[key]!r}: schedules are not supported (a rate that decays through the "
                "schedule would slow FF2 relative to FF1 and confound savings); give a constant number "
                "(in YAML, write 3.0e-4 or !!float 3e-4)"
            )
    policy_kwargs = values.pop("policy_kwargs", None) or {}
    if isinstance(policy_kwargs, str):
        policy_kwargs = parse_zoo_literal(policy_kwargs, "hyperparams policy_kwargs")
    if not isinstance(policy_kwargs, dict):
        raise ValueError(f"hyperparams policy_kwargs must be a mapping, got {policy_kwargs!r}")
    if hidden is not None:
        if not is_recurrent(algo_class):
            raise ValueError(
                f"hidden={hidden} sets the LSTM size of recurrent policies; sb3:{algo} has none "
                "(set policy_kwargs net_arch in the hyperparams instead)"
            )
        policy_kwargs = policy_kwargs | {"lstm_hidden_size": int(hidden)}
    activation = policy_kwargs.get("activation_fn")
    if activation is not None and str(activation).removeprefix("nn.") not in _ACTIVATIONS:
        raise ValueError(f"hyperparams policy_kwargs activation_fn={activation!r}: use one of {list(_ACTIVATIONS)}")
    normalize = _parse_normalize(values.pop("normalize", False), values.get("gamma"))
    noise = _parse_noise(algo_class, values.pop("noise_type", None), values.pop("noise_std", None))
    exploration_std = values.pop("exploration_std", None)
    derived = []
    on_policy = issubclass(algo_class, OnPolicyAlgorithm)
    if reaches_per_update != PAPER_BATCH_SIZE and on_policy and "n_steps" not in set_by_user:
        values["n_steps"] = _protocol_batch_steps(n_envs, reaches_per_update)  # one rollout per update
        derived.append(
            f"reaches_per_update {reaches_per_update}: n_steps {values['n_steps']} (one rollout of "
            f"{reaches_per_update} episodes on {n_envs} arms per update)"
        )
    check_rollout_fits_a_batch(algo_class, values, n_envs, reaches_per_update)
    spec = SB3Spec(
        algo,
        env_id,
        policy,
        n_envs,
        normalize,
        policy_kwargs,
        values,
        noise,
        (*(where for where, _ in layers), *derived),
        _parse_exploration_std(exploration_std, algo_class, policy, values),
    )
    _check_action_space(spec)
    return spec


def _parse_exploration_std(std: Any, algo: type[BaseAlgorithm], policy: str, values: Mapping[str, Any]) -> float | None:
    if std is None:
        return None
    if isinstance(std, bool) or not isinstance(std, int | float) or not 0 < std < math.inf:
        raise ValueError(f"hyperparams exploration_std={std!r}: must be a positive number (the action std)")
    policy_class = algo.policy_aliases.get(policy, policy)
    gaussian = isinstance(policy_class, type) and issubclass(policy_class, ActorCriticPolicy)
    if not gaussian or values.get("use_sde"):
        raise ValueError(
            f"hyperparams exploration_std: sb3:{algo.__name__} with {policy} has no state-independent action std "
            "to set (on-policy Gaussian policies without use_sde have one: PPO, A2C, TRPO, RecurrentPPO); off-policy "
            "algorithms explore by noise_type / noise_std"
        )
    return float(std)


def gradient_steps_per_batch(spec: SB3Spec, reaches_per_update: int = PAPER_BATCH_SIZE) -> int | None:
    """Gradient steps an off-policy learner of ``spec`` makes per protocol update of
    ``reaches_per_update`` episodes (8: a batch): its collections per update times ``gradient_steps``
    (SB3's -1: one per transition collected); None for an on-policy algorithm, whose work per update
    its rollout and epochs set."""
    algo = spec.algo_class
    if not issubclass(algo, OffPolicyAlgorithm):
        return None
    values = spec.algo_kwargs
    per_collection = _collection_steps(values.get("train_freq", _default(algo, "train_freq")), spec.n_envs)
    collections = _protocol_batch_steps(spec.n_envs, reaches_per_update) // per_collection
    gradient_steps = values.get("gradient_steps", _default(algo, "gradient_steps"))
    return collections * (gradient_steps if gradient_steps >= 0 else per_collection * spec.n_envs)


def cap_gradient_steps(spec: SB3Spec, most: int, reason: str, reaches_per_update: int = PAPER_BATCH_SIZE) -> SB3Spec:
    """``spec`` with an off-policy learner's work per protocol update (of ``reaches_per_update``
    episodes; 8: a batch) cut to ``most`` gradient steps: it then collects a whole update
    (``train_freq``: the update's steps) and makes ``most`` gradient steps after it. Unchanged for an
    on-policy algorithm or one that already makes ``most`` or fewer. The change is recorded in
    ``sources`` as ``reason``, so that a result file shows it.

    Raises:
        ValueError: for ``most`` not a positive integer.
    """
    if isinstance(most, bool) or not isinstance(most, int) or most < 1:
        raise ValueError(f"most must be a positive integer (gradient steps per batch), got {most!r}")
    steps = gradient_steps_per_batch(spec, reaches_per_update)
    if steps is None or steps <= most:
        return spec
    capped = {"train_freq": [_protocol_batch_steps(spec.n_envs, reaches_per_update), "step"], "gradient_steps": most}
    return replace(spec, algo_kwargs=spec.algo_kwargs | capped, sources=(*spec.sources, reason))


def _only_protocol_callback(callback: Any) -> bool:
    """Whether an rl-zoo3 ``callback`` value names :data:`PROTOCOL_CALLBACK` only (with or without arguments)."""
    items = callback if isinstance(callback, list) else [callback]
    names = [next(iter(item)) if isinstance(item, dict) and len(item) == 1 else item for item in items]
    return callback is not None and all(name == PROTOCOL_CALLBACK for name in names)


def _parse_normalize(normalize: Any, gamma: float | None) -> dict[str, Any] | None:
    if isinstance(normalize, str):
        normalize = parse_zoo_literal(normalize, "hyperparams normalize")
    if normalize is False or normalize is None:
        return None
    kwargs = {} if normalize is True else normalize
    if not isinstance(kwargs, dict):
        raise ValueError(f"hyperparams normalize must be true, false or a mapping, got {normalize!r}")
    unknown = sorted(set(kwargs) - set(NORMALIZE_KEYS))
    if unknown:
        raise ValueError(f"hyperparams normalize: unknown key(s) {unknown}; valid keys are {list(NORMALIZE_KEYS)}")
    if gamma is not None:  # as rl-zoo3: the return is discounted as the algorithm discounts
        kwargs = kwargs | {"gamma": gamma}
    return kwargs


def _parse_noise(algo: type[BaseAlgorithm], noise_type: Any, noise_std: Any) -> dict[str, Any] | None:
    if noise_type is None:
        return None
    if not issubclass(algo, OffPolicyAlgorithm):
        raise ValueError(f"hyperparams noise_type: action noise applies to off-policy algorithms, not {algo.__name__}")
    if noise_type not in NOISE_TYPES or not isinstance(noise_std, int | float) or noise_std < 0:
        raise ValueError(
            f"hyperparams noise_type={noise_type!r}, noise_std={noise_std!r}: the type must be one of "
            f"{list(NOISE_TYPES)} with a non-negative noise_std"
        )
    return {"type": noise_type, "std": float(noise_std)}


def _check_action_space(spec: SB3Spec) -> None:
    """SB3 checks the action space in the constructor, before building any network: build it that far."""
    probe = make_sb3_vec_env(spec.env_id, spec.n_envs)
    kwargs = {k: v for k, v in spec.model_kwargs().items() if k != "action_noise"}
    try:
        spec.algo_class(spec.policy, probe, _init_setup_model=False, **kwargs)
    except AssertionError as error:
        raise ValueError(f"agent sb3:{spec.algo} cannot act in {spec.env_id}: {error}") from error
    finally:
        probe.close()


# -- the test reaches -----------------------------------------------------------------------------
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
    states: list[Any] = [None] * len(models)
    recurrent = all(isinstance(model.policy, RecurrentActorCriticPolicy) for model, _ in models)
    hidden: list[list[np.ndarray]] = [[] for _ in models]

    def policy(obs: np.ndarray, t: int) -> np.ndarray:
        actions = []
        starts = np.full(N_TEST_TARGETS, t == 0)
        for k, (model, normalizer) in enumerate(models):
            own = obs[k * N_TEST_TARGETS : (k + 1) * N_TEST_TARGETS]
            if normalizer is not None:
                own = normalizer.normalize_obs(own)
            action, states[k] = model.predict(own, state=states[k], episode_start=starts, deterministic=True)
            if recurrent:
                hidden[k].append(states[k][0][-1])  # actor LSTM, last layer: (8, H)
            actions.append(action)
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


# -- pretraining and pretrained weights -------------------------------------------------------------
PRETRAINED_FORMAT = "savings-gym-sb3-pretrained"


def shipped_pretrained(spec: SB3Spec) -> Path:
    """Where the project's pretrained learners for a spec live: ``agents/pretrained/<algo>[-cued].pt``."""
    return PRETRAINED_DIR / f"{spec.algo.lower()}{'-cued' if spec.cued else ''}.pt"


def save_pretrained(agent: SB3Agent, path: str | Path, meta: Mapping[str, Any]) -> None:
    """Writes the learners' policy weights and normalisation statistics (atomically; no optimiser)."""
    weights = [_weights(learner) for learner in agent.learners]
    blob = {
        "format": PRETRAINED_FORMAT,
        "architecture": agent.spec.architecture(),
        "spec": agent.spec.as_config(),
        "policies": [policy for policy, _ in weights],
        "normalization": [normalization for _, normalization in weights],
        "meta": copy.deepcopy(dict(meta)),
    }
    atomic_torch_save(blob, path)


def load_pretrained(path: str | Path) -> dict[str, Any]:
    """Reads :func:`save_pretrained`'s file safely (``weights_only=True``).

    Raises:
        ValueError: for a file that is not a savings-gym SB3 pretrained file.
    """
    blob = load_checkpoint(path)
    if not isinstance(blob, dict) or blob.get("format") != PRETRAINED_FORMAT:
        raise ValueError(f"{path} is not a savings-gym SB3 pretrained file (format {PRETRAINED_FORMAT!r})")
    return blob


def fits(blob: Mapping[str, Any], spec: SB3Spec, networks: int) -> bool:
    """Whether pretrained weights fit a spec's networks and inputs and hold enough learners."""
    same = _plain(blob["architecture"]) == _plain(spec.architecture())
    return same and len(blob["policies"]) >= networks


def _plain(obj: Any) -> Any:
    """As the value reads back from a checkpoint (tuples become lists)."""
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


Competence = Callable[[ReachRecord], tuple[np.ndarray, dict[str, Any]]]
"""Judges the null-field test reaches: (K,) booleans (competent or not) and the figures behind them."""


@dataclass
class Imitation:
    """How :func:`imitate` distils BPTT networks into SB3 learners (the pretraining warm start)."""

    teacher: str
    """file of BPTT networks (``agents.bptt.save_pretrained``)"""
    networks: tuple[int, ...] | None = None
    """which of its networks to copy: learner n imitates ``networks[n mod len(networks)]``
    (default: all K, learner n imitates network n mod K)"""
    episodes: int = 4096
    """teacher reaches recorded per learner (in ``ArmReach-v0``, the pretraining env)"""
    steps: int = 1500
    """gradient steps on minibatches of 64 reaches"""
    learning_rate: float = 1e-3
    """Adam's, for the imitation only (PPO's own optimiser is untouched)"""
    noise: float | None = None
    """std of the noise added to the executed (not the labelled) excitations while recording, so
    the learner also sees how the teacher recovers from its own mistakes (DART); default: the
    learner's exploration std"""


def load_teachers(path: str | Path) -> RecurrentControllers:
    """BPTT networks to imitate (``agents.bptt.save_pretrained``'s file), checked to see what the
    uncued env shows (the cued learners' extra input, the gain, is 0 in the null field)."""
    from agents.bptt import load_pretrained as load_bptt

    controllers, _ = load_bptt(path)
    inputs = observation_bounds(cued=False)[0].shape[0]
    if controllers.input_size != inputs:
        raise ValueError(f"teacher {path}: networks take {controllers.input_size} inputs, need {inputs}")
    return controllers


def record_teacher(teacher: RecurrentControllers, episodes: int, noise: float, seed: int) -> dict[str, np.ndarray]:
    """Reaches of one BPTT network (:func:`load_teachers`, one selected) in ``ArmReach-v0``
    (batched, no gradients).

    Returns (episodes, T, .) arrays: ``obs`` (what the learner would see before each action),
    ``action`` (the teacher's excitation: the label) and ``reward`` (after the executed,
    noise-perturbed excitation).
    """
    from savings_gym.differentiable import DifferentiableArmEnv

    env = DifferentiableArmEnv(episodes, null_schedule(), env_id=PRETRAIN_ENV_ID, differentiable=False)
    obs, _ = env.reset(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    state = teacher.initial_state(episodes)
    columns: dict[str, list[torch.Tensor]] = {"obs": [], "action": [], "reward": []}
    truncated = False
    with torch.no_grad():
        while not truncated:
            action, state = teacher(obs[None], state)
            action = action[0]
            executed = (action + noise * torch.randn(action.shape, generator=generator)).clamp(0.0, 1.0)
            columns["obs"].append(obs)
            columns["action"].append(action)
            obs, reward, _, truncated, _ = env.step(executed)
            columns["reward"].append(reward)
    return {key: torch.stack(values, dim=1).numpy() for key, values in columns.items()}


def imitate(agent: SB3Agent, imitation: Imitation, seed: int = 0) -> dict[str, Any]:
    """Distils BPTT networks into the agent's learners: the warm start of RL pretraining.

    PPO from scratch does not learn to reach under the paper's cost at budgets this project can
    run (``benchmarks/RESULTS.md``: it settles on holding the arm still), although reaching scores
    better than holding still at every exploration noise. So the learners first copy a reaching
    BPTT network, then PPO takes over. Per learner: record the teacher's reaches
    (:func:`record_teacher`), set the normalisation statistics from them, then fit the policy's
    mean action to the teacher's excitations and the value to the recorded (normalised,
    discounted) return-to-go, with mean squared errors. The exploration std, PPO's optimiser and
    counters are left as they were.

    Returns:
        Per learner, the last minibatch's action error (RMS, excitation units) and the teacher used.
    """
    if not agent.spec.imitates:
        raise ValueError(
            f"sb3:{agent.spec.algo} ({agent.spec.policy}) cannot imitate: imitation fits an actor-critic's "
            "mean action and state value (PPO, A2C, TRPO, RecurrentPPO)"
        )
    if not isinstance(imitation.episodes, int) or imitation.episodes < 64:
        raise ValueError(f"imitation episodes must be an integer >= 64, got {imitation.episodes!r}")
    if not isinstance(imitation.steps, int) or imitation.steps < 0:
        raise ValueError(f"imitation steps must be a non-negative integer, got {imitation.steps!r}")
    teachers = load_teachers(imitation.teacher)  # read once
    pool = list(range(teachers.num_networks)) if imitation.networks is None else list(imitation.networks)
    if not pool or any(
        isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < teachers.num_networks for i in pool
    ):
        raise ValueError(
            f"imitation networks must be a non-empty list of indices below {teachers.num_networks} "
            f"(the networks in {imitation.teacher}), got {imitation.networks!r}"
        )
    errors = []
    for learner in agent.learners:
        policy = learner.model.policy
        noise = imitation.noise
        if noise is None:
            noise = float(policy.log_std.detach().exp().mean()) if hasattr(policy, "log_std") else 0.0
        teacher = teachers.select([pool[learner.index % len(pool)]])
        data = record_teacher(teacher, imitation.episodes, noise, derived_seed(seed, learner.index))
        obs, rewards = data["obs"], data["reward"]
        if agent.spec.cued:  # the cued learner sees the gain as well: 0 in the null field
            obs = np.concatenate([obs, np.zeros((*obs.shape[:2], 1), obs.dtype)], axis=-1)
        gamma = learner.model.gamma
        if learner.normalizer is not None:
            normalizer = learner.normalizer
            normalizer.obs_rms.update(obs.reshape(-1, obs.shape[-1]))
            running = np.zeros(len(rewards))  # VecNormalize's own discounted return, step by step
            for t in range(rewards.shape[1]):
                running = running * gamma + rewards[:, t]
                normalizer.ret_rms.update(running)
            obs = normalizer.normalize_obs(obs)
            rewards = normalizer.normalize_reward(rewards)
        to_go = np.zeros_like(rewards)
        later = np.zeros(len(rewards))
        for t in reversed(range(rewards.shape[1])):
            later = rewards[:, t] + gamma * later
            to_go[:, t] = later
        errors.append(_fit_policy(learner, obs, data["action"], to_go, imitation, derived_seed(seed, learner.index)))
    return {"teacher": str(imitation.teacher), "teacher_networks": pool, "action_rms_error": errors}


def _fit_policy(
    learner: _Learner, obs: np.ndarray, actions: np.ndarray, to_go: np.ndarray, imitation: Imitation, seed: int
) -> float:
    policy = learner.model.policy
    device = policy.device
    episodes, length = obs.shape[:2]
    trainable = [p for name, p in policy.named_parameters() if name != "log_std"]
    optimizer = torch.optim.Adam(trainable, lr=imitation.learning_rate)
    order = np.random.default_rng(seed)
    error = float("nan")
    policy.set_training_mode(True)
    for _ in range(imitation.steps):
        pick = order.choice(episodes, size=64, replace=False)
        x = torch.as_tensor(obs[pick], dtype=torch.float32, device=device).reshape(64 * length, -1)
        y = torch.as_tensor(actions[pick], dtype=torch.float32, device=device).reshape(64 * length, -1)
        v = torch.as_tensor(to_go[pick], dtype=torch.float32, device=device).reshape(64 * length)
        if isinstance(policy, RecurrentActorCriticPolicy):
            # whole episodes, sequence-major (as sb3-contrib's buffer hands them over), zero start state
            starts = torch.zeros(64, length, device=device)
            starts[:, 0] = 1.0
            starts = starts.reshape(-1)
            zeros = torch.zeros(policy.lstm_actor.num_layers, 64, policy.lstm_actor.hidden_size, device=device)
            mean = policy.get_distribution(x, (zeros, zeros), starts)[0].distribution.mean
            critic = policy.lstm_critic if policy.lstm_critic is not None else policy.lstm_actor
            zeros_vf = torch.zeros(critic.num_layers, 64, critic.hidden_size, device=device)
            value = policy.predict_values(x, (zeros_vf, zeros_vf), starts).flatten()
        else:
            mean = policy.get_distribution(x).distribution.mean
            value = policy.predict_values(x).flatten()
        action_loss = torch.mean((mean - y) ** 2)
        loss = action_loss + torch.mean((value - v) ** 2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        error = float(action_loss.detach().sqrt())
    policy.set_training_mode(False)
    return error


def _check(agent: SB3Agent, competent: Competence | None, networks: int) -> tuple[np.ndarray, dict[str, Any]]:
    if competent is None:
        return np.zeros(networks, bool), {}
    return competent(agent.evaluate(0.0))


def competent_teachers(path: str | Path, competent: Competence) -> tuple[list[int], dict[str, Any]]:
    """The networks of a BPTT file that meet the pretraining criterion themselves, judged on the
    same 8 null-field test reaches (all of them if none does), with the figures behind it.

    A copy reaches no better than its teacher: the shipped GRU-128s meet 2 cm / 1 cm for 3 of 8
    networks, and learners copying the others inherited their lateral deviation.
    """
    from agents.bptt import BPTTAgent

    teachers = load_teachers(path)
    record = BPTTAgent(teachers, null_schedule(), env_id=PRETRAIN_ENV_ID, batch_size=32).evaluate(0.0)
    met, figures = competent(record)
    networks = [int(i) for i in np.flatnonzero(met)] or list(range(teachers.num_networks))
    return networks, figures


@dataclass
class PretrainArgs:
    """SB3 pretraining in the null field (``savings-gym pretrain --agent sb3:<Algo>``)."""

    batches: int = 2000
    """budget: batches of 8 episodes per learner (stops earlier once every learner is competent)"""
    networks: int = 4
    """learners pretrained together"""
    seed: int = 0
    """the run's seed (learner n: derived_seed(seed, n))"""
    check_every: int = 50
    """batches between competence checks, progress lines and checkpoints"""
    device: str = "cpu"
    """torch device"""
    imitate: str | None = None
    """BPTT networks to distil first (:func:`imitate`), before PPO; None: PPO from scratch"""
    imitation_steps: int = 1500
    """gradient steps of that distillation"""


def pretrain(spec: SB3Spec, args: PretrainArgs, out: str | Path, competent: Competence | None = None) -> dict:
    """Grows SB3 learners up in the null field (``ArmReach-v0``: random starts and targets) until
    ``competent`` says every learner is, or the budget runs out; writes their weights to ``out``.

    With ``args.imitate`` the learners first copy those BPTT networks (:func:`imitate`), then train
    by their own algorithm as usual. With a criterion, they copy only the networks that meet it
    themselves (:func:`competent_teachers`).

    Every ``check_every`` batches the deterministic policies do the 8 test reaches in the null field;
    the weights (``save_pretrained``) and the full training state (``out`` + ``.state``) are written
    then, so rerunning the same call resumes. Each learner is done at the first check it passes:
    the final file holds its weights from that check (RL on the paper's cost can make a competent
    reach worse again), and the latest weights of those that never passed.

    Returns:
        The meta written with the weights: batches done, seconds, the last competence figures and
        whether every learner met the criterion.
    """
    out = Path(out)
    agent = SB3Agent(
        spec,
        null_schedule(),
        args.networks,
        seed=args.seed,
        device=args.device,
        env_id=PRETRAIN_ENV_ID,
        env_kwargs={"cued": spec.cued},
    )
    state_path = out.with_suffix(".state")
    identity = {
        "spec": spec.as_config(),
        "networks": args.networks,
        "seed": args.seed,
        "imitate": args.imitate,
        "imitation_steps": args.imitation_steps if args.imitate else None,
    }
    done, seconds = 0, 0.0
    kept: list[tuple[dict[str, torch.Tensor], dict[str, Any] | None] | None] = [None] * args.networks
    if state_path.exists():
        saved = load_checkpoint(state_path)
        if _plain(saved["identity"]) != _plain(identity):
            raise ValueError(f"{state_path} belongs to another pretraining run; remove it or match its arguments")
        agent.load_state_dict(saved["agent"])
        done, seconds = saved["batches_done"], saved["seconds"]
        kept = saved.get("kept", kept)
        print(f"resuming pretraining at batch {done} from {state_path}", flush=True)
        imitation = saved.get("imitation")
    else:
        imitation = None
    start = time.time() - seconds
    if imitation is None and args.imitate is not None:
        networks, teacher_figures = None, None
        if competent is not None:
            networks, teacher_figures = competent_teachers(args.imitate, competent)
            print(f"teacher networks meeting the criterion: {networks} ({teacher_figures['competent']})", flush=True)
        print(f"imitating {args.imitate} ({args.imitation_steps} steps)", flush=True)
        imitation = imitate(agent, Imitation(args.imitate, networks, steps=args.imitation_steps), seed=args.seed)
        imitation["teacher_competence"] = teacher_figures
    meta: dict[str, Any] = {}
    while True:
        met, figures = _check(agent, competent, args.networks)
        for k, (learner, now_met) in enumerate(zip(agent.learners, met, strict=True)):
            if now_met and kept[k] is None:  # this learner is done: these are the weights it ships with
                kept[k] = _weights(learner)
        elapsed = time.time() - start
        state = {
            "identity": identity,
            "agent": agent.state_dict(),
            "batches_done": done,
            "seconds": elapsed,
            "imitation": imitation,
            "kept": kept,
        }
        atomic_torch_save(state, state_path)
        finished = all(k is not None for k in kept) or done >= args.batches
        if finished and any(k is not None for k in kept):
            for learner, weights in zip(agent.learners, kept, strict=True):  # the state above stays, for a rerun
                if weights is not None:
                    _load_weights(learner.model, learner.normalizer, *weights)
            met, figures = _check(agent, competent, args.networks)
        meta = {
            **asdict(args),
            "batches_done": done,
            "seconds": elapsed,
            "competence": figures,
            "competent": [bool(m) for m in met],
            "all_competent": bool(np.all(met)),
            "imitation": imitation,
        }
        summary = ", ".join(f"{k} {v}" for k, v in figures.items() if not isinstance(v, list | dict))
        print(f"pretraining batch {done}/{args.batches}  {summary}  {elapsed:.0f} s", flush=True)
        save_pretrained(agent, out, meta)
        if finished:
            return meta
        chunk = min(args.check_every, args.batches - done)
        # in whole collections of the spec (a rollout of more than 8 reaches: --reaches-per-update)
        unit = collection_episodes(spec)
        episodes = -(-chunk * PAPER_BATCH_SIZE // unit) * unit
        agent.train(episodes)
        done += episodes // PAPER_BATCH_SIZE
