"""What the paradigms beyond A-B-A measure (issue 21): the adaptation index from the force the
muscles exert against the field, its error-clamp (channel) version, and each paradigm's metrics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from benchmarks.savings.metrics import (
    BOOTSTRAP_SEED,
    MIN_WINDOWS,
    WINDOW,
    _fit_or_nan,
    bootstrap_ci,
    normalised_area,
    orient,
    savings,
    window_average,
)


def field_cancelling_force(
    hand_velocity: np.ndarray, start: np.ndarray, target: np.ndarray, field_gain: float
) -> np.ndarray:
    """The lateral force (N) a fully adapted arm would push into the channel: the component along the
    channel's normal n (the start-target direction u turned 90 degrees counter-clockwise) of minus
    the curl field's force, -(k R v) . n = k (v . u), i.e. k times the hand's speed along the line.

    Args:
        hand_velocity: (..., T, 2) hand velocity (m/s) of each trial.
        start, target: (..., 2) each trial's line ends (m), broadcastable to the trials.
        field_gain: k of the field to compare with (N*s/m), e.g. field A's.

    Returns:
        (..., T) force (N), positive along n.
    """
    direction = np.asarray(target, np.float64) - np.asarray(start, np.float64)
    unit = direction / np.linalg.norm(direction, axis=-1, keepdims=True)
    return float(field_gain) * np.sum(np.asarray(hand_velocity, np.float64) * unit[..., None, :], axis=-1)


def adaptation_index(lateral_force: np.ndarray, ideal_force: np.ndarray) -> np.ndarray:
    """The field's measure of adaptation on error-clamp trials (Smith et al. 2006; Joiner & Smith
    2008): per trial, the slope b of the least-squares line ``lateral_force ~ a + b * ideal_force``
    over the trial's time steps, b = cov(ideal, measured) / var(ideal). 1: the arm pushes exactly
    the force that would cancel the field; 0: no compensation; negative: compensation for the
    opposite field. The intercept takes up a constant push, which is not field-specific.

    Args:
        lateral_force: (..., T) force the arm pushes into the channel (N), e.g. the env's ``channel_force``.
        ideal_force: (..., T) :func:`field_cancelling_force` of the same trials (N).

    Returns:
        (...,) the index (dimensionless); NaN for a trial whose ideal force does not vary (no movement).

    Raises:
        ValueError: for arrays of different shapes.
    """
    measured, ideal = np.asarray(lateral_force, np.float64), np.asarray(ideal_force, np.float64)
    if measured.shape != ideal.shape:
        raise ValueError(
            f"lateral_force and ideal_force must have the same shape (..., T), got {measured.shape} and {ideal.shape}"
        )
    centred = ideal - ideal.mean(-1, keepdims=True)
    variance = np.sum(centred * centred, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(variance > 0, np.sum(centred * measured, axis=-1) / variance, np.nan)


def channel_adaptation_index(
    hand_position: np.ndarray,
    hand_velocity: np.ndarray,
    start: np.ndarray,
    target: np.ndarray,
    field_gain: float,
    stiffness: float,
    damping: float,
    first_step: int = 0,
) -> np.ndarray:
    """The adaptation index of reaches made in the channel, from their hand states: the lateral force
    the arm pushes into the channel (:func:`savings_gym.task.channel_force`, the force transducer's
    reading) regressed onto :func:`field_cancelling_force` (:func:`adaptation_index`), over the steps
    from ``first_step`` (when the channel acts) to the end.

    Args:
        hand_position, hand_velocity: (..., R, T, 2) hand after each step (m, m/s).
        start: (2,) or (R, 2) where the reaches start (m).
        target: (R, 2) their targets (m).
        field_gain: k of the field to compare with (N*s/m), field A's.
        stiffness, damping: the channel's K (N/m) and D (N*s/m), the run's task constants.
        first_step: first step index in the regression.

    Returns:
        (..., R) the index of each reach.
    """
    from savings_gym.task import channel_force, channel_normal

    position, velocity = np.asarray(hand_position, np.float64), np.asarray(hand_velocity, np.float64)
    target = np.asarray(target, np.float64)
    start = np.broadcast_to(np.asarray(start, np.float64), target.shape)
    shape = position.shape[:-1]
    lines = [np.broadcast_to(x[:, None, :], shape + (2,)).reshape(-1, 2) for x in (start, target)]
    hand = np.concatenate([position, velocity], axis=-1).reshape(-1, 4)
    # the arm pushes with minus the channel's force, read along the channel's normal
    lateral = -np.sum(channel_force(hand, *lines, stiffness, damping) * channel_normal(*lines), axis=1)
    lateral = lateral.reshape(shape)
    ideal = field_cancelling_force(velocity, start, target, field_gain)
    return adaptation_index(lateral[..., first_step:], ideal[..., first_step:])


def paradigm_metrics(
    curves: Mapping[str, np.ndarray],
    adaptation: Mapping[str, np.ndarray] | None = None,
    window: int = WINDOW,
    seed: int = BOOTSTRAP_SEED,
    competence: Sequence[bool] | None = None,
) -> dict:
    """What each paradigm beyond A-B-A measures, from its learning curves (phase -> (K, batches), m)
    and the adaptation index of its channel test reaches (phase -> (K, batches)).

    * ``interference`` (phases FF1 and FFB): -A's learning against naive learning of a field, by the
      same fits and fit-free measures as savings (:func:`savings` with FFB, its sign flipped so that
      its errors point as FF1's, in FF2's place): ``savings_index`` log(r_FFB / r_FF1) below 0 and an
      ``area_ratio`` above 1 are interference. The naive reference is FF1, the same networks'
      learning of A after NF1 (the arm is not symmetric: A and -A may differ in difficulty).
    * ``spontaneous_recovery`` (a channel phase): per network, the index's first window (``start``),
      its highest window mean after it (``peak``) and ``rebound`` = peak - start, with bootstrap CIs;
      a rebound above 0 is spontaneous recovery. ``end_of_FFB``: the last window of FFB's deviation
      (m, oriented as FF1), how close -A brought the error to zero.
    * ``after_effect`` (phases FF1 and NF2): NF2's first-window deviation (m), oriented as the
      field's errors (so the after-effect of A is negative), per network with a CI; and
      ``relearning`` (phase FF2): its fitted rate, first error (m) and normalised area. Computed
      alike on a gradual run and on the abrupt one of the same lengths (``ArmCurlField-v0``), they
      compare the two (:func:`benchmarks.savings.summary.gradual_comparison`).

    Args:
        competence: (K,) networks past the competence gate; the others are left out (None: all count).
    """
    keep = np.ones(len(next(iter(curves.values()))), bool) if competence is None else np.asarray(competence, bool)
    rows = {p: np.atleast_2d(np.asarray(c, np.float64))[keep] for p, c in curves.items()}
    # oriented by an abrupt field phase: FF2 where there is one (a gradual FF1 starts near k = 0,
    # where its first errors have no reliable sign), else FF1
    abrupt = "FF2" if "FF2" in rows else "FF1"
    sign = orient(rows, (abrupt, abrupt)) if abrupt in rows else 1.0
    out: dict[str, Any] = {"window": window, "orientation": sign, "networks": int(keep.sum())}
    if "FF2" in rows and rows["FF2"].shape[1] >= MIN_WINDOWS * window:
        relearn = sign * rows["FF2"]
        rate = np.array([_fit_or_nan(c, window).rate for c in relearn])
        area = np.array([normalised_area(c) for c in relearn])
        out["relearning"] = {
            name: {"per_network": values.tolist(), "aggregate": asdict(bootstrap_ci(values, seed=seed))}
            for name, values in (("rate_FF2", rate), ("first_error_FF2", relearn[:, 0]), ("area_FF2", area))
        }
    if "FF1" in rows and "FFB" in rows and rows["FFB"].shape[1] >= MIN_WINDOWS * window:
        out["interference"] = savings({"FF1": rows["FF1"], "FF2": -rows["FFB"]}, window, seed)
        out["interference"]["compared"] = "FF2 here is FFB (field -A), its sign flipped; below 0: interference"
    if "FF1" in rows and "NF2" in rows and rows["NF2"].shape[1] >= window:
        effect = sign * rows["NF2"][:, :window].mean(1)
        out["after_effect"] = {"per_network": effect.tolist(), "aggregate": asdict(bootstrap_ci(effect, seed=seed))}
    for phase, index in (adaptation or {}).items():
        index = np.atleast_2d(np.asarray(index, np.float64))[keep]
        if index.shape[1] < 2 * window:
            continue
        means = window_average(index, window)
        start, peak = means[:, 0], means[:, 1:].max(1)
        block = {"phase": phase}
        for name, values in (("start", start), ("peak", peak), ("rebound", peak - start)):
            block[name] = {"per_network": values.tolist(), "aggregate": asdict(bootstrap_ci(values, seed=seed))}
        if "FFB" in rows and rows["FFB"].shape[1] >= window:
            end = sign * rows["FFB"][:, -window:].mean(1)
            block["end_of_FFB"] = {"per_network": end.tolist(), "aggregate": asdict(bootstrap_ci(end, seed=seed))}
        out["spontaneous_recovery"] = block
    return out
