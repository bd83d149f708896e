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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import savings_gym
from agents.bptt import (
    Args,
    bptt_update_refusal,
    derived_seed,
    join_pretrained,
    pretrain,
)
from agents.controllers import CELLS
from agents.interface import Agent, ProtocolEnvs, ReachRecord
from benchmarks.savings.learners import (
    MAX_ENDPOINT_ERROR,
    MAX_LATERAL_DEVIATION,
    SB3_PREFIX,
    _sb3_algorithms,
    bptt_agent_factory,
    competence,
    custom_agent_factory,
    is_custom_learner,
    sb3_agent_factory,
    sb3_spec,
    shipped_pretrained,
    smoke_sized,
    weights_provenance,
)
from benchmarks.savings.metrics import lateral_deviation
from benchmarks.savings.presets import PARADIGM_PHASES, PHASES, Preset, check_reaches_per_update, get_preset
from benchmarks.savings.protocol import evaluate_then_train, protocol_schedule, run_protocol
from savings_gym.envs import task_params
from savings_gym.schedule import PAPER_BATCH_SIZE

BPTT_AGENTS = tuple(CELLS)
PROTOCOL_ENV_IDS = ("ArmCurlField-v0", "ArmCurlFieldCued-v0")
PARADIGM_IDS = savings_gym.PARADIGM_IDS
"""The paradigms beyond A-B-A (issue 21): every learner runs them
(:func:`benchmarks.savings.protocol.protocol_schedule`)."""
DEFAULT_HIDDEN = 128


# where ``savings-gym pretrain`` writes when --out is not given: never over the shipped weights
PRETRAIN_OUT = Path("runs/pretrained")


def check_run_arguments(
    agent: str,
    hidden: int | None,
    networks: int,
    out: str | Path,
    env_id: str = "ArmCurlField-v0",
    hyperparams: Any = None,
    reaches_per_update: int = PAPER_BATCH_SIZE,
    reaches_source: str = "--reaches-per-update",
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
            raise ValueError(bptt_update_refusal(reaches_per_update, reaches_source))
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
    source = "--reaches-per-update" if reaches_per_update is not None else f"preset {preset_obj.name!r}'s"
    out = check_run_arguments(agent, hidden, networks, out, env_id, hyperparams, reaches, source)
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


def with_preset(preset: Preset, **changes) -> Preset:
    """A modified copy of a preset (for measurement sweeps)."""
    return replace(preset, **changes)
