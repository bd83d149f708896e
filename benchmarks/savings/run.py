"""``savings-gym run``, ``savings-gym pretrain`` and ``savings-gym demo``: build a learner by name,
run the protocol, report.

Learners: ``gru`` (the paper's), ``lstm``, ``rnn``, trained by BPTT (:mod:`agents.bptt`), and
``sb3:<Algo>``, any Stable-Baselines3 or sb3-contrib algorithm (:mod:`agents.sb3.learner`), e.g.
``sb3:RecurrentPPO`` or ``sb3:PPO``, optionally on ``ArmCurlFieldCued-v0`` (told the field).

SB3 learners start from pretrained weights: the shipped ones (``agents/pretrained/<algo>[-cued].pt``)
when the preset allows and they fit, else they are pretrained in the null field first until they
are competent (:func:`competence`) or the preset's budget runs out. They take their learning
rate and everything else from their hyperparameters (``agents/hyperparams/*.yml``); a preset's
``lr`` is the BPTT networks' SGD rate, and a learner of one's own gets it as ``lr=`` when its
constructor takes an ``lr`` (recorded as ``config.learner.lr``; None: not passed, not used).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

import savings_gym
from agents.bptt import (
    PRETRAINED_DIR,
    Args,
    BPTTAgent,
    bptt_update_refusal,
    derived_seed,
    join_pretrained,
    load_pretrained,
    pretrain,
)
from agents.controllers import CELLS
from agents.interface import Agent, ProtocolEnvs, ReachRecord
from benchmarks.savings.metrics import bootstrap_ci, lateral_deviation, paradigm_metrics, reach_quality
from benchmarks.savings.presets import PARADIGM_PHASES, PHASES, Preset, check_reaches_per_update, get_preset
from benchmarks.savings.protocol import evaluate_then_train, protocol_schedule, run_protocol
from savings_gym.envs import task_params
from savings_gym.schedule import PAPER_BATCH_SIZE

BPTT_AGENTS = tuple(CELLS)
SB3_PREFIX = "sb3:"
PROTOCOL_ENV_IDS = ("ArmCurlField-v0", "ArmCurlFieldCued-v0")
PARADIGM_IDS = savings_gym.PARADIGM_IDS
"""The paradigms beyond A-B-A (issue 21): every learner runs them
(:func:`benchmarks.savings.protocol.protocol_schedule`)."""
DEFAULT_HIDDEN = 128
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


# where ``savings-gym pretrain`` writes when --out is not given: never over the shipped weights
PRETRAIN_OUT = Path("runs/pretrained")


def shipped_pretrained(cell: str, hidden: int) -> Path:
    """Where the project's pretrained networks of a kind live."""
    return PRETRAINED_DIR / f"{cell}{hidden}.pt"


def _sb3_algorithms() -> list[str]:
    try:
        from agents.sb3.hyperparams import algorithms
    except ImportError:  # without the rl extra
        return []
    return list(algorithms())


