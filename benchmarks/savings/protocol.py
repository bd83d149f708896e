"""The savings protocol: pretrain -> NF1 -> FF1 -> NF2 -> FF2 through the env's hidden schedule.

Before every update each learner does the 8 test reaches under the field of the phase it is in; the
mean signed lateral deviation per update is its learning curve (as the paper, whose update is one
batch of 8 reaches; :attr:`~benchmarks.savings.presets.Preset.reaches_per_update` makes it more,
phases still counted in batches of 8 reaches). Beside the main run, the practice control (curves
``NFC``, ``FFC``) and the reset control (``FFR``: the learners of NF1's start meet FF2;
:func:`reset_learners`) can run. The runner only talks to agents through
:class:`agents.interface.Agent`, checkpoints every few minutes, and writes its results atomically:

* ``result.json``: config, package versions, seeds, the phases in updates and in reaches
  (``updates``), the learning curves per phase and network,
  the reach quality of every curve point (``reach_curves``: endpoint error and hand path length of
  the same test reaches, so that a curve that falls because the learner stopped reaching is seen:
  :func:`benchmarks.savings.reach.reach_held`) and the savings metrics (:func:`benchmarks.savings.metrics.savings`,
  over the networks that pass the competence gate and whose reach held);
* ``curves.npz``: the deviation of every test reach (phase -> (K, batches, 8));
* ``figures/``: learning curves, hand paths, savings index per network (:mod:`benchmarks.savings.figures`);
* ``phase_ends/<phase>.pt``: the learners' state at the end of each phase (for ``savings-gym latent``).

A killed run resumed with the same command ends with the same curves as an uninterrupted one.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.interface import Agent, ProtocolEnvs, ReachRecord
from agents.serialization import load_checkpoint
from benchmarks.savings.metrics import RESET_PHASE, lateral_deviation
from benchmarks.savings.paradigms import channel_adaptation_index
from benchmarks.savings.presets import PHASES, Preset, check_reaches_per_update
from benchmarks.savings.reach import COMPETENCE_MAX_ENDPOINT_ERROR, REACH_DIGITS, REACH_RADIUS, competent, reach_quality
from benchmarks.savings.results import (
    REACH_KEYS,
    RunState,
    _finished_result,
    _keep_snapshot,
    _save_checkpoint,
    _save_phase_ends,
    comparable,
    config_differences,
    make_result,
    write_result,
)
from savings_gym.schedule import (
    PAPER_BATCH_SIZE,
    PRACTICE_PHASES,
    Schedule,
    gradual_schedule,
    interference_schedule,
    spontaneous_recovery_schedule,
)
from savings_gym.task import start_hand_position


def protocol_schedule(env_id: str, preset: Preset, batches: Mapping[str, int] | None = None) -> Schedule:
    """The hidden schedule a protocol run of ``env_id`` lives through, at the preset's lengths.

    ``ArmCurlField-v0`` and ``ArmCurlFieldCued-v0``: the preset's (:meth:`Preset.schedule`). The
    paradigms take the preset's phases where they share them, and: spontaneous recovery a tenth of
    FF1 (at least 1 batch) of -A (``FFB``) and NF2's length of channel trials (``EC``);
    interference FF2's length of -A (``FFB``); gradual the preset's phases with FF1 ramped
    (:func:`savings_gym.schedule.gradual_schedule`).

    Args:
        env_id: a registered id with a field.
        preset: phase lengths and field gain.
        batches: batch counts of the paradigm's own phases (``FFB``, ``EC``) replacing those.

    Raises:
        ValueError: for an id the protocol does not run, or a phase the paradigm lacks.
    """
    b, k = preset.batches, preset.field_gain
    extra = dict(batches or {})
    builders = {
        "ArmCurlFieldSpontaneousRecovery-v0": lambda: spontaneous_recovery_schedule(
            k, {"NF1": b["NF1"], "FF1": b["FF1"], "FFB": max(1, b["FF1"] // 10), "EC": b["NF2"]} | extra
        ),
        "ArmCurlFieldInterference-v0": lambda: interference_schedule(
            k, {"NF1": b["NF1"], "FF1": b["FF1"], "FFB": b["FF2"]} | extra
        ),
        "ArmCurlFieldGradual-v0": lambda: gradual_schedule(k, {**b, **extra}),
    }
    if env_id in ("ArmCurlField-v0", "ArmCurlFieldCued-v0"):
        if extra:
            raise ValueError(f"{env_id} has no phase(s) {sorted(extra)}; its phases are {list(PHASES)}")
        return preset.schedule()
    if env_id not in builders:
        raise ValueError(f"the protocol runs {['ArmCurlField-v0', 'ArmCurlFieldCued-v0', *builders]}, got {env_id!r}")
    return builders[env_id]()


def batch_test(schedule: Schedule, batch: int, reaches_per_update: int = PAPER_BATCH_SIZE) -> tuple[float, bool]:
    """What the protocol's test reaches before update ``batch`` (of ``reaches_per_update`` training
    reaches; 8: a batch) are played under: the curl gain of the update's first field trial (N*s/m; it
    ramps in a gradual phase) and, for an update of channel trials only, the channel (gain 0)."""
    gains, channels = schedule.trials_at(batch * reaches_per_update + np.arange(reaches_per_update))
    if channels.all():
        return 0.0, True
    return float(gains[np.argmax(~channels)]), False


def run_protocol(
    make_agent: Callable[[ProtocolEnvs], Agent],
    preset: Preset,
    out: str | Path,
    config: dict[str, Any],
    checkpoint_seconds: float = 120.0,
    progress: bool = True,
    stop_after: int | None = None,
    practice_control: bool = False,
    env_id: str | None = None,
    task: Mapping[str, Any] | None = None,
    command: str | None = None,
    schedule: Schedule | None = None,
    reset_control: bool = False,
) -> dict | None:
    """Runs (or resumes) the protocol and writes the result files.

    Args:
        make_agent: builds the agent (already pretrained as its config says) from the
            :class:`~agents.interface.ProtocolEnvs` of its schedule, in which it must train.
        preset: phase lengths.
        out: output folder; a ``checkpoint.pt`` there is resumed if its config matches.
        config: how the agent was made (written to the result and checked on resume).
        checkpoint_seconds: seconds between checkpoints.
        progress: show a progress line.
        stop_after: stop (with a checkpoint) once this many updates (curve points) are done; for tests.
        practice_control: also run the practice control: a second copy of the same learners,
            built by ``make_agent`` on envs of :meth:`Preset.practice_schedule`, in the null field for
            NF1 + FF1 + NF2 batches (curve ``NFC``) and then in the field for FF2's (``FFC``),
            batch by batch beside the main run. FF2 against FFC is savings net of practice.
        reset_control: also run the reset control, the learners with no memory by construction: a
            further copy built by ``make_agent`` on the main schedule, which keeps its learner state
            at NF1's start (after pretraining) and at FF2's start takes the main run's state with that
            learner state restored (:func:`reset_learners`); its FF2 curve is ``FFR``. FF2 against FFR
            is savings against no memory; FFR against FF1 shows none by construction (NF1 apart). The
            learners must offer :class:`agents.interface.Resettable`'s methods.
        env_id: the registered id the envs are made of (default: ``config["env_id"]``, else
            ``ArmCurlField-v0``).
        task: task constants replacing the id's defaults (:class:`savings_gym.task.TaskParams` fields).
        command: the command line that made the run (recorded as ``command`` in the result).
        schedule: the hidden schedule (default the preset's; a paradigm's from
            :func:`protocol_schedule`). Before a batch of channel trials the test reaches are made in
            the channel and their adaptation index is recorded (``adaptation_index`` in the result).

    Every learner trains ``preset.reaches_per_update`` (R) reaches per update, ``train(R)``, after the
    test reaches that make the update's curve point; a phase of B batches is 8B / R updates.

    Returns:
        The result dict, or None when stopped early.

    A folder whose ``result.json`` holds this run's config is complete: its result is returned and
    nothing runs. A finished run leaves no ``checkpoint.pt`` (``phase_ends/`` keeps the learners).

    Raises:
        ValueError: when the folder holds a checkpoint or a finished result of a different run
            (naming the config fields that differ), for reaches per update that do not make every
            phase of the schedule a whole number of updates, or for a reset control of learners
            without ``learner_state`` / ``load_learner_state``.
        agents.interface.ScheduleMismatchError: when an agent's envs are not where the schedule says
            before a batch (it trains elsewhere, or its resumed state skips batches).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env_id = env_id or config.get("env_id", "ArmCurlField-v0")
    main = preset.schedule() if schedule is None else schedule
    for control, wanted in (("practice", practice_control), ("reset", reset_control)):
        if wanted and main != preset.schedule():
            raise ValueError(f"the {control} control is defined for the paper's schedule; run it with ArmCurlField-v0")
    if main.total_episodes is None or "FF1" not in main.names:
        raise ValueError(f"the protocol needs a finite schedule with an FF1 phase, got {main!r}")
    reaches = preset.reaches_per_update
    check_reaches_per_update(reaches, main, f"preset {preset.name!r}")
    checkpoint = out / "checkpoint.pt"
    full_config = {
        **config,
        "preset": asdict(preset),
        "practice_control": practice_control,
        "reset_control": reset_control,
    }
    finished = _finished_result(out, full_config)
    if finished is not None:
        return finished
    schedules = [main] + ([preset.practice_schedule()] if practice_control else [])
    runs = []
    for schedule in schedules:
        envs = ProtocolEnvs(schedule, env_id, task)
        runs.append((envs, make_agent(envs)))
    if practice_control:
        _check_independent(runs[0][1], runs[1][1])
    reset = None
    if reset_control:  # a copy of the main run's learners, on its schedule; it waits until FF2
        envs = ProtocolEnvs(main, env_id, task)
        reset = (envs, make_agent(envs))
        _check_resettable(reset[1])
        _check_independent(runs[0][1], reset[1])
    agents = {"agent": runs[0][1]} | ({"control": runs[1][1]} if practice_control else {})
    agents |= {"reset_control": reset[1]} if reset is not None else {}
    state = RunState(deviations={name: [] for name in main.names})
    if practice_control:
        state.deviations.update({name: [] for name in PRACTICE_PHASES})
    if reset_control:
        state.deviations[RESET_PHASE] = []
    if checkpoint.exists():
        state = _resume(checkpoint, full_config, agents)
    if reset is not None and state.batch == 0:
        state.reset_from = reset[1].learner_state()  # NF1's start, after pretraining
    total = main.total_episodes // reaches  # updates, one curve point each
    started, last_save = time.time(), time.time()
    bar = _progress(total, state.batch, progress, "updates" if reaches != PAPER_BATCH_SIZE else "batches")
    while state.batch < total:
        done = state.batch * reaches  # training episodes per learner so far
        if done == main.start_of("FF1") and state.competence is None:
            state.competence = measure_competence(runs[0][1], runs[0][0].params.dt)
        if reset is not None and done == main.start_of("FF2"):  # before the main run's first FF2 update
            if state.reset_from is None:
                raise RuntimeError("the reset control reached FF2 without the learner state of NF1's start")
            reset_learners(reset[1], runs[0][1], state.reset_from)
            state.reset_from = None
        resetting = reset is not None and done >= main.start_of("FF2")
        for i, (envs, agent) in enumerate(runs + ([reset] if resetting else [])):
            envs.check(state.batch, reaches)
            phase = envs.schedule.phase_at(done)
            name = RESET_PHASE if reset is not None and agent is reset[1] else phase.name
            if name != RESET_PHASE:  # the reset control's phases before FF2 are the main run's
                _save_phase_ends(out, envs.schedule, agent, done)
            gain, channel = batch_test(envs.schedule, state.batch, reaches)
            record = evaluate_then_train(agent, gain, channel, reaches)
            # the hand-path figures and the progress line follow the main run
            deviation = record_point(state, name, record, envs.params.dt, envs.schedule if i == 0 else None, reaches)
            if channel:
                index = _channel_index(record, envs.params, reference_gain=preset.field_gain)
                state.adaptation.setdefault(name, []).append(index.tolist())
            if i == 0:
                shown = (phase.name, deviation.mean())
        state.batch += 1
        bar(state.batch, *shown)
        stopping = stop_after is not None and state.batch >= stop_after
        if time.time() - last_save > checkpoint_seconds or stopping:
            _save_checkpoint(checkpoint, full_config, agents, state)
            last_save = time.time()
        if stopping and state.batch < total:
            return None
    for envs, agent in runs:
        envs.check(state.batch, reaches)
        _save_phase_ends(out, envs.schedule, agent, state.batch * reaches)
    if reset is not None and main.start_of("FF2") < main.total_episodes:  # it took over at FF2's start
        reset[0].check(state.batch, reaches)
    result = finish(out, state, full_config, time.time() - started, runs[0][0].params.reach_distance, command)
    checkpoint.unlink(missing_ok=True)  # result.json and phase_ends/ hold everything a finished run keeps
    return result


