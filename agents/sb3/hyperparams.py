"""Hyperparameters of the SB3 learners: algorithms by name and rl-zoo3's yaml format.

The shipped files live in ``agents/hyperparams/`` (one per algorithm, by rl-zoo3's name for it); a run
layers a preset's values, the file's and the command line's (:func:`hyperparam_layers`). The keys the
adapter understands beside an algorithm's own arguments, and those it refuses, are named here."""

from __future__ import annotations

import ast
import inspect
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

try:
    import sb3_contrib
    import stable_baselines3
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
    from stable_baselines3.common.policies import ActorCriticPolicy
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError('agents.sb3.hyperparams needs SB3 and sb3-contrib: pip install "savings-gym[rl]"') from error

HYPERPARAMS_DIR = Path(__file__).parents[1] / "hyperparams"


PROTOCOL_ENV_IDS = ("ArmCurlField-v0", "ArmCurlFieldCued-v0")
"""The envs a savings run can use (``ArmReach-v0`` is for pretraining)."""


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


_ACTIVATIONS = ("ReLU", "Tanh", "ELU", "LeakyReLU", "GELU", "SiLU", "Sigmoid", "Softplus", "Identity")


OPTIMIZERS = ("Adam", "AdamW", "Adamax", "NAdam", "RAdam", "SGD", "RMSprop", "Adagrad", "Adadelta", "ASGD", "Rprop")
"""The ``torch.optim`` classes a policy's ``optimizer_class`` may name (``"optim.SGD"``; SB3's default is Adam)."""


OPTIMIZER_KEYS = ("optimizer_class", "optimizer_kwargs")
"""The ``policy_kwargs`` that set how a policy learns, not what it is: pretrained weights need not match
them (:meth:`agents.sb3.spec.SB3Spec.architecture`)."""


def parse_zoo_literal(text: str, where: str) -> Any:
    """Reads one of rl-zoo3's Python-literal strings (``"dict(net_arch=[64], activation_fn=nn.ReLU)"``)
    without ``eval``: literals, ``dict(...)`` calls, ``nn.<activation>`` and ``th.optim.<optimizer>``
    names only.

    Activation and optimizer names are kept as strings (``"nn.ReLU"``, ``"optim.SGD"``) so the result
    stays JSON-able.

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
        module = ast.unparse(node.value) if isinstance(node, ast.Attribute) else None
        if module in ("nn", "th.nn", "torch.nn") and node.attr in _ACTIVATIONS:
            return f"nn.{node.attr}"
        if module in ("optim", "th.optim", "torch.optim") and node.attr in OPTIMIZERS:
            return f"optim.{node.attr}"
        raise ValueError(
            f"{where}: {text!r} is not a literal the adapter can read (dicts, lists, numbers, strings, "
            f"nn.<activation> among {list(_ACTIVATIONS)} and th.optim.<optimizer> among {list(OPTIMIZERS)}); "
            "write it as a YAML mapping instead"
        )

    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as error:
        raise ValueError(f"{where}: {text!r} is not valid Python literal syntax ({error.msg})") from error
    return convert(tree.body)


def _policy_kwargs_objects(policy_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-able policy kwargs -> what SB3 takes (activation and optimizer names become torch classes)."""
    out = dict(policy_kwargs)
    if isinstance(out.get("activation_fn"), str):
        out["activation_fn"] = getattr(torch.nn, out["activation_fn"].removeprefix("nn."))
    if isinstance(out.get("optimizer_class"), str):
        out["optimizer_class"] = _optimizer_class(out["optimizer_class"])
    return out


def _optimizer_class(name: str) -> type[torch.optim.Optimizer]:
    return getattr(torch.optim, name.rsplit(".", 1)[-1])


def check_optimizer(policy_kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``policy_kwargs`` with its optimizer settings checked: ``optimizer_class`` a name among
    :data:`OPTIMIZERS` (``"SGD"``, ``"optim.SGD"``, ``"th.optim.SGD"`` or ``"torch.optim.SGD"``; kept
    as ``"optim.SGD"``), ``optimizer_kwargs`` a mapping of that optimizer's arguments (Adam's when no
    class is named, SB3's default) other than the learning rate, which ``learning_rate`` sets, with
    ``eps`` a positive number and values the optimizer takes.

    Raises:
        ValueError: naming ``hyperparams policy_kwargs`` and the bad key or value.
    """
    out = dict(policy_kwargs)
    if "optimizer_class" in out:
        name = out["optimizer_class"]
        short = str(name).removeprefix("torch.").removeprefix("th.").removeprefix("optim.")
        if not isinstance(name, str) or short not in OPTIMIZERS:
            raise ValueError(
                f"hyperparams policy_kwargs optimizer_class={name!r}: use one of {[f'optim.{n}' for n in OPTIMIZERS]}"
            )
        out["optimizer_class"] = f"optim.{short}"
    kwargs = out.get("optimizer_kwargs")
    if kwargs is None:
        return out
    optimizer = _optimizer_class(out.get("optimizer_class", "optim.Adam"))
    if not isinstance(kwargs, Mapping):
        raise ValueError(f"hyperparams policy_kwargs optimizer_kwargs must be a mapping, got {kwargs!r}")
    if "lr" in kwargs:
        raise ValueError("hyperparams policy_kwargs optimizer_kwargs: lr is set by learning_rate; give that instead")
    valid = sorted(set(inspect.signature(optimizer.__init__).parameters) - {"self", "params", "lr"})
    unknown = sorted(set(map(str, kwargs)) - set(valid))
    if unknown:
        raise ValueError(
            f"hyperparams policy_kwargs optimizer_kwargs: unknown key(s) {unknown} for "
            f"torch.optim.{optimizer.__name__}; valid keys are {valid}"
        )
    eps = kwargs.get("eps")
    if "eps" in kwargs and (isinstance(eps, bool) or not isinstance(eps, int | float) or not 0 < eps < math.inf):
        raise ValueError(
            f"hyperparams policy_kwargs optimizer_kwargs eps={eps!r}: must be a positive number (in YAML, write "
            "1.0e-3 or !!float 1e-3)"
        )
    try:  # the optimizer checks its other values itself: let it, on one parameter
        optimizer([torch.nn.Parameter(torch.zeros(1))], lr=1e-3, **kwargs)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"hyperparams policy_kwargs optimizer_kwargs={dict(kwargs)!r}: torch.optim.{optimizer.__name__} refuses "
            f"them ({error})"
        ) from error
    out["optimizer_kwargs"] = dict(kwargs)
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


HyperparamsLike = Mapping[str, Any] | str | Path


def hyperparam_layers(hyperparams: HyperparamsLike | Sequence[HyperparamsLike] | None) -> list[HyperparamsLike]:
    """Hyperparameters as :func:`make_spec` takes them (None, a dict, a yaml path, or a list of
    those applied in order) as a list of layers, so that callers can add their own on top."""
    if hyperparams is None:
        return []
    if isinstance(hyperparams, Mapping | str | Path):
        return [hyperparams]
    return list(hyperparams)


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


PRETRAIN_ENV_ID = "ArmReach-v0"
