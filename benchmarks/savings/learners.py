"""The learners a run can name, and how a run builds them: the shipped BPTT and SB3 agents (with their
pretrained weights and provenance) and custom learners loaded from a file or module."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agents.bptt import (
    PRETRAINED_DIR,
    Args,
    BPTTAgent,
    load_pretrained,
    pretrain,
)
from agents.interface import Agent, ProtocolEnvs, ReachRecord
from benchmarks.savings.metrics import lateral_deviation
from benchmarks.savings.presets import Preset
from benchmarks.savings.reach import reach_quality
from savings_gym.schedule import PAPER_BATCH_SIZE


def shipped_pretrained(cell: str, hidden: int) -> Path:
    """Where the project's pretrained networks of a kind live."""
    return PRETRAINED_DIR / f"{cell}{hidden}.pt"


def _sb3_algorithms() -> list[str]:
    try:
        from agents.sb3.hyperparams import algorithms
    except ImportError:  # without the rl extra
        return []
    return list(algorithms())


SB3_PREFIX = "sb3:"
# competence after pretraining, on the 8 null-field test reaches of the deterministic policy
MAX_ENDPOINT_ERROR = 0.02  # m, mean distance of the hand to the target at the last step
MAX_LATERAL_DEVIATION = 0.01  # m, mean absolute lateral deviation

# Off-policy SB3 algorithms (SAC, TD3, DDPG...) make one gradient step per env step by default, 100
# per protocol batch: SAC took 142 s for one learner on the smoke preset here, and issue 20 saw over 10
# min (benchmarks/RESULTS.md, "The smoke preset's wall time per algorithm"). The smoke preset checks
# plumbing, so there they collect a whole batch and then make this many gradient steps (recorded in
# the config's sb3 sources). 3, not 10: CrossQ's step (1024-wide critics) costs ~0.135 s of CPU here,
# and 10 per batch still took it a minute of CPU.
SMOKE_GRADIENT_STEPS = 3
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def portable_path(source: str | Path, out: str | Path) -> str:
    """A path as a result file records it: relative to the project (``agents/pretrained/gru128.pt``),
    else to the run folder (``<run>/pretrained.pt``), else as given."""
    path = Path(source).resolve()
    for base, prefix in ((PROJECT_ROOT, ""), (Path(out).resolve(), "<run>/")):
        if path.is_relative_to(base):
            return prefix + path.relative_to(base).as_posix()
    return str(source)


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def weights_provenance(source: str | Path | None, out: str | Path) -> dict[str, str | None]:
    """Where a run's starting weights came from, portably (:func:`portable_path`), and the SHA-256 of
    the file's bytes, which says whether two runs started alike."""
    if source is None:
        return {"pretrained_from": None, "pretrained_sha256": None}
    return {"pretrained_from": portable_path(source, out), "pretrained_sha256": file_sha256(source)}


def is_custom_learner(agent: str) -> bool:
    """Whether ``--agent`` names a learner class of one's own (``path/to/file.py:Class`` or ``module:Class``)."""
    return ":" in agent and not agent.startswith(SB3_PREFIX)