def record_point(
    state: RunState,
    phase: str,
    record: ReachRecord,
    dt: float,
    schedule: Schedule | None = None,
    reaches_per_update: int = PAPER_BATCH_SIZE,
) -> np.ndarray:
    """Adds one point of the learning curves to ``state``: the lateral deviation of each test reach
    and (where ``state`` records it) the reach quality, under ``phase``; with ``schedule`` (in
    training episodes, ``reaches_per_update`` per point), also the hand paths at the protocol's
    landmarks (:data:`SNAPSHOTS`).

    Returns:
        (K, 8) signed lateral deviation of the test reaches (m).
    """
    deviation = lateral_deviation(record.hand_position, record.target[None])
    state.deviations[phase].append(deviation.tolist())
    if state.reach is not None:
        quality = reach_quality(record.hand_position, record.target, dt)
        row = state.reach.setdefault(phase, {key: [] for key in REACH_KEYS})
        for key in REACH_KEYS:
            row[key].append(np.round(quality[key], REACH_DIGITS).tolist())
    if schedule is not None:
        _keep_snapshot(state, schedule, phase, record, reaches_per_update)
    return deviation


def finish(
    out: Path,
    state: RunState,
    config: dict,
    seconds: float,
    reach_distance: float,
    command: str | None = None,
    submission: dict | None = None,
) -> dict:
    """The result of a run whose points are in ``state`` (:func:`make_result`, with ``submission``
    metadata), written to ``out`` (:func:`write_result`) and returned."""
    curves = {phase: np.asarray(d).mean(-1).T for phase, d in state.deviations.items() if len(d)}
    reach = None
    if state.reach is not None:
        reach = {
            phase: {key: np.asarray(rows[key]).T for key in REACH_KEYS} for phase, rows in state.reach.items() if rows
        }
    adaptation = {phase: np.asarray(a).T for phase, a in state.adaptation.items() if len(a)}
    result = make_result(
        config,
        curves,
        seconds,
        submission=submission,
        command=command,
        competence=state.competence,
        reach_curves=reach,
        reach_distance=reach_distance,
        adaptation=adaptation or None,
    )
    write_result(out, result, state)
    return result


