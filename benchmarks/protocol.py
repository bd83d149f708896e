"""The savings protocol: pretrain -> NF1 -> FF1 -> NF2 -> FF2 through the env's hidden schedule.

Before every update each learner does the 8 test reaches under the field of the phase it is in;
the mean signed lateral deviation per batch is its learning curve (as the paper). The runner
only talks to agents through :class:`agents.interface.Agent`, checkpoints every few minutes, and
writes its results atomically:

* ``result.json``: config, package versions, seeds, the learning curves per phase and network,
  and the savings metrics (:func:`benchmarks.metrics.savings`);
* ``curves.npz``: the deviation of every test reach (phase -> (K, batches, 8));
* ``figures/``: learning curves, hand paths, savings index per network (:mod:`benchmarks.figures`);
* ``phase_ends/<phase>.pt``: the learners' state at the end of each phase (for ``savings-gym latent``).

A killed run resumed with the same command ends with the same curves as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.interface import Agent, ReachRecord
from agents.serialization import atomic_torch_save, load_checkpoint
from benchmarks.metrics import lateral_deviation, savings
from savings_gym.schedule import PAPER_BATCH_SIZE, Schedule, paper_schedule

PHASES = ("NF1", "FF1", "NF2", "FF2")
RESULT_VERSION = 1
# hand paths kept for the figures: (label, phase, which batch of it)
SNAPSHOTS = (
    ("NF1 end", "NF1", -1),
    ("FF1 start", "FF1", 0),
    ("FF1 end", "FF1", -1),
    ("NF2 end", "NF2", -1),
    ("FF2 start", "FF2", 0),
)


@dataclass(frozen=True)
class Preset:
    """Phase lengths and learning settings of a protocol.

    Attributes:
        name: preset name.
        batches: adaptation batches (of 8 centre-out reaches) per phase.
        field_gain: curl gain of the FF phases (N*s/m).
        lr: SGD learning rate after pretraining.
        pretrain_batches: batches of pretraining when no shipped pretrained network fits.
        use_shipped_pretrained: start from the project's pretrained networks when they fit.
        imitation_steps: SB3 learners pretrained by the run (no shipped weights fit) first imitate
            the shipped GRU-128 networks for this many gradient steps, when their policy can
            (:func:`agents.sb3_agent.imitate`; PPO from scratch does not learn to reach at these
            budgets); 0: RL from scratch. BPTT networks ignore it.
        description: what it is for.
    """

    name: str
    batches: dict[str, int]
    field_gain: float = 8.0
    lr: float = 5e-3
    pretrain_batches: int = 20010
    use_shipped_pretrained: bool = False
    imitation_steps: int = 0
    description: str = ""

    def schedule(self) -> Schedule:
        return paper_schedule(self.field_gain, self.batches)

    @property
    def total_batches(self) -> int:
        return sum(self.batches.values())


PRESETS = {
    "paper": Preset(
        "paper",
        {"NF1": 10001, "FF1": 3201, "NF2": 10001, "FF2": 3201},
        imitation_steps=1500,
        description="the paper's exact protocol: 20,010 pretraining batches, then 26,404 adaptation batches",
    ),
    "quick": Preset(
        "quick",
        {"NF1": 0, "FF1": 120, "NF2": 120, "FF2": 120},
        # 4x the paper's SGD rate compresses each phase ~4x: chosen by measurement (benchmarks/RESULTS.md)
        lr=2e-2,
        pretrain_batches=2000,
        use_shipped_pretrained=True,
        imitation_steps=1500,
        description="from the shipped pretrained networks: FF1, NF2, FF2 of 120 batches each, SGD lr 0.02",
    ),
    "smoke": Preset(
        "smoke",
        {"NF1": 2, "FF1": 15, "NF2": 5, "FF2": 15},
        pretrain_batches=5,
        use_shipped_pretrained=True,
        imitation_steps=20,
        description="a seconds-long run that exercises every stage (tests); its numbers mean nothing",
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ``ValueError`` lists the valid names."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets are {sorted(PRESETS)}")
    return PRESETS[name]


@dataclass
class RunState:
    """What a checkpoint holds besides the agent."""

    batch: int = 0
    deviations: dict[str, list[list[float]]] = field(default_factory=lambda: {p: [] for p in PHASES})
    snapshots: dict[str, dict] = field(default_factory=dict)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=1, allow_nan=True).encode())


def versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    import gymnasium
    import motornet
    import scipy

    import savings_gym

    return {
        "savings_gym": savings_gym.__version__,
        "motornet": getattr(motornet, "__version__", "?"),
        "gymnasium": gymnasium.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "python": platform.python_version(),
    }


def run_protocol(
    make_agent: Callable[[Schedule], Agent],
    preset: Preset,
    out: str | Path,
    config: dict[str, Any],
    checkpoint_seconds: float = 120.0,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict | None:
    """Runs (or resumes) the protocol and writes the result files.

    Args:
        make_agent: builds the agent for a schedule (already pretrained as its config says).
        preset: phase lengths.
        out: output folder; a ``checkpoint.pt`` there is resumed if its config matches.
        config: how the agent was made (written to the result and checked on resume).
        checkpoint_seconds: seconds between checkpoints.
        progress: show a progress line.
        stop_after: stop (with a checkpoint) once this many batches are done; for tests.

    Returns:
        The result dict, or None when stopped early.

    Raises:
        ValueError: when the folder holds a checkpoint of a different run.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    schedule = preset.schedule()
    agent = make_agent(schedule)
    checkpoint = out / "checkpoint.pt"
    full_config = {**config, "preset": asdict(preset)}
    state = RunState()
    if checkpoint.exists():
        saved = load_checkpoint(checkpoint)
        if not isinstance(saved, dict) or not {"config", "agent", "batch", "deviations", "snapshots"} <= saved.keys():
            raise ValueError(
                f"{checkpoint} is not a savings-gym run checkpoint (keys missing); delete it to start over"
            )
        if saved["config"] != json.loads(json.dumps(full_config)):
            raise ValueError(f"{checkpoint} belongs to another run (config {saved['config']}); use another --out")
        try:
            agent.load_state_dict(saved["agent"])
            state = RunState(saved["batch"], saved["deviations"], saved["snapshots"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as error:
            raise ValueError(
                f"{checkpoint} does not fit this run's learners ({type(error).__name__}: {str(error)[:200]}); "
                "delete it to start over"
            ) from error
    total = preset.total_batches
    started, last_save = time.time(), time.time()
    bar = _progress(total, state.batch, progress)
    while state.batch < total:
        _save_phase_ends(out, schedule, agent)
        phase = schedule.phase_at(agent.episodes_completed)
        record = evaluate_then_train(agent, phase.field_gain)
        deviation = lateral_deviation(record.hand_position, record.target[None])
        state.deviations[phase.name].append(deviation.tolist())
        _keep_snapshot(state, schedule, phase.name, record)
        state.batch += 1
        bar(state.batch, phase.name, deviation.mean())
        stopping = stop_after is not None and state.batch >= stop_after
        if time.time() - last_save > checkpoint_seconds or stopping:
            _save_checkpoint(checkpoint, full_config, agent, state)
            last_save = time.time()
        if stopping and state.batch < total:
            return None
    _save_phase_ends(out, schedule, agent)
    curves = {phase: np.asarray(d).mean(-1).T for phase, d in state.deviations.items() if len(d)}
    result = make_result(full_config, curves, time.time() - started)
    write_result(out, result, state)
    return result


def evaluate_then_train(agent: Agent, field_gain: float) -> ReachRecord:
    """One point of the learning curve and one update: the test reaches under ``field_gain``, then
    a batch of training. An agent that can do both from the same weights in one pass offers
    ``evaluate_then_train`` (:class:`agents.bptt.BPTTAgent` does); others are asked in turn."""
    both = getattr(agent, "evaluate_then_train", None)
    if both is not None:
        return both(field_gain)
    record = agent.evaluate(field_gain)
    agent.train(PAPER_BATCH_SIZE)
    return record


PHASE_ENDS = "phase_ends"


def _save_phase_ends(out: Path, schedule: Schedule, agent: Agent) -> None:
    """The learners as each phase ends (a phase of no batches ends where it starts), for analyses
    such as ``savings-gym latent``; written once, atomically, in ``out/phase_ends/<phase>.pt``."""
    for phase in schedule.phases:
        if phase.n_episodes is None:
            continue
        end = schedule.start_of(phase.name) + phase.n_episodes
        path = out / PHASE_ENDS / f"{phase.name}.pt"
        if agent.episodes_completed >= end and not path.exists():
            atomic_torch_save(agent.state_dict(), path)


def _keep_snapshot(state: RunState, schedule: Schedule, phase: str, record: ReachRecord) -> None:
    done = len(state.deviations[phase])
    n = next(p.n_episodes for p in schedule.phases if p.name == phase) // PAPER_BATCH_SIZE
    for label, snap_phase, which in SNAPSHOTS:
        if snap_phase == phase and done - 1 == (which % n):
            state.snapshots[label] = {"hand_position": record.hand_position.tolist(), "target": record.target.tolist()}


def _save_checkpoint(path: Path, config: dict, agent: Agent, state: RunState) -> None:
    atomic_torch_save(
        {
            "config": json.loads(json.dumps(config)),
            "agent": agent.state_dict(),
            "batch": state.batch,
            "deviations": state.deviations,
            "snapshots": state.snapshots,
        },
        path,
    )


def make_result(config: dict, curves: dict[str, np.ndarray], seconds: float, submission: dict | None = None) -> dict:
    """The self-describing result of a run (the leaderboard's submission format, version 1).

    Args:
        config: how the run was made; must hold ``agent``, ``networks``, ``seed``, ``env_id``, ``preset``.
        curves: phase -> (K, batches) mean signed lateral deviation per network and batch (m).
        seconds: wall time of this session of the run.
        submission: leaderboard metadata (``name``, ``description``, ``link``, ``code_version``);
            defaults are derived from the config.
    """
    name = f"{config['agent']}-{config['hidden']}" if config.get("hidden") else str(config["agent"])
    meta = {"name": name, "description": "", "link": "", "code_version": code_version()} | (submission or {})
    return {
        "format": "savings-gym-result",
        "version": RESULT_VERSION,
        "submission": meta,
        "config": config,
        "versions": versions(),
        "seconds_this_session": seconds,
        "learning_curves": {p: np.asarray(c).tolist() for p, c in curves.items()},  # phase -> [network][batch]
        "metrics": savings(curves),
    }


def code_version() -> str:
    """The package version and, in a git checkout, the commit."""
    import subprocess

    import savings_gym

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return savings_gym.__version__ + (f"+{commit}" if commit else "")


def write_result(out: Path, result: dict, state: RunState) -> None:
    """Writes result.json, curves.npz and the figures, each atomically."""
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{p: np.asarray(d).transpose(1, 0, 2) for p, d in state.deviations.items() if d})
    atomic_write_bytes(out / "curves.npz", buffer.getvalue())
    from benchmarks.figures import write_figures

    write_figures(out / "figures", result, state.snapshots)
    atomic_write_json(out / "result.json", result)


def _progress(total: int, start: int, enabled: bool) -> Callable[[int, str, float], None]:
    """A one-line progress bar on a terminal; a line every 5% of the run elsewhere (logs)."""
    import sys

    began, first, tty = time.time(), start, sys.stdout.isatty()

    def update(done: int, phase: str, deviation: float) -> None:
        if not enabled or (not tty and done % max(1, total // 20) and done != total):
            return
        rate = (done - first) / max(time.time() - began, 1e-9)
        eta = (total - done) / rate if rate > 0 else float("nan")
        filled = int(30 * done / total)
        line = (
            f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} batches  {phase}  "
            f"deviation {deviation * 100:+.2f} cm  {rate:.2f} batch/s  eta {eta:.0f} s"
        )
        print("\r" + line if tty else line, end="" if tty and done < total else "\n", flush=True)

    return update