def check_run_arguments(
    agent: str,
    hidden: int | None,
    networks: int,
    out: str | Path,
    env_id: str = "ArmCurlField-v0",
    hyperparams: Any = None,
    reaches_per_update: int = PAPER_BATCH_SIZE,
) -> Path:
    """Validates the command line before any work starts (for SB3 agents: the algorithm, the env and
    the hyperparameters too, see :func:`agents.sb3.spec.make_spec`; BPTT agents take only 8
    reaches per update).

    Raises:
        ValueError: naming the argument and what was expected.
    """
    if agent.startswith(SB3_PREFIX):
        algos = _sb3_algorithms()
        if agent.removeprefix(SB3_PREFIX) not in algos:
            raise ValueError(
                f"--agent must be one of {list(BPTT_AGENTS)} or sb3:<Algo> with <Algo> one of {algos} "
                f"(SB3 agents need the rl extra), got {agent!r}"
            )
        if env_id not in PROTOCOL_ENV_IDS + PARADIGM_IDS:
            raise ValueError(f"--env must be one of {list(PROTOCOL_ENV_IDS + PARADIGM_IDS)}, got {env_id!r}")
        sb3_spec(agent, env_id, hyperparams, hidden, reaches_per_update)
    elif is_custom_learner(agent):
        if env_id not in PROTOCOL_ENV_IDS + PARADIGM_IDS:
            raise ValueError(f"--env must be one of {list(PROTOCOL_ENV_IDS + PARADIGM_IDS)}, got {env_id!r}")
        if hyperparams:
            raise ValueError("--hyperparams applies to sb3:<Algo> agents; a learner of your own takes its own")
    else:
        if agent not in BPTT_AGENTS:
            raise ValueError(
                f"--agent must be one of {list(BPTT_AGENTS)}, sb3:<Algo> (e.g. sb3:RecurrentPPO) or a learner of "
                f"your own, path/to/file.py:Class or package.module:Class, got {agent!r}"
            )
        if env_id not in ("ArmCurlField-v0", *PARADIGM_IDS):
            raise ValueError(
                f"--env {env_id!r}: BPTT agents run in ArmCurlField-v0 only, besides the paradigms "
                f"{list(PARADIGM_IDS)} (the cued env: sb3:<Algo>)"
            )
        if hyperparams:
            raise ValueError("--hyperparams applies to sb3:<Algo> agents; BPTT agents take --hidden")
        if reaches_per_update != PAPER_BATCH_SIZE:
            raise ValueError(bptt_update_refusal(reaches_per_update))
    if hidden is not None and hidden < 1:
        raise ValueError(f"--hidden must be >= 1, got {hidden}")
    if networks < 1:
        raise ValueError(f"--networks must be >= 1, got {networks}")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise ValueError(f"--out {str(out)!r} is not a writable folder ({error.strerror})") from error
    return out


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
        return BPTTAgent(controllers, envs, optimizer="sgd", lr=preset.lr, seed=seed, device=device)

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


def tensorboard_folder(folder: str | Path | None) -> Path | None:
    """``folder`` when TensorBoard scalars can be written; None, with a warning, without tensorboard."""
    import importlib.util
    import warnings

    if folder is None:
        return None
    if importlib.util.find_spec("tensorboard") is None:
        warnings.warn(
            f"tensorboard is not installed: no scalars go to {folder} (pip install tensorboard)", stacklevel=2
        )
        return None
    return Path(folder)