def measure_competence(agent: Agent, dt: float = 0.01) -> dict[str, Any]:
    """The competence gate's measurements: every network's 8 null-field test reaches, taken where
    the protocol calls it (before FF1's first update), as :func:`benchmarks.savings.reach.reach_quality`
    (m, s) and :func:`benchmarks.savings.reach.competent`. Leaves the agent unchanged (``evaluate``)."""
    return competence_of(agent.evaluate(0.0), dt)


def competence_of(record: ReachRecord, dt: float = 0.01) -> dict[str, Any]:
    """:func:`measure_competence` of null-field test reaches already played."""
    quality = reach_quality(record.hand_position, record.target, dt)
    return {
        "measured": "the 8 null-field test reaches before FF1's first update",
        "criterion": {"max_endpoint_error_m": COMPETENCE_MAX_ENDPOINT_ERROR, "reach_radius_m": REACH_RADIUS},
        "per_network": {
            **{name: values.tolist() for name, values in quality.items()},
            "competent": [bool(v) for v in competent(quality["endpoint_error"])],
        },
    }


def _check_independent(main: Agent, control: Agent) -> None:
    """Refuses a practice control whose learner shares weights with the main run's (``make_agent``
    must build a new learner on every call): the two would train one network in both schedules.
    Seen through ``state_dict()``: learners whose state dicts are copies are not checked here."""

    def tensors(tree: Any) -> list[torch.Tensor]:
        if isinstance(tree, torch.Tensor):
            return [tree] if tree.numel() else []
        if isinstance(tree, dict):
            return [t for value in tree.values() for t in tensors(value)]
        if isinstance(tree, list | tuple):
            return [t for value in tree for t in tensors(value)]
        return []

    # both state dicts held at once: a copy freed early could hand its address to the other's tensors
    main_state, control_state = main.state_dict(), control.state_dict()
    main_storage = {t.untyped_storage().data_ptr() for t in tensors(main_state)}
    if main_storage & {t.untyped_storage().data_ptr() for t in tensors(control_state)}:
        raise ValueError(
            "make_agent returned learners that share weights (the practice control would train the main "
            "run's networks); build new weights on every call"
        )


