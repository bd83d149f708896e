"""What an SB3 learner is: its spec (:class:`SB3Spec`, from :func:`make_spec`), and how its rollouts and
gradient steps fit the protocol's batches."""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

try:
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
    from stable_baselines3.common.policies import ActorCriticPolicy
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError('agents.sb3.spec needs SB3 and sb3-contrib: pip install "savings-gym[rl]"') from error
from agents.sb3.hyperparams import (
    _ACTIVATIONS,
    ADAPTER_KEYS,
    ADAPTER_OWNED,
    OPTIMIZER_KEYS,
    SCHEDULABLE,
    ZOO_KEYS,
    ZOO_UNSUPPORTED,
    HyperparamsLike,
    _only_protocol_callback,
    _parse_exploration_std,
    _parse_noise,
    _parse_normalize,
    _policy_kwargs_objects,
    check_optimizer,
    hyperparam_layers,
    is_recurrent,
    parse_zoo_literal,
    read_hyperparams_file,
    resolve_algorithm,
    shipped_hyperparams_path,
)
from agents.sb3.policies import WholeSequenceLstmPolicy
from savings_gym import ENV_IDS, TRIAL_STEPS
from savings_gym.sb3 import make_sb3_vec_env
from savings_gym.schedule import PAPER_BATCH_SIZE
from savings_gym.task import N_MUSCLES


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
        """What pretrained weights must match to be loaded: the networks and their inputs (not how
        they learn: ``policy_kwargs``' optimizer settings, :data:`OPTIMIZER_KEYS`, are left out)."""
        return {
            "algo": self.algo,
            "policy": self.policy,
            "policy_kwargs": {k: v for k, v in self.policy_kwargs.items() if k not in OPTIMIZER_KEYS},
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
    (its ``env_id`` or ``default`` entry), or a list of those applied in order. Each layer replaces
    the keys it names; ``policy_kwargs`` is merged the same way one level down, so a layer's
    ``policy_kwargs`` replaces only the keys it names (``{"optimizer_kwargs": {"eps": 1e-3}}`` keeps
    the yaml's ``net_arch`` and ``log_std_init``; a ``net_arch`` is replaced whole).

    Args:
        algo: class name of an SB3 or sb3-contrib algorithm (:func:`algorithms`).
        env_id: ``ArmCurlField-v0``, ``ArmCurlFieldCued-v0`` or ``ArmReach-v0``.
        hyperparams: overrides, see above.
        hidden: LSTM units (``policy_kwargs.lstm_hidden_size``) of a recurrent policy.
        reaches_per_update: the protocol's training episodes per learner per update (R; a positive
            multiple of 8, the preset's :attr:`~benchmarks.savings.presets.Preset.reaches_per_update`). For
            R other than 8, an on-policy learner's ``n_steps`` becomes R / ``n_envs`` episodes of 100
            steps (one rollout, one update per curve point; recorded in ``sources``) unless
            ``hyperparams`` set it, and then it must divide that; an off-policy learner's
            ``train_freq`` must divide it. At 8, the hyperparameters stand as given (a rollout must
            divide a batch).

    Raises:
        ValueError: naming the argument: an unknown algorithm or env, an action space the
            algorithm cannot act in, unknown or unsupported hyperparameter keys, a learning-rate
            schedule, a rollout that does not fit the protocol's updates, optimizer settings the
            optimizer refuses (:func:`~agents.sb3.hyperparams.check_optimizer`).
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
    policy_kwargs: dict[str, Any] = {}
    for where, layer in layers:
        values.update(layer)
        policy_kwargs.update(_policy_kwargs_of(layer.get("policy_kwargs"), where))  # key by key
    values.pop("policy_kwargs", None)
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
    policy_kwargs = check_optimizer(policy_kwargs)
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


def _policy_kwargs_of(value: Any, where: str) -> dict[str, Any]:
    """One layer's ``policy_kwargs`` (None, a mapping or rl-zoo3's ``"dict(...)"`` string) as a dict."""
    if value is None:
        return {}
    if isinstance(value, str):
        value = parse_zoo_literal(value, f"{where}: policy_kwargs")
    if not isinstance(value, dict):
        raise ValueError(f"{where}: policy_kwargs must be a mapping, got {value!r}")
    return value


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