class TensorBoardScalars:
    """An agent that also writes, per learner, what the experimenter sees at every evaluation:
    ``eval/lateral_deviation_cm`` (mean over the 8 test reaches), ``schedule/field_gain`` and
    ``schedule/phase`` (index in the schedule), against training episodes. The learner never sees them.

    Args:
        agent: any :class:`agents.interface.Agent`.
        envs: the :class:`~agents.interface.ProtocolEnvs` it trains in.
        folder: one subfolder ``learner_<k>`` per learner (where SB3 agents write their own scalars).
    """

    def __init__(self, agent: Agent, envs: ProtocolEnvs, folder: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.agent, self.envs = agent, envs
        self.num_networks = agent.num_networks
        self.writers = [SummaryWriter(str(folder / f"learner_{k}")) for k in range(agent.num_networks)]

    def train(self, episodes: int) -> None:
        self.agent.train(episodes)

    def evaluate(self, field_gain: float) -> ReachRecord:
        return self.agent.evaluate(field_gain)

    def evaluate_then_train(self, field_gain: float, episodes: int = PAPER_BATCH_SIZE) -> ReachRecord:
        """The protocol's step (:func:`benchmarks.savings.protocol.evaluate_then_train`), its test reaches logged;
        other evaluations (the competence gate's) are not points of the learning curve and are not logged."""
        step = self.envs.episodes_completed
        record = evaluate_then_train(self.agent, field_gain, episodes=episodes)
        self._log(record, step)
        return record

    def _log(self, record: ReachRecord, step: int) -> None:
        schedule = self.envs.schedule
        phase = schedule.phase_at(step)
        deviation = lateral_deviation(record.hand_position, record.target[None]).mean(-1)
        for writer, value in zip(self.writers, deviation, strict=True):
            writer.add_scalar("eval/lateral_deviation_cm", float(value) * 100, step)
            writer.add_scalar("schedule/field_gain", phase.field_gain, step)
            writer.add_scalar("schedule/phase", schedule.names.index(phase.name), step)
            writer.flush()

    def state_dict(self) -> dict[str, Any]:
        return self.agent.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.agent.load_state_dict(state)

    def __getattr__(self, name: str) -> Any:
        """The wrapped agent's optional methods (:class:`agents.interface.Resettable`), where it has them."""
        if name in ("learner_state", "load_learner_state") and "agent" in self.__dict__:
            return getattr(self.agent, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


def _logged(make: Callable[[ProtocolEnvs], Agent], folder: Path) -> Callable[[ProtocolEnvs], Agent]:
    return lambda envs: TensorBoardScalars(make(envs), envs, folder)


def run(
    agent: str,
    hidden: int | None,
    networks: int,
    preset: str | Preset,
    out: str | Path,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    checkpoint_seconds: float = 120.0,
    env_id: str = "ArmCurlField-v0",
    hyperparams: Mapping[str, Any] | str | Path | Sequence[Mapping[str, Any] | str | Path] | None = None,
    tensorboard: str | Path | None = None,
    task: Mapping[str, Any] | None = None,
    phases: Mapping[str, int] | None = None,
    lr: float | None = None,
    practice_control: bool = False,
    command: str | None = None,
    reaches_per_update: int | None = None,
    reset_control: bool = False,
) -> dict:
    """Runs the protocol for a learner and returns the result dict (also written to ``out``).

    Args:
        agent: ``gru``, ``lstm``, ``rnn`` (BPTT), ``sb3:<Algo>``, or a learner of your own,
            ``path/to/file.py:Class`` or ``package.module:Class`` (:func:`custom_agent_factory`).
        hidden: recurrent units (BPTT: default 128; SB3: the LSTM of a recurrent policy, default
            from the hyperparameters).
        networks: independent learners.
        preset: a preset name or :class:`~benchmarks.savings.presets.Preset`.
        out: output folder (a checkpoint there is resumed).
        env_id: ``ArmCurlField-v0``, or ``ArmCurlFieldCued-v0`` (SB3 only: told the field).
        hyperparams: SB3 overrides (see :func:`agents.sb3.spec.make_spec`).
        tensorboard: folder for TensorBoard scalars (skipped with a warning without tensorboard).
        task: task constants replacing the env id's defaults, e.g. ``{"test_go_time": 0.44}``
            (:class:`savings_gym.task.TaskParams`; all of them are recorded in the result).
        phases: batch counts replacing the preset's, e.g. ``{"NF1": 240}`` (the preset is then
            renamed, e.g. ``quick:NF1=240``, and its results are not for the board); for a paradigm
            id also its own phases (``FFB``, ``EC``: :func:`benchmarks.savings.protocol.protocol_schedule`).
        lr: an SGD learning rate replacing the preset's (renamed likewise, e.g. ``quick:lr=0.005``);
            a learner of one's own gets the preset's rate, or this, if its constructor takes ``lr``.
        practice_control: also run the practice control (:func:`benchmarks.savings.protocol.run_protocol`).
        reset_control: also run the reset control: the learners of NF1's start through FF2 (``FFR``;
            :func:`benchmarks.savings.protocol.run_protocol`).
        command: the command line that made the run, recorded in the result (``savings-gym run ...``).
        reaches_per_update: training reaches per learner per update (curve point) replacing the
            preset's (:attr:`~benchmarks.savings.presets.Preset.reaches_per_update`; renamed likewise, e.g.
            ``quick:reaches_per_update=64``): SB3 learners and learners of your own; BPTT agents
            take only 8.
    """
    preset_obj = preset if isinstance(preset, Preset) else get_preset(preset)
    phases = dict(phases or {})
    own = {name: phases.pop(name) for name in PARADIGM_PHASES if name in phases}
    preset_obj = preset_obj.with_changes(phases, lr, reaches_per_update)
    reaches = preset_obj.reaches_per_update
    if own and env_id not in PARADIGM_IDS:
        raise ValueError(f"--phases {sorted(own)}: {env_id} has no such phase; its phases are {list(PHASES)}")
    schedule = protocol_schedule(env_id, preset_obj, own) if env_id in PARADIGM_IDS else None
    if schedule is not None:
        check_reaches_per_update(reaches, schedule, f"{env_id} at preset {preset_obj.name!r}")
    task = dict(task or {})
    try:  # validates the overrides before any work
        task_constants = asdict(task_params(env_id, **task))
    except (TypeError, ValueError) as error:
        raise ValueError(f"--task: {error}") from error
    if agent.startswith(SB3_PREFIX):  # the preset's own settings for this algorithm, under the command line's
        hyperparams = preset_obj.sb3_overrides(agent.removeprefix(SB3_PREFIX), hyperparams)
    out = check_run_arguments(agent, hidden, networks, out, env_id, hyperparams, reaches)
    board = tensorboard_folder(tensorboard)
    if agent.startswith(SB3_PREFIX):
        spec = smoke_sized(sb3_spec(agent, env_id, hyperparams, hidden, reaches), preset_obj)
        make, provenance = sb3_agent_factory(spec, networks, preset_obj, out, seed, device, board)
        hidden = spec.hidden
        details = {"sb3": spec.as_config()}
    elif is_custom_learner(agent):
        make, details = custom_agent_factory(agent, hidden, networks, out, seed, device, preset_obj.lr)
        agent = f"{details['learner']['module']}:{details['learner']['class']}"
        provenance = weights_provenance(None, out)
    else:
        hidden = DEFAULT_HIDDEN if hidden is None else hidden
        make, provenance = bptt_agent_factory(agent, hidden, networks, preset_obj, out, seed, device)
        details = {}
    config = {
        "agent": agent,
        "hidden": hidden,
        "networks": networks,
        "seed": seed,
        # the leaderboard needs the seeds: learner n's random streams derive from derived_seed(seed, n)
        "seeds": [derived_seed(seed, n) for n in range(networks)],
        "device": device,
        "env_id": env_id,
        # what the curves were measured under: delays, noise, test go time, cost weights (SPEC.md)
        "task": task_constants,
        **details,
        **provenance,
    }
    if schedule is not None:  # a paradigm: its hidden schedule, as the envs ran it
        config["schedule"] = schedule.to_list()
    if board is not None:
        make = _logged(make, board)
    return run_protocol(
        make,
        preset_obj,
        out,
        config,
        env_id=env_id,
        task=task,
        progress=progress,
        checkpoint_seconds=checkpoint_seconds,
        practice_control=practice_control,
        command=command,
        reset_control=reset_control,
        schedule=schedule,
    )


def pretrain_agent(
    agent: str,
    networks: int,
    batches: int,
    out: str | Path | None = None,
    *,
    hidden: int | None = None,
    env_id: str = "ArmCurlField-v0",
    hyperparams: Any = None,
    seed: int = 0,
    device: str = "cpu",
    check_every: int = 50,
    max_endpoint_error: float = MAX_ENDPOINT_ERROR,
    max_deviation: float = MAX_LATERAL_DEVIATION,
    imitate: str | Path | None = None,
    imitation_steps: int = 1500,
    first_network: int = 0,
    join: Sequence[str | Path] | None = None,
) -> Path:
    """``savings-gym pretrain``: pretrains learners in the null field and writes their weights.

    SB3 agents train until every learner meets :func:`competence` (checked every ``check_every``
    batches) or ``batches`` are spent, and are written (weights and normalisation statistics only) to
    ``out``, by default :data:`PRETRAIN_OUT`/<the shipped file's name> (the shipped weights in
    agents/pretrained/ are replaced only when ``out`` names them); with ``imitate`` (a file of
    BPTT networks) they first distil those networks (:func:`agents.sb3.imitation.imitate`). BPTT
    agents run :func:`agents.bptt.pretrain` for ``batches``, as networks ``first_network`` onwards of
    the run (a long run in pieces), or with ``join`` write the pieces' files joined into one
    (:func:`agents.bptt.join_pretrained`) instead of training. Rerunning the same command resumes.

    Returns:
        The written file.
    """
    if batches < 1:
        raise ValueError(f"--batches must be >= 1, got {batches}")
    if isinstance(first_network, bool) or not isinstance(first_network, int) or first_network < 0:
        raise ValueError(f"--first-network must be an integer >= 0, got {first_network!r}")
    if agent.startswith(SB3_PREFIX) and (first_network or join):
        raise ValueError("--first-network and --join are for BPTT agents (gru, lstm, rnn)")
    if agent.startswith(SB3_PREFIX):
        from agents.sb3.pretraining import PretrainArgs
        from agents.sb3.pretraining import pretrain as pretrain_sb3
        from agents.sb3.pretraining import shipped_pretrained as shipped_sb3

        spec = sb3_spec(agent, env_id, hyperparams, hidden)
        target = Path(out) if out is not None else PRETRAIN_OUT / shipped_sb3(spec).name
        check_run_arguments(agent, hidden, networks, target.parent, env_id, hyperparams)
        if imitate is not None and not Path(imitate).is_file():
            raise ValueError(f"--imitate must be a file of BPTT networks, got {str(imitate)!r} (no such file)")
        if imitate is not None and not spec.imitates:
            raise ValueError(
                f"--imitate needs an actor-critic policy with a state value (PPO, A2C, TRPO, RecurrentPPO); "
                f"{agent} ({spec.policy}) has none"
            )
        if isinstance(imitation_steps, bool) or not isinstance(imitation_steps, int) or imitation_steps < 0:
            raise ValueError(f"--imitation-steps must be a non-negative integer, got {imitation_steps!r}")
        args = PretrainArgs(
            batches,
            networks,
            seed,
            max(1, min(check_every, batches)),
            device,
            imitate=None if imitate is None else str(imitate),
            imitation_steps=imitation_steps,
        )
        meta = pretrain_sb3(spec, args, target, lambda r: competence(r, max_endpoint_error, max_deviation))
        verdict = "every learner is competent" if meta["all_competent"] else "NOT every learner is competent"
        print(f"wrote {target} after {meta['batches_done']} batches: {verdict} ({meta['competence']['competent']})")
        return target
    if imitate is not None:
        raise ValueError("--imitate is for SB3 agents (sb3:<Algo>); BPTT networks pretrain by themselves")
    hidden = DEFAULT_HIDDEN if hidden is None else hidden
    target = Path(out) if out is not None else PRETRAIN_OUT / shipped_pretrained(agent, hidden).name
    check_run_arguments(agent, hidden, networks, target.parent, env_id, hyperparams)
    if join:
        missing = [str(path) for path in join if not Path(path).is_file()]
        if missing:
            raise ValueError(f"--join must name pretrained files, got {missing} (no such file)")
        joined = join_pretrained(join, target)
        print(f"wrote {target}: {joined.num_networks} networks joined from {len(join)} files")
        return target
    pretrain(
        Args(
            cell=agent,
            hidden=hidden,
            networks=networks,
            seed=seed,
            first_network=first_network,
            batches=batches,
            device=device,
            out=str(target),
        )
    )
    return target


def summary_table(result: dict) -> str:
    """The savings table printed at the end of a run: every measure against FF1 and, when the run had
    the practice control, against its field phase FFC (and the practice effect, FFC against FF1); with
    the reset control, against its FFR (and FFR against FF1, no savings by construction)."""
    if "paradigm_metrics" in result:
        return paradigm_summary(result)
    metrics = result["metrics"]
    m, p = metrics["aggregate"], metrics["per_network"]

    def ci(d: dict, scale: float = 1.0, fmt: str = "{:+.3f}") -> str:
        if not math.isfinite(d["estimate"]):
            return "-"
        return f"{fmt.format(d['estimate'] * scale)} [{fmt.format(d['low'] * scale)}, {fmt.format(d['high'] * scale)}]"

    def count(fraction: float, n: int) -> str:  # "k of n" (never a percentage of one network)
        return f"{round(fraction * n)} of {n}" if n and math.isfinite(fraction) else "0 of 0"

    def measures(fit_free: dict, index: dict, fraction: float, n_fits: int) -> list[str]:
        agg = fit_free["aggregate"]
        early, half, area = (agg[k] for k in ("early_reduction_difference", "half_error_difference", "area_ratio"))
        return [
            f"{ci(early)} ({count(early['fraction_with_savings'], early['networks'])} > 0)",
            f"{ci(half, fmt='{:+.1f}')}",
            f"{ci(area, fmt='{:.3f}')}",
            f"{ci(index)} ({count(fraction, n_fits)} fits > 0)",
        ]

    reaches = result.get("updates", {}).get("reaches_per_update", PAPER_BATCH_SIZE)
    # a curve point per batch of 8 reaches, or per update of more (``--reaches-per-update``)
    unit, one = ("batches", "batch") if reaches == PAPER_BATCH_SIZE else (f"updates of {reaches} reaches", "update")
    labels = [
        f"early error reduction, first {metrics['fit_free']['early_batches']} {unit} (later - earlier)",
        f"{unit.split()[0]} to half the first error (earlier - later)",
        "area under the curve / first error (later / earlier)",
        "savings index log(r_later / r_earlier), fitted",
    ]
    columns = [
        (
            "FF2 vs FF1",
            measures(metrics["fit_free"], m["savings_index"], m["fraction_with_savings"], m["networks_with_fit"]),
        )
    ]
    control = metrics.get("practice_control")
    for block, (title, versus, own, phase) in {
        "practice_control": ("control FFC", "control", "practice", "FFC"),
        "reset_control": ("reset FFR", "reset", "reset", "FFR"),
    }.items():
        if block in metrics:
            agg = metrics[block]["aggregate"]
            for heading, fit_free, index in (
                (f"FF2 vs {title}", metrics[block][f"fit_free_vs_{versus}"], agg[f"savings_index_vs_{versus}"]),
                (f"{own}: {phase} vs FF1", metrics[block][f"fit_free_{own}"], agg[f"{own}_index"]),
            ):
                columns.append((heading, measures(fit_free, index, index["fraction_above_zero"], index["networks"])))
    width = max(map(len, labels))
    cell = max(len(v) for _, values in columns for v in values)
    lines = []
    gate = result.get("competence")
    if gate is not None:
        quality = gate["per_network"]
        lines.append(
            f"competence gate: {sum(quality['competent'])} of {len(quality['competent'])} networks reach (mean "
            f"endpoint error < {gate['criterion']['max_endpoint_error_m'] * 100:.0f} cm on the null-field test reaches "
            f"before FF1; per network {', '.join(f'{e * 100:.1f}' for e in quality['endpoint_error'])} cm); "
            "the others are left out of every measure below"
        )
    lines += [
        f"savings over {m['networks']} networks, mean and 95% bootstrap CI (positive or below 1: the later faster):",
        ("  " + " " * width + "  " + "  ".join(title.ljust(cell) for title, _ in columns)).rstrip(),
    ]
    for i, label in enumerate(labels):
        row = "  " + label.ljust(width) + "  " + "  ".join(values[i].ljust(cell) for _, values in columns)
        lines.append(row.rstrip())
    cm = "{:.2f}"
    first = (
        f"  first-{one} error (cm): FF1 {ci(m['first_error_FF1'], 100, cm)}, FF2 {ci(m['first_error_FF2'], 100, cm)}"
    )
    if control:
        first += f", FFC {ci(control['aggregate']['first_error_FFC'], 100, cm)}"
    if "reset_control" in metrics:
        first += f", FFR {ci(metrics['reset_control']['aggregate']['first_error_FFR'], 100, cm)}"
    smaller = count(m["fraction_smaller_first_error"], m["networks"])
    lines.append(first + f"; smaller in FF2 than FF1 for {smaller}")
    lines.append(
        f"  paired t-test on log rates FF2 vs FF1: t = {m['rate_ttest']['t']:.2f}, p = {m['rate_ttest']['p']:.3g}; "
        f"sign-flip test on the median p = {m['rate_ttest']['sign_flip_p']:.3g}"
    )
    rates = [
        f"{r1:.4f} -> {r2:.4f}" if math.isfinite(r1) and math.isfinite(r2) else "no fit"
        for r1, r2 in zip(p["rate_FF1"], p["rate_FF2"], strict=True)
    ]
    lines.append(f"  fitted rate per network (per {metrics['window']}-{one} window), FF1 -> FF2: " + ", ".join(rates))
    return "\n".join(lines)


def paradigm_summary(result: dict) -> str:
    """The table printed at the end of a paradigm run (:func:`benchmarks.savings.metrics.paradigm_metrics`):
    means and 95% bootstrap CIs over the competent networks."""
    metrics = result["paradigm_metrics"]

    def ci(d: dict, scale: float = 1.0, fmt: str = "{:+.3f}") -> str:
        if not math.isfinite(d["estimate"]):
            return "-"
        return f"{fmt.format(d['estimate'] * scale)} [{fmt.format(d['low'] * scale)}, {fmt.format(d['high'] * scale)}]"

    lines = [f"{result['config'].get('env_id')}: {metrics['networks']} networks, mean and 95% bootstrap CI"]
    if "interference" in metrics:
        block = metrics["interference"]
        fit_free = block["fit_free"]["aggregate"]
        lines += [
            "  interference, FFB (-A) against FF1 (A) (below 0 / above 1: -A learnt slower):",
            f"    rate index log(r_FFB / r_FF1), fitted: {ci(block['aggregate']['savings_index'])}",
            f"    area under the curve / first error, FFB / FF1: {ci(fit_free['area_ratio'], fmt='{:.3f}')}",
            f"    first-batch error (cm): FF1 {ci(block['aggregate']['first_error_FF1'], 100, '{:.2f}')}, "
            f"FFB {ci(block['aggregate']['first_error_FF2'], 100, '{:.2f}')}",
        ]
    if "after_effect" in metrics:
        lines.append(
            f"  after-effect, NF2's first window (cm, oriented as FF1): {ci(metrics['after_effect']['aggregate'], 100)}"
        )
    if "spontaneous_recovery" in metrics:
        block = metrics["spontaneous_recovery"]
        lines.append(f"  adaptation index in {block['phase']} (1: field A fully compensated):")
        for name in ("start", "peak", "rebound"):
            lines.append(f"    {name}: {ci(block[name]['aggregate'])}")
        if "end_of_FFB" in block:
            lines.append(f"    FFB's last window (cm, oriented as FF1): {ci(block['end_of_FFB']['aggregate'], 100)}")
    if "relearning" in metrics:
        block = metrics["relearning"]
        lines.append(
            f"  FF2 relearning: rate {ci(block['rate_FF2']['aggregate'], fmt='{:.4f}')} per window, first error "
            f"{ci(block['first_error_FF2']['aggregate'], 100, '{:.2f}')} cm, area / first error "
            f"{ci(block['area_FF2']['aggregate'], fmt='{:.3f}')}"
        )
    return "\n".join(lines)


def gradual_comparison(gradual: dict, abrupt: dict) -> dict:
    """The gradual paradigm against its abrupt version: :func:`benchmarks.savings.metrics.paradigm_metrics`
    of both runs' learning curves (result dicts of ``ArmCurlFieldGradual-v0`` and ``ArmCurlField-v0``
    with the same preset, networks and seed) and, per network, gradual minus abrupt of the
    after-effect (m, oriented as the field's errors), the FF2 rate and the FF2 area, with bootstrap
    CIs (the same networks start both runs, so the differences are paired).

    Raises:
        ValueError: for runs of other ids or of different phase lengths or networks.
    """
    ids = (gradual["config"].get("env_id"), abrupt["config"].get("env_id"))
    if ids != ("ArmCurlFieldGradual-v0", "ArmCurlField-v0"):
        raise ValueError(f"expected a ArmCurlFieldGradual-v0 run and an ArmCurlField-v0 run, got {ids}")
    shapes = [{p: np.shape(c) for p, c in r["learning_curves"].items() if p in PHASES} for r in (gradual, abrupt)]
    if shapes[0] != shapes[1]:
        raise ValueError(f"the runs' phases differ in batches or networks: {shapes[0]} and {shapes[1]}")
    both = [paradigm_metrics({p: np.asarray(c) for p, c in r["learning_curves"].items()}) for r in (gradual, abrupt)]
    out: dict[str, Any] = {"gradual": both[0], "abrupt": both[1]}
    for name, path in (
        ("after_effect", ("after_effect",)),
        ("rate_FF2", ("relearning", "rate_FF2")),
        ("area_FF2", ("relearning", "area_FF2")),
    ):
        values, sides = [], []
        for metrics in both:
            for key in path:
                metrics = metrics.get(key, {})
            values.append(np.asarray(metrics.get("per_network", []), np.float64))
            sides.append(metrics.get("aggregate"))
        if len(values[0]) and len(values[0]) == len(values[1]):
            difference = values[0] - values[1]
            out[f"{name}_difference"] = {
                "per_network": difference.tolist(),
                "aggregate": asdict(bootstrap_ci(difference)),
                "gradual": sides[0],  # each run's own aggregate, beside the paired difference
                "abrupt": sides[1],
            }
    return out


def with_preset(preset: Preset, **changes) -> Preset:
    """A modified copy of a preset (for measurement sweeps)."""
    return replace(preset, **changes)