def reset_learners(control: Agent, main: Agent, learner_state: Mapping[str, Any]) -> None:
    """The reset control at FF2's start: ``control``, a copy of ``main``'s learners built on the same
    schedule, takes the main run's whole state (its envs where the schedule stands, its random
    streams) and then the ``learner_state`` it kept at NF1's start
    (:class:`agents.interface.Resettable`): the learners as they were after pretraining, with no memory
    of NF1, FF1 or NF2, living FF2 as the main run does."""
    control.load_state_dict(main.state_dict())
    control.load_learner_state(copy.deepcopy(learner_state))


def _check_resettable(agent: Agent) -> None:
    missing = [name for name in ("learner_state", "load_learner_state") if not callable(getattr(agent, name, None))]
    if missing:
        raise ValueError(
            f"{type(agent).__name__} has no {' / '.join(missing)}: the reset control (--control reset) restores the "
            "learner state of NF1's start at FF2's start; offer agents.interface.Resettable's two methods "
            "(weights and optimiser state out and back in)"
        )


def _resume(checkpoint: Path, config: dict, agents: Mapping[str, Agent]) -> RunState:
    """The run state of a checkpoint, its learners loaded into ``agents`` (by their checkpoint keys,
    :func:`_save_checkpoint`)."""
    saved = load_checkpoint(checkpoint)
    if not isinstance(saved, dict) or not {"config", "agent", "batch", "deviations", "snapshots"} <= saved.keys():
        raise ValueError(f"{checkpoint} is not a savings-gym run checkpoint (keys missing); delete it to start over")
    differences = config_differences(comparable(saved["config"]), comparable(config))
    if differences:
        raise ValueError(
            f"{checkpoint} belongs to another run: {differences}. To continue that run, run its own command "
            f"(with the learner's source as it was); to start this one, use another --out or delete {checkpoint}"
        )
    try:
        for key, agent in agents.items():
            agent.load_state_dict(saved[key])
        # a checkpoint from before reach quality was recorded resumes without it (None), not with a part
        reach = saved.get("reach") if "reach" in saved or saved["batch"] == 0 else None
        return RunState(
            saved["batch"],
            saved["deviations"],
            saved["snapshots"],
            saved.get("competence"),
            reach,
            saved.get("adaptation", {}),
            saved.get("reset_from"),
        )
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
        raise ValueError(
            f"{checkpoint} does not fit this run's learners ({type(error).__name__}: {str(error)[:200]}); "
            "delete it to start over"
        ) from error