def load_learner(agent: str, out: str | Path = ".") -> tuple[type, dict[str, str]]:
    """The class ``--agent`` names, ``path/to/file.py:Class`` (imported from the file) or
    ``package.module:Class`` (imported as a module), and what the result records of it: the module
    (file path relative to the project where it lies inside it, else as given, or the module name),
    the class name and the SHA-256 of the module's source file.

    Raises:
        ValueError: naming ``--agent`` and what is wrong (no such file or module, no such class,
            an import that failed).
    """
    import importlib
    import importlib.util
    import inspect
    import sys

    target, _, name = agent.rpartition(":")
    if not target or not name.isidentifier():
        raise ValueError(f"--agent {agent!r}: expected path/to/file.py:Class or package.module:Class")
    try:
        if target.endswith(".py") or "/" in target or "\\" in target:
            path = Path(target)
            if not path.is_file():
                raise ValueError(f"--agent {agent!r}: no such file {target!r}")
            spec = importlib.util.spec_from_file_location(f"savings_gym_learner_{path.stem}", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # as an import would: dataclasses and pickling look it up
            spec.loader.exec_module(module)
            shown = portable_path(path, out)
        else:
            module = importlib.import_module(target)
            path, shown = Path(inspect.getfile(module)), target
    except ValueError:
        raise
    except Exception as error:  # anything the learner's module raises while importing
        raise ValueError(f"--agent {agent!r}: importing {target!r} failed ({type(error).__name__}: {error})") from error
    cls = getattr(module, name, None)
    if not inspect.isclass(cls):
        raise ValueError(f"--agent {agent!r}: {target!r} has no class {name!r}")
    return cls, {"module": shown, "class": name, "source_sha256": file_sha256(path)}


def custom_agent_factory(
    agent: str, hidden: int | None, networks: int, out: Path, seed: int, device: str, lr: float | None = None
) -> tuple[Callable[[ProtocolEnvs], Agent], dict[str, Any]]:
    """A function envs -> the learner class ``--agent`` names, built as
    ``Class(envs, num_networks=networks, seed=seed, device=device[, hidden=hidden][, lr=lr])``; and the
    ``learner`` block of the config (:func:`load_learner`), whose ``lr`` records the learning rate
    passed: ``lr`` (the preset's, or ``--lr``) when the constructor has an ``lr`` parameter, else None
    (the learner sets its own, and the preset's is not used)."""
    import inspect

    cls, learner = load_learner(agent, out)
    extra = {} if hidden is None else {"hidden": hidden}
    try:
        takes_lr = "lr" in inspect.signature(cls).parameters
    except (TypeError, ValueError):  # a signature Python cannot read: pass nothing it may not take
        takes_lr = False
    learner["lr"] = lr if takes_lr else None
    if learner["lr"] is not None:
        extra["lr"] = lr

    def make(envs: ProtocolEnvs) -> Agent:
        return cls(envs, num_networks=networks, seed=seed, device=device, **extra)

    return make, {"learner": learner}


def bptt_agent_factory(
    cell: str,
    hidden: int,
    networks: int,
    preset: Preset,
    out: Path,
    seed: int,
    device: str,
):
    """A function envs -> BPTTAgent starting from pretrained networks (``envs``: the
    :class:`~agents.interface.ProtocolEnvs` the protocol builds, which carry ``task``).

    Shipped pretrained networks are used when the preset allows and a file with enough networks of
    that kind exists; otherwise the networks are pretrained first (``preset.pretrain_batches``,
    checkpointed in ``out/pretrained.state``, resumable).
    """
    shipped = PRETRAINED_DIR / preset.bptt_pretrained if preset.bptt_pretrained else shipped_pretrained(cell, hidden)
    source = None
    if preset.use_shipped_pretrained and shipped.exists():
        controllers, _ = load_pretrained(shipped)
        if (controllers.cell, controllers.hidden_size) == (cell, hidden) and controllers.num_networks >= networks:
            source = shipped
    if source is None:
        args = Args(
            cell=cell,
            hidden=hidden,
            networks=networks,
            seed=seed,
            batches=preset.pretrain_batches,
            device=device,
            out=str(out / "pretrained.pt"),
            log_every=max(1, min(100, preset.pretrain_batches)),
        )
        print(f"pretraining {networks} {cell}-{hidden} networks for {args.batches} batches (no shipped ones fit)")
        pretrain(args)
        source = Path(args.out)
    _, meta = load_pretrained(source, networks=range(networks))

    def make(envs: ProtocolEnvs) -> BPTTAgent:
        # fresh weights for every agent: the practice control must not train the main run's networks
        controllers, _ = load_pretrained(source, networks=range(networks))
        controllers.freeze_input_and_output()
        # shards: the compiled engine's rollouts over one worker process per torch thread
        # (--threads; 1, the demo's and a sweep cell's, keeps all in this process)
        return BPTTAgent(controllers, envs, optimizer="sgd", lr=preset.lr, seed=seed, device=device, shards="auto")

    return make, {**weights_provenance(source, out), "pretrained_meta": meta}


def sb3_spec(
    agent: str,
    env_id: str,
    hyperparams: Any = None,
    hidden: int | None = None,
    reaches_per_update: int = PAPER_BATCH_SIZE,
):
    """The :class:`agents.sb3.spec.SB3Spec` of ``--agent sb3:<Algo>`` (validated; raises ``ValueError``)."""
    from agents.sb3.spec import make_spec

    return make_spec(agent.removeprefix(SB3_PREFIX), env_id, hyperparams, hidden, reaches_per_update)


def smoke_sized(spec, preset: Preset):
    """``spec`` as a run of ``preset`` trains it: on the smoke preset (also with ``--phases`` or
    ``--lr``), an off-policy learner makes at most :data:`SMOKE_GRADIENT_STEPS` gradient steps per
    batch (per update, at other than 8 reaches per update; :func:`agents.sb3.spec.cap_gradient_steps`),
    and a line says so; else unchanged."""
    from agents.sb3.spec import cap_gradient_steps, gradient_steps_per_batch

    if preset.name.partition(":")[0] != "smoke":
        return spec
    reaches = preset.reaches_per_update
    unit = "batch" if reaches == PAPER_BATCH_SIZE else "update"
    capped = cap_gradient_steps(
        spec, SMOKE_GRADIENT_STEPS, f"preset smoke: {SMOKE_GRADIENT_STEPS} gradient steps per {unit}", reaches
    )
    if capped is not spec:
        print(
            f"smoke preset: sb3:{spec.algo} makes {SMOKE_GRADIENT_STEPS} gradient steps per {unit} after collecting "
            f"it, instead of its hyperparameters' {gradient_steps_per_batch(spec, reaches)}, so that the plumbing "
            "check stays short"
        )
    return capped


def competence(
    record: ReachRecord, max_endpoint_error: float = MAX_ENDPOINT_ERROR, max_deviation: float = MAX_LATERAL_DEVIATION
) -> tuple[np.ndarray, dict[str, Any]]:
    """The pretraining criterion: a learner is competent when, on the 8 null-field test reaches, the
    mean endpoint error (hand at the last step to the target) is below ``max_endpoint_error`` and the
    mean absolute lateral deviation below ``max_deviation`` (both m; defaults 2 cm and 1 cm).

    Returns:
        (K,) booleans, and the figures per learner (cm) with their means.
    """
    error = reach_quality(record.hand_position, record.target)["endpoint_error"]
    deviation = np.abs(lateral_deviation(record.hand_position, record.target[None])).mean(-1)
    met = (error < max_endpoint_error) & (deviation < max_deviation)
    figures = {
        "endpoint_error_cm": round(float(error.mean()) * 100, 3),
        "abs_lateral_deviation_cm": round(float(deviation.mean()) * 100, 3),
        "competent": f"{int(met.sum())}/{len(met)}",
        "endpoint_error_cm_per_learner": [round(float(e) * 100, 3) for e in error],
        "abs_lateral_deviation_cm_per_learner": [round(float(d) * 100, 3) for d in deviation],
        "criterion": {"max_endpoint_error_cm": max_endpoint_error * 100, "max_deviation_cm": max_deviation * 100},
    }
    return met, figures


def sb3_agent_factory(
    spec,
    networks: int,
    preset: Preset,
    out: Path,
    seed: int,
    device: str,
    tensorboard: Path | None = None,
    check_every: int = 50,
) -> tuple[Callable[[ProtocolEnvs], Agent], dict[str, Any]]:
    """A function envs -> :class:`agents.sb3.learner.SB3Agent` starting from pretrained weights
    (``envs``: the :class:`~agents.interface.ProtocolEnvs` the protocol builds).

    Shipped weights are used when the preset allows and a file fits the spec's networks with enough
    learners; otherwise the learners are pretrained in the null field (``out/pretrained.pt``,
    resumable): first, where the policy can, by imitating the shipped GRU-128 networks for
    ``preset.imitation_steps``, then by RL until :func:`competence` holds for all or
    ``preset.pretrain_batches`` are spent. A preset with ``pretrain_batches=0`` and no shipped
    weights starts from scratch.
    """
    from agents.sb3.learner import SB3Agent
    from agents.sb3.pretraining import DEFAULT_TEACHER, PretrainArgs, load_pretrained, pretrain, shipped_pretrained
    from agents.sb3.spec import fits

    shipped = shipped_pretrained(spec)
    source = None
    if preset.use_shipped_pretrained and shipped.exists() and fits(load_pretrained(shipped), spec, networks):
        source = shipped
    if source is None and preset.pretrain_batches > 0:
        args = PretrainArgs(
            batches=preset.pretrain_batches,
            networks=networks,
            seed=seed,
            check_every=max(1, min(check_every, preset.pretrain_batches)),
            device=device,
            imitate=str(DEFAULT_TEACHER) if preset.imitation_steps > 0 and spec.imitates else None,
            imitation_steps=preset.imitation_steps,
        )
        first = f", first imitating {DEFAULT_TEACHER.name} for {args.imitation_steps} steps" if args.imitate else ""
        print(
            f"pretraining {networks} sb3:{spec.algo} learners in the null field{first}, then RL for up to "
            f"{args.batches} batches (no shipped ones fit)"
        )
        source = out / "pretrained.pt"
        pretrain(spec, args, source, competent=competence)
    blob = load_pretrained(source) if source is not None else None

    def make(envs: ProtocolEnvs) -> SB3Agent:
        return SB3Agent(spec, envs, networks, seed=seed, device=device, pretrained=blob, tensorboard_log=tensorboard)

    return make, {**weights_provenance(source, out), "pretrained_meta": (blob or {}).get("meta", {})}
