"""Where the memory hides: preparatory activity across phases (SPEC.md, "Preparatory activity").

For every network of a run, the recurrent state on the 8 test reaches is recorded at the end of
each phase (``phase_ends/`` of the run). Then:

* targeted dimensionality reduction: NF1 preparatory activity (``prep_step``, before the go cue)
  regressed on NF1 endpoint force during the movement (``force_step``) plus an intercept; two
  force axes in state space from the coefficients, orthonormalised (:func:`tdr_axes`: the paper's
  construction by default, this project's earlier one as ``tdr="coefficients"``);
* the uniform shift: the mean over targets of FF1 minus NF1 preparatory activity, orthogonalised
  against those axes;
* persistence: each phase's mean preparatory state projected on the shift, normalised
  (x - NF1) / (FF1 - NF1); across networks a one-sample t-test that NF2 > 0 and a bootstrap CI,
  beside the same for behaviour (the NF2 lateral deviation, against NF1's);
* the causal test: ``m`` x the shift added to the hidden state of the NF2 network just before
  the movement, reaching in the field; the first-trial lateral deviation against ``m``, beside the
  NF1 network's in the field.

Timing: the test reaches go at 0.10 s and the cue shows from step 18, so step 16 is the last
hidden state before the cue; the paper's force step 59 came 8 steps after its cue at step 51 (go
time 0.44 s), which is step 26 here. Both are parameters and recorded with the results.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from benchmarks.safe_io import atomic_write_bytes, atomic_write_json
from benchmarks.savings.metrics import bootstrap_ci, lateral_deviation
from benchmarks.savings.results import PHASE_ENDS
from savings_gym.envs import task_overrides, task_params

PHASES = ("NF1", "FF1", "NF2", "FF2")


@dataclass(frozen=True)
class LatentConfig:
    """Parameters of the analysis (steps index the states after each step, 0-based)."""

    prep_step: int = 16
    force_step: int = 26
    offset_step: int = 16
    multipliers: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0)
    tdr: str = "paper"
    """how the force axes come from the regression: one of :data:`TDR_METHODS` (see :func:`tdr_axes`)"""

    def __post_init__(self) -> None:
        if self.tdr not in TDR_METHODS:
            raise ValueError(f"tdr must be one of {TDR_METHODS}, got {self.tdr!r}")


def _check_states(name: str, array: np.ndarray, ndim: int) -> np.ndarray:
    array = np.asarray(array, np.float64)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or inf")
    return array


TDR_METHODS = ("paper", "coefficients")


def tdr_axes(prep_nf1: np.ndarray, force_nf1: np.ndarray, method: str = "paper") -> np.ndarray:
    """Targeted dimensionality reduction: regress preparatory states N (targets, H) on the design
    X = [force_x, force_y, 1] (targets, 3), B = pinv(X) N (3, H), and take two axes from B.

    * ``"paper"`` (the paper's ``tdr.py: build_tdr``): the first two columns of pinv(B) (H, 3), the
      state-space directions that read out force x and y while reading nothing of the others and
      of the intercept's direction; then Gram-Schmidt.
    * ``"coefficients"`` (this project's earlier construction): B's force rows, orthonormalised.

    The two planes agree when the intercept's coefficients lie in the force rows' span and differ
    otherwise (e.g. a state offset common to all targets that the forces do not explain).

    Args:
        prep_nf1: (targets, H) preparatory hidden states.
        force_nf1: (targets, 2) endpoint force (N) during the movement, same targets.
        method: one of :data:`TDR_METHODS`.

    Returns:
        (2, H) orthonormal axes of force x and y in state space.

    Raises:
        ValueError: for fewer than 4 targets, mismatched shapes, NaN, or a degenerate force design.
    """
    prep = _check_states("preparatory states", prep_nf1, 2)
    force = _check_states("endpoint forces", force_nf1, 2)
    if prep.shape[0] != force.shape[0] or force.shape[1] != 2:
        raise ValueError(f"need (targets, H) states and (targets, 2) forces, got {prep.shape} and {force.shape}")
    if prep.shape[0] < 4:
        raise ValueError(f"need at least 4 targets to regress on 2 forces and an intercept, got {prep.shape[0]}")
    design = np.column_stack([force, np.ones(len(force))])
    if np.linalg.matrix_rank(design) < 3:
        raise ValueError("the endpoint forces do not span two directions: no force axes to regress on")
    if method not in TDR_METHODS:
        raise ValueError(f"method must be one of {TDR_METHODS}, got {method!r}")
    beta = np.linalg.pinv(design) @ prep
    force_axes = np.linalg.pinv(beta)[:, :2] if method == "paper" else beta[:2].T
    q, _ = np.linalg.qr(force_axes)  # Gram-Schmidt (orthonormal; only the plane matters downstream)
    return q.T


def uniform_shift(prep_nf1: np.ndarray, prep_ff1: np.ndarray, axes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The uniform shift: mean over targets of FF1 - NF1, orthogonalised against ``axes``.

    Returns:
        (unit axis (H,), the orthogonalised shift itself (H,)).

    Raises:
        ValueError: for mismatched shapes, NaN, or no shift left after orthogonalisation.
    """
    nf1 = _check_states("NF1 states", prep_nf1, 2)
    ff1 = _check_states("FF1 states", prep_ff1, 2)
    if nf1.shape != ff1.shape or axes.shape[1] != nf1.shape[1]:
        raise ValueError(f"mismatched shapes: NF1 {nf1.shape}, FF1 {ff1.shape}, axes {axes.shape}")
    shift = (ff1 - nf1).mean(0)
    shift = shift - axes.T @ (axes @ shift)
    norm = np.linalg.norm(shift)
    if norm < 1e-9 * max(1.0, np.abs(nf1).max()):
        raise ValueError("FF1 and NF1 preparatory states do not differ outside the force axes: no shift to measure")
    return shift / norm, shift


def normalised_projections(prep: dict[str, np.ndarray], axis: np.ndarray) -> dict[str, float]:
    """Each phase's mean preparatory state on ``axis``, as (x - NF1) / (FF1 - NF1)."""
    values = {phase: float(np.asarray(states).mean(0) @ axis) for phase, states in prep.items()}
    span = values["FF1"] - values["NF1"]
    return {phase: (v - values["NF1"]) / span for phase, v in values.items()}


def persistence(nf2: np.ndarray) -> dict[str, float]:
    """Across networks, the NF2 projections on the uniform shift: mean with a bootstrap 95% CI and a
    one-sample t-test of NF2 > 0 (the leaderboard recomputes a submission's column with this)."""
    nf2 = np.asarray(nf2, np.float64)
    test = stats.ttest_1samp(nf2, 0.0, alternative="greater") if len(nf2) > 1 else None
    return {
        **asdict(bootstrap_ci(nf2)),
        "t": float(test.statistic) if test else math.nan,
        "p_greater_than_0": float(test.pvalue) if test else math.nan,
    }


def analyse(records: dict[str, Any], config: LatentConfig = LatentConfig()) -> dict:
    """The analysis from per-phase records of K networks.

    Args:
        records: phase -> object with ``hidden`` (K, 8, T, H), ``endpoint_force`` (K, 8, T, 2),
            ``hand_position`` (K, 8, T, 2) and ``target`` (8, 2).
        config: steps.

    Returns:
        JSON-ready results: per network the axes' projections, across networks the tests.
    """
    missing = [p for p in PHASES if p not in records]
    if missing:
        raise ValueError(f"records need phases {list(PHASES)}, missing {missing}")
    for phase in PHASES:
        if records[phase].hidden is None or records[phase].endpoint_force is None:
            raise ValueError(f"{phase}: the agent exposes no recurrent state (or no endpoint force) to analyse")
    k = records["NF1"].hidden.shape[0]
    per_network: dict[str, list] = {f"projection_{p}": [] for p in PHASES}
    shifts = []
    for n in range(k):
        prep = {p: _check_states(f"{p} hidden states", records[p].hidden[n][:, config.prep_step], 2) for p in PHASES}
        axes = tdr_axes(prep["NF1"], records["NF1"].endpoint_force[n][:, config.force_step], config.tdr)
        axis, shift = uniform_shift(prep["NF1"], prep["FF1"], axes)
        shifts.append(shift)
        for phase, value in normalised_projections(prep, axis).items():
            per_network[f"projection_{phase}"].append(value)
    behaviour = {p: lateral_deviation(records[p].hand_position, records[p].target[None]).mean(-1) for p in PHASES}
    washout_behaviour = np.abs(behaviour["NF2"]) - np.abs(behaviour["NF1"])
    behaviour_test = stats.ttest_1samp(washout_behaviour, 0.0) if k > 1 and np.ptp(washout_behaviour) > 0 else None
    return {
        "config": asdict(config),
        "networks": k,
        "per_network": {**per_network, **{f"deviation_{p}_m": behaviour[p].tolist() for p in PHASES}},
        "persistence_NF2": persistence(np.asarray(per_network["projection_NF2"])),
        "behaviour_NF2_minus_NF1_abs_deviation_m": {
            **asdict(bootstrap_ci(washout_behaviour)),
            "t": float(behaviour_test.statistic) if behaviour_test else math.nan,
            "p": float(behaviour_test.pvalue) if behaviour_test else math.nan,
        },
        "_shifts": np.asarray(shifts),
    }


def phase_end_agent(run_dir: Path, phase: str, task: Mapping[str, Any] | None = None):
    """The run's BPTT networks as they were at the end of ``phase``, ready to evaluate under the
    run's task constants ``task`` (overrides of the defaults, e.g. ``{"test_go_time": 0.44}``)."""
    from agents.bptt import BPTTAgent
    from agents.controllers import RecurrentControllers
    from agents.serialization import load_checkpoint
    from savings_gym.schedule import paper_schedule

    path = run_dir / PHASE_ENDS / f"{phase}.pt"
    if not path.exists():
        raise ValueError(f"{path} is missing: the run has not finished phase {phase} (or predates phase_ends)")
    state = load_checkpoint(path)
    if "controllers_config" not in state:
        raise ValueError(f"{path}: this learner exposes no recurrent controllers to analyse")
    controllers = RecurrentControllers.from_config(state["controllers_config"])
    controllers.load_state_dict(state["controllers"])
    return BPTTAgent(controllers, paper_schedule(), task=task)


def run_latent(run_dir: str | Path, config: LatentConfig = LatentConfig()) -> dict:
    """``savings-gym latent RUN_DIR``: records, analyses, writes ``latent/latent.json`` and figures."""
    run_dir = Path(run_dir)
    result_file = run_dir / "result.json"
    if not result_file.exists():
        raise ValueError(f"{run_dir} holds no result.json: run the protocol first (savings-gym run --out {run_dir})")
    from benchmarks.safe_io import read_json

    try:  # read as the leaderboard reads a run (no links, bounded): the field gain and the task
        run_config = read_json(run_dir, "result.json")["config"]
        gain = float(run_config["preset"]["field_gain"])
    except (KeyError, TypeError) as error:
        raise ValueError(f"{result_file}: no config/preset/field_gain ({error!r}); not a savings-gym result") from None
    # the test reaches as the run measured them (e.g. --task test_go_time=0.44)
    recorded = run_config.get("task") or {}
    if not isinstance(recorded, dict):
        raise ValueError(f"{result_file}: config/task must be an object of task constants")
    env_id = run_config.get("env_id", "ArmCurlField-v0")
    task = task_overrides(env_id, recorded)
    try:
        task_params(env_id, **task)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{result_file}: config/task: {error}") from None
    records, agents = {}, {}
    for phase in PHASES:
        agents[phase] = phase_end_agent(run_dir, phase, task)
        records[phase] = agents[phase].evaluate(gain if phase.startswith("FF") else 0.0, endpoint_force=True)
    results = analyse(records, config)
    shifts = results.pop("_shifts")
    causal = []
    for m in config.multipliers:
        record = agents["NF2"].evaluate(gain, hidden_offset=m * shifts, offset_step=config.offset_step)
        causal.append(lateral_deviation(record.hand_position, record.target[None]).mean(-1))
    reference = agents["NF1"].evaluate(gain)
    results["causal"] = {
        "multipliers": list(config.multipliers),
        "first_trial_deviation_m": np.asarray(causal).T.tolist(),  # [network][multiplier]
        "nf1_first_trial_deviation_m": lateral_deviation(reference.hand_position, reference.target[None])
        .mean(-1)
        .tolist(),
        "field_gain": gain,
    }
    out = run_dir / "latent"
    atomic_write_json(out / "latent.json", results)
    _figures(out, records, results, config)
    return results


def _figures(out: Path, records: dict, results: dict, config: LatentConfig) -> None:
    from benchmarks.savings.figures import _figure, png

    colors = {"NF1": "tab:gray", "FF1": "tab:blue", "NF2": "tab:green", "FF2": "tab:red"}
    fig = _figure(5, 4.5)
    ax = fig.add_subplot()
    prep = {p: records[p].hidden[0][:, config.prep_step] for p in PHASES}
    axes = tdr_axes(prep["NF1"], records["NF1"].endpoint_force[0][:, config.force_step], config.tdr)
    for phase in PHASES:
        xy = prep[phase] @ axes.T
        ax.plot(*xy.T, "o-", color=colors[phase], label=phase, ms=5)
    ax.set_xlabel("force-x axis (TDR)")
    ax.set_ylabel("force-y axis (TDR)")
    ax.set_title("preparatory states of the 8 targets, network 0")
    ax.legend()
    atomic_write_bytes(out / "tdr_plane.png", png(fig))

    fig = _figure(5, 3.5)
    ax = fig.add_subplot()
    for i, phase in enumerate(PHASES):
        values = np.asarray(results["per_network"][f"projection_{phase}"])
        ci = bootstrap_ci(values)
        ax.errorbar(
            i,
            ci.estimate,
            yerr=[[ci.estimate - ci.low], [ci.high - ci.estimate]],
            fmt="o",
            color=colors[phase],
            capsize=4,
        )
        ax.plot(np.full(len(values), i) + 0.15, values, ".", color=colors[phase], alpha=0.5)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(4), PHASES)
    ax.set_ylabel("(x - NF1) / (FF1 - NF1) on the uniform shift")
    atomic_write_bytes(out / "shift_projection.png", png(fig))

    fig = _figure(5, 3.5)
    ax = fig.add_subplot()
    causal = results["causal"]
    deviation = np.asarray(causal["first_trial_deviation_m"]) * 100
    ax.plot(causal["multipliers"], deviation.mean(0), "o-", color="tab:green", label="NF2 network + m x shift")
    ax.axhline(np.mean(causal["nf1_first_trial_deviation_m"]) * 100, color="tab:gray", ls="--", label="NF1 network")
    ax.set_xlabel("m")
    ax.set_ylabel("first-trial lateral deviation in the field (cm)")
    ax.legend()
    atomic_write_bytes(out / "causal_test.png", png(fig))