def evaluate_then_train(
    agent: Agent, field_gain: float, channel: bool = False, episodes: int = PAPER_BATCH_SIZE
) -> ReachRecord:
    """One point of the learning curve and one update: the test reaches under ``field_gain`` (in the
    error-clamp channel when ``channel``), then ``episodes`` training episodes per learner
    (``train(episodes)``; 8: a batch). An agent that can do both from the same weights in one pass
    offers ``evaluate_then_train`` (:class:`agents.bptt.BPTTAgent` does), used for other than 8
    episodes only when it takes an ``episodes`` keyword; others are asked in turn.

    Raises:
        ValueError: for ``channel`` with an agent whose ``evaluate`` takes no ``channel`` keyword or
            whose record has no ``hand_velocity`` (the adaptation index needs both).
    """
    if channel and "channel" not in inspect.signature(agent.evaluate).parameters:
        raise ValueError(
            f"{type(agent).__name__}.evaluate takes no channel keyword: a paradigm with channel trials "
            "needs test reaches in the channel (evaluate(0.0, channel=True), e.g. through "
            "agents.interface.run_test_reaches(..., channel=True))"
        )
    both = getattr(agent, "evaluate_then_train", None)
    takes = set() if both is None else set(inspect.signature(both).parameters)
    fits = (not channel or "channel" in takes) and (episodes == PAPER_BATCH_SIZE or "episodes" in takes)
    if both is not None and fits:
        extra = ({"channel": True} if channel else {}) | ({"episodes": episodes} if "episodes" in takes else {})
        record = both(field_gain, **extra)
    else:
        record = agent.evaluate(field_gain, channel=True) if channel else agent.evaluate(field_gain)
        agent.train(episodes)
    if channel and record.hand_velocity is None:
        raise ValueError(f"{type(agent).__name__}.evaluate(channel=True) recorded no hand_velocity")
    return record


