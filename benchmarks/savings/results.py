"""A protocol run's files: the self-describing result (:func:`make_result`, :func:`write_result`), the
checkpoints and phase-end snapshots it saves, and resuming from them (a finished or comparable run)."""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.interface import Agent, ReachRecord
from agents.serialization import atomic_torch_save
from benchmarks.safe_io import atomic_write_bytes, atomic_write_json
from benchmarks.savings.metrics import RESET_PHASE, savings
from benchmarks.savings.paradigms import paradigm_metrics
from benchmarks.savings.presets import PHASES, RESULT_UNITS, RESULT_VERSION, SNAPSHOTS
from benchmarks.savings.reach import (
    COLLAPSE_ENDPOINT_FACTOR,
    COLLAPSE_MIN_ENDPOINT_ERROR,
    COLLAPSE_MIN_PATH_FRACTION,
    COLLAPSE_WINDOW,
    REACH_DIGITS,
    reach_held,
)
from savings_gym import TRIAL_STEPS
from savings_gym.schedule import (
    PAPER_BATCH_SIZE,
    PRACTICE_PHASES,
    Schedule,
)


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


ADDED_CONFIG_DEFAULTS = {"reset_control": False}
"""Config keys added after files were written, at the value a file without them means."""


ADDED_PRESET_DEFAULTS = {"reaches_per_update": PAPER_BATCH_SIZE, "sb3_hyperparams": {}}
"""Likewise for the config's ``preset`` block."""


def comparable(config: Mapping[str, Any]) -> dict[str, Any]:
    """A run's config as checks of "the same run" compare it (a checkpoint's, a sweep cell's): its JSON
    form without the keys of :data:`ADDED_CONFIG_DEFAULTS` and :data:`ADDED_PRESET_DEFAULTS` at
    their defaults, so that checkpoints and results written before those keys existed still match."""
    plain = json.loads(json.dumps(config))
    for key, default in ADDED_CONFIG_DEFAULTS.items():
        if plain.get(key, default) == default:
            plain.pop(key, None)
    preset = plain.get("preset")
    if isinstance(preset, dict):
        for key, default in ADDED_PRESET_DEFAULTS.items():
            if preset.get(key, default) == default:
                preset.pop(key, None)
    return plain


def config_differences(old: Any, new: Any, limit: int = 4) -> str:
    """The fields where two run configs differ, dotted (``learner.source_sha256``), each with its two
    values (was, now; cut short), at most ``limit`` of them; empty when the configs are equal."""

    def walk(a: Any, b: Any, where: str) -> list[str]:
        if isinstance(a, dict) and isinstance(b, dict):
            keys = sorted(a.keys() | b.keys(), key=str)
            return [d for k in keys for d in walk(a.get(k, _ABSENT), b.get(k, _ABSENT), f"{where}.{k}".lstrip("."))]
        return [] if a == b else [f"{where or 'config'} (was {_cut(a)}, now {_cut(b)})"]

    found = walk(old, new, "")
    shown = "; ".join(found[:limit]) + (f"; and {len(found) - limit} more" if len(found) > limit else "")
    if any(d.startswith("learner.source_sha256 ") for d in found):
        shown += " (the learner's source file changed)"
    return f"differs in {shown}" if found else ""


_ABSENT = object()