def _channel_index(record: ReachRecord, params: Any, reference_gain: float) -> np.ndarray:
    """(K,) mean over the test reaches of their adaptation index against field A (``reference_gain``),
    from the step the channel acts (go time + go-cue delay, as the field) to the end."""
    onset = int(math.ceil((params.test_go_time + params.go_cue_delay) / params.dt))
    index = channel_adaptation_index(
        record.hand_position,
        record.hand_velocity,
        start_hand_position(params),
        record.target,
        reference_gain,
        params.channel_stiffness,
        params.channel_damping,
        first_step=onset,
    )
    return np.nanmean(index, axis=-1)


def _progress(total: int, start: int, enabled: bool, unit: str = "batches") -> Callable[[int, str, float], None]:
    """A one-line progress bar on a terminal; a line every 5% of the run elsewhere (logs); ``total``
    and the rate count ``unit`` (updates: curve points)."""
    import sys

    began, first, tty = time.time(), start, sys.stdout.isatty()
    one = {"batches": "batch", "updates": "update"}.get(unit, unit)
    every = max(1, -(-total // 20))  # at most 20 lines in a log, however short the run

    def update(done: int, phase: str, deviation: float) -> None:
        if not enabled or (not tty and done % every and done != total):
            return
        rate = (done - first) / max(time.time() - began, 1e-9)
        eta = (total - done) / rate if rate > 0 else float("nan")
        filled = int(30 * done / total)
        line = (
            f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} {unit}  {phase}  "
            f"deviation {deviation * 100:+.2f} cm  {rate:.2f} {one}/s  eta {eta:.0f} s"
        )
        print("\r" + line if tty else line, end="" if tty and done < total else "\n", flush=True)

    return update