def _cut(value: Any, limit: int = 40) -> str:
    text = "absent" if value is _ABSENT else json.dumps(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _finished_result(out: Path, config: dict) -> dict | None:
    """The result of the finished run in ``out`` if it is this run (same config), else None when
    there is none; refuses a finished run of another config (its phase_ends/ would be mixed up)."""
    path = out / "result.json"
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text())
        recorded = result["config"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a savings-gym result ({error!r}); use another --out") from None
    differences = config_differences(comparable(recorded), comparable(config))
    if differences:
        raise ValueError(
            f"{out} holds a finished run of another config: {differences}. Use another --out for this one "
            f"(or delete {out}: its result.json and phase_ends/ are that run's)"
        )
    print(f"the run in {out} is complete ({path}); nothing to do. To run it again, use another --out")
    return result


PHASE_ENDS = "phase_ends"


def _save_phase_ends(out: Path, schedule: Schedule, agent: Agent, episodes: int) -> None:
    """The learners as each phase ends (a phase of no batches ends where it starts), for analyses
    such as ``savings-gym latent``, once they have trained ``episodes`` episodes each; written once,
    atomically, in ``out/phase_ends/<phase>.pt``."""
    for phase in schedule.phases:
        if phase.n_episodes is None:
            continue
        end = schedule.start_of(phase.name) + phase.n_episodes
        path = out / PHASE_ENDS / f"{phase.name}.pt"
        if episodes >= end and not path.exists():
            atomic_torch_save(agent.state_dict(), path)


def _keep_snapshot(state: RunState, schedule: Schedule, phase: str, record: ReachRecord, reaches: int) -> None:
    done = len(state.deviations[phase])
    n = next(p.n_episodes for p in schedule.phases if p.name == phase) // reaches
    for label, snap_phase, which in SNAPSHOTS:
        if snap_phase == phase and done - 1 == (which % n):
            state.snapshots[label] = {"hand_position": record.hand_position.tolist(), "target": record.target.tolist()}


def _save_checkpoint(path: Path, config: dict, agents: Mapping[str, Agent], state: RunState) -> None:
    """Writes the run's state and every agent's (``agent``: the main run's; ``control``: the practice
    control's; ``reset_control``)."""
    saved = {
        "config": json.loads(json.dumps(config)),
        **{key: agent.state_dict() for key, agent in agents.items()},
        "batch": state.batch,
        "deviations": state.deviations,
        "snapshots": state.snapshots,
        "competence": state.competence,
        "reach": state.reach,
        "adaptation": state.adaptation,
    }
    if state.reset_from is not None:
        saved["reset_from"] = state.reset_from
    atomic_torch_save(saved, path)


def make_result(
    config: dict,
    curves: dict[str, np.ndarray],
    seconds: float,
    submission: dict | None = None,
    command: str | None = None,
    competence: dict[str, Any] | None = None,
    reach_curves: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    reach_distance: float | None = None,
    adaptation: Mapping[str, np.ndarray] | None = None,
) -> dict:
    """The self-describing result of a run (the leaderboard's submission format, version 1).

    Args:
        config: how the run was made; must hold ``agent``, ``networks``, ``seed``, ``env_id``, ``preset``.
        curves: phase -> (K, batches) mean signed lateral deviation per network and batch (m).
        seconds: wall time of this session of the run.
        submission: leaderboard metadata (``name``, ``description``, ``link``, ``code_version``);
            defaults are derived from the config.
        command: the command line that made the run (of the session that finished it), if known.
        competence: the competence gate's measurements (:func:`measure_competence`); the metrics
            are then over the competent networks only. None: not measured.
        reach_curves: phase -> ``{"endpoint_error", "path_length"}`` -> (K, batches) (m), the reach
            quality of every curve point; with ``competence`` and ``reach_distance``, the metrics
            are also only over the networks whose reach held (:func:`benchmarks.savings.reach.reach_held`).
        reach_distance: the test reaches' start-to-target distance (m).
        adaptation: channel phase -> (K, batches) adaptation index of the channel test reaches.

    A run of a paradigm beyond A-B-A (phases other than :data:`PHASES`, or an adaptation index)
    also gets ``adaptation_index`` and ``paradigm_metrics``
    (:func:`benchmarks.savings.paradigms.paradigm_metrics`); its ``metrics`` (the savings of FF2 against FF1)
    are empty.
    """
    name = f"{config['agent']}-{config['hidden']}" if config.get("hidden") else str(config["agent"])
    meta = {"name": name, "description": "", "link": "", "code_version": code_version()} | (submission or {})
    held = reach = None
    if reach_curves is not None and competence is not None and reach_distance is not None:
        stored = {
            phase: {key: np.round(np.asarray(rows[key], np.float64), REACH_DIGITS) for key in REACH_KEYS}
            for phase, rows in reach_curves.items()
        }
        verdict = reach_held(stored, competence["per_network"]["endpoint_error"], reach_distance)
        held = [bool(v) for v in verdict["held"]]
        reach = {
            "reach_curves": {p: {k: v.tolist() for k, v in rows.items()} for p, rows in stored.items()},
            "reach_held": {
                "criterion": reach_criterion(reach_distance),
                "per_network": {"held": held, "collapsed_in": verdict["collapsed_in"]},
            },
        }
    gate = None if competence is None else competence["per_network"]["competent"]
    included = gate if held is None else [g and h for g, h in zip(gate, held, strict=True)]
    paradigm = adaptation is not None or bool(set(curves) - set(PHASES) - set(PRACTICE_PHASES) - {RESET_PHASE})
    ramped = config.get("env_id") == "ArmCurlFieldGradual-v0"
    paradigm = paradigm or ramped
    extra = {}
    if paradigm:
        extra = {
            "adaptation_index": {p: np.asarray(a).tolist() for p, a in (adaptation or {}).items()},
            "paradigm_metrics": paradigm_metrics(curves, adaptation, competence=included),
        }
    preset = config.get("preset")
    reaches = preset.get("reaches_per_update", PAPER_BATCH_SIZE) if isinstance(preset, dict) else PAPER_BATCH_SIZE
    steps = (config.get("task") or {}).get("trial_steps", TRIAL_STEPS)
    result = {
        "format": "savings-gym-result",
        "version": RESULT_VERSION,
        "submission": meta,
        "config": config,
        "versions": versions(),
        "seconds_this_session": seconds,
        "command": command,
        "units": dict(RESULT_UNITS),  # a copy: a result changed later must not change the constant
        "updates": updates_block(curves, reaches, steps),
        "learning_curves": {p: np.asarray(c).tolist() for p, c in curves.items()},  # phase -> [network][batch]
        "competence": competence,
        **(reach or {}),
        **extra,
    }
    # a gradual FF1 ramps up from k = 0: no exponential to fit, so no savings of FF2 against it
    fitted = {"FF1", "FF2"} <= set(curves) and not ramped
    result["metrics"] = savings(curves, competence=gate, reach=held) if fitted else {}
    return result


def updates_block(curves: Mapping[str, np.ndarray], reaches_per_update: int, steps_per_reach: int) -> dict[str, Any]:
    """A result's ``updates``: its phases in both units, curve points (updates) and training
    experience per learner (reaches, env steps); ``reaches_per_update`` 8 is one batch per update."""
    per_phase = {}
    for phase, curve in curves.items():
        n = int(np.shape(curve)[-1]) if np.ndim(curve) else 0
        per_phase[phase] = {
            "updates": n,
            "reaches": n * reaches_per_update,
            "env_steps": n * reaches_per_update * steps_per_reach,
        }
    return {
        "reaches_per_update": int(reaches_per_update),
        "steps_per_reach": int(steps_per_reach),
        "env_steps_per_update": int(reaches_per_update * steps_per_reach),
        "per_phase": per_phase,
    }


def reach_criterion(reach_distance: float) -> dict[str, float]:
    """The numbers of :func:`benchmarks.savings.reach.reach_held`'s criterion, as a result file records them."""
    return {
        "window_batches": COLLAPSE_WINDOW,
        "max_endpoint_error_factor": COLLAPSE_ENDPOINT_FACTOR,
        "max_endpoint_error_floor_m": COLLAPSE_MIN_ENDPOINT_ERROR,
        "min_path_fraction": COLLAPSE_MIN_PATH_FRACTION,
        "reach_distance_m": float(reach_distance),
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
    from benchmarks.savings.figures import write_figures

    write_figures(out / "figures", result, state.snapshots)
    atomic_write_json(out / "result.json", result)


@dataclass
class RunState:
    """What a checkpoint holds besides the agent."""

    batch: int = 0
    deviations: dict[str, list[list[float]]] = field(default_factory=lambda: {p: [] for p in PHASES})
    snapshots: dict[str, dict] = field(default_factory=dict)
    competence: dict[str, Any] | None = None
    # phase -> {"endpoint_error": [...], "path_length": [...]}, per batch the (K,) means over the
    # test reaches (m); None in a checkpoint from before reach quality was recorded
    reach: dict[str, dict[str, list[list[float]]]] | None = field(default_factory=dict)
    adaptation: dict[str, list[list[float]]] = field(default_factory=dict)
    """phase -> per batch, the (K,) mean adaptation index of the channel test reaches (channel phases)."""
    reset_from: dict[str, Any] | None = None
    """The reset control's learner state at NF1's start, kept until FF2 restores it (then None)."""


REACH_KEYS = ("endpoint_error", "path_length")
