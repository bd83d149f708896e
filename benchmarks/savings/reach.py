"""Reach quality: whether the learners reach at all (endpoint error, competence) and whether their reach
held through the protocol (no collapse), and gating the savings measures on it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from benchmarks.safe_io import _short

REACH_RADIUS = 0.02  # m: a reach has arrived once the hand is this close to the target


COMPETENCE_MAX_ENDPOINT_ERROR = 0.05  # m: half the 10 cm reach; networks ending farther do not reach


def reach_quality(hand_position: np.ndarray, target: np.ndarray, dt: float = 0.01) -> dict[str, np.ndarray]:
    """How well each network reaches, over its test reaches (e.g. the 8 null-field ones before FF1).

    Args:
        hand_position: (K, R, T, 2) hand after each step of R reaches (m).
        target: (R, 2) targets (m).
        dt: time step (s).

    Returns:
        Per network, (K,) arrays: ``endpoint_error``, the mean distance of the hand to the target
        after the last step (m); ``path_length``, the mean length of the hand's path from its position
        after the first step (m); ``arrived``, the fraction of reaches whose hand comes within
        :data:`REACH_RADIUS` of the target; ``time_to_target``, the mean over those reaches of the
        first time from the trial's start at which it does (s; NaN when none does).
    """
    hand = np.asarray(hand_position, np.float64)
    distance = np.linalg.norm(hand - np.asarray(target, np.float64)[None, :, None], axis=-1)  # (K, R, T)
    close = distance < REACH_RADIUS
    arrived = close.any(-1)  # (K, R)
    first = (close.argmax(-1) + 1).astype(np.float64) * dt  # the hand after step t (from 0) is at (t + 1) dt
    with np.errstate(invalid="ignore"):
        time = np.where(arrived, first, 0.0).sum(-1) / arrived.sum(-1)
    return {
        "endpoint_error": distance[..., -1].mean(-1),
        "path_length": np.linalg.norm(np.diff(hand, axis=2), axis=-1).sum(-1).mean(-1),
        "arrived": arrived.mean(-1),
        "time_to_target": np.where(arrived.any(-1), time, np.nan),
    }


def competent(endpoint_error: np.ndarray, max_endpoint_error: float = COMPETENCE_MAX_ENDPOINT_ERROR) -> np.ndarray:
    """The competence gate: (K,) True for networks whose mean endpoint error on the null-field test
    reaches before FF1 (:func:`reach_quality`) is below ``max_endpoint_error`` (m, default 5 cm, half
    the reach). Networks that do not reach are left out of the savings metrics (:func:`savings`):
    a small lateral deviation of an arm that barely moves is not a skill the field could disturb."""
    return np.asarray(endpoint_error, np.float64) < max_endpoint_error


COLLAPSE_ENDPOINT_FACTOR = 2.0  # x the network's own null-field endpoint error before FF1 ...


COLLAPSE_MIN_ENDPOINT_ERROR = COMPETENCE_MAX_ENDPOINT_ERROR  # ... and never below half the reach (m)


COLLAPSE_MIN_PATH_FRACTION = 0.7  # of the reach distance: a hand that travels less has stopped reaching


COLLAPSE_WINDOW = 10  # batches averaged before a reach counts as collapsed (one bad batch is noise)


REACH_DIGITS = 6  # reach curves are stored to the micrometre; the flags are computed from the stored values


def reach_held(
    reach_curves: Mapping[str, Mapping[str, np.ndarray]],
    baseline_endpoint_error: np.ndarray,
    reach_distance: float,
    window: int = COLLAPSE_WINDOW,
) -> dict[str, Any]:
    """Whether each network's reach held through every phase of its run: a learning curve can fall
    because the learner learnt the field or because it stopped reaching (a hand that stays at the
    start deviates from no line), and only the first is adaptation.

    A network's reach collapsed when, in any ``window`` consecutive batches of any phase (all of a
    shorter phase), its mean test-reach endpoint error under that phase's field exceeds
    max(:data:`COLLAPSE_ENDPOINT_FACTOR` x its null-field endpoint error before FF1,
    :data:`COLLAPSE_MIN_ENDPOINT_ERROR`), or its mean hand path is shorter than
    :data:`COLLAPSE_MIN_PATH_FRACTION` x ``reach_distance``. (A competent GRU's endpoint error in
    a fresh field is 2-3 cm; a learner that trades its reach for a small deviation ends 10 cm or
    more away, or barely moves.)

    Args:
        reach_curves: phase -> ``{"endpoint_error": (K, batches), "path_length": (K, batches)}`` (m),
            per network and batch the mean over the test reaches (:func:`reach_quality`).
        baseline_endpoint_error: (K,) null-field endpoint error before FF1 (the competence gate's, m).
        reach_distance: start-to-target distance of the test reaches (m).
        window: batches averaged.

    Returns:
        ``held`` ((K,) bool) and ``collapsed_in`` (per network the phases where its reach collapsed).

    Raises:
        ValueError: for curves of other shapes than (K, batches), a baseline of other than K
            finite values, or a distance or window that is not positive.
    """
    baseline = np.asarray(baseline_endpoint_error, np.float64)
    if baseline.ndim != 1 or not np.isfinite(baseline).all():
        raise ValueError(f"baseline_endpoint_error must be K finite numbers, got {_short(baseline.tolist())}")
    if not (isinstance(reach_distance, int | float) and 0 < reach_distance < math.inf):
        raise ValueError(f"reach_distance must be a positive number (m), got {reach_distance!r}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be an integer >= 1, got {window!r}")
    limit = np.maximum(COLLAPSE_ENDPOINT_FACTOR * baseline, COLLAPSE_MIN_ENDPOINT_ERROR)
    collapsed_in: list[list[str]] = [[] for _ in baseline]
    for phase, quality in reach_curves.items():
        rows = {}
        for key in ("endpoint_error", "path_length"):
            rows[key] = np.asarray(quality.get(key) if isinstance(quality, Mapping) else None, np.float64)
            if rows[key].ndim != 2 or rows[key].shape[0] != baseline.size:
                raise ValueError(
                    f"reach_curves[{phase!r}][{key!r}] must be ({baseline.size}, batches), got shape {rows[key].shape}"
                )
        if rows["endpoint_error"].shape[1] == 0:
            continue
        width = min(window, rows["endpoint_error"].shape[1])
        smooth = {k: _moving_mean(v, width) for k, v in rows.items()}
        with np.errstate(invalid="ignore"):
            bad = (
                (smooth["endpoint_error"] > limit[:, None]).any(1)
                | (smooth["path_length"] < COLLAPSE_MIN_PATH_FRACTION * reach_distance).any(1)
                | ~np.isfinite(smooth["endpoint_error"]).all(1)  # an arm that diverged does not reach
                | ~np.isfinite(smooth["path_length"]).all(1)
            )
        for k in np.flatnonzero(bad):
            collapsed_in[k].append(phase)
    return {"held": np.array([not phases for phases in collapsed_in]), "collapsed_in": collapsed_in}


def _moving_mean(rows: np.ndarray, width: int) -> np.ndarray:
    """Means of every ``width`` consecutive points along the last axis (NaN-propagating)."""
    cumulative = np.concatenate([np.zeros((rows.shape[0], 1)), np.cumsum(rows, axis=1)], axis=1)
    return (cumulative[:, width:] - cumulative[:, :-width]) / width


def gate_curves(
    curves: Mapping[str, np.ndarray], competence: Sequence[bool]
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The curves of the networks that passed the competence gate, and the ``competence`` block of
    :func:`savings` (``networks``, ``competent``, ``excluded``, ``per_network`` flags).

    Raises:
        ValueError: unless ``competence`` holds one boolean per network of ``curves``.
    """
    rows = {p: np.atleast_2d(np.asarray(c, np.float64)) for p, c in curves.items()}
    total = rows["FF1"].shape[0] if "FF1" in rows else 0
    gate = np.asarray(competence)
    if gate.dtype != bool or gate.shape != (total,):
        raise ValueError(f"competence must be {total} booleans (one per network), got {_short(list(competence))}")
    block = {"networks": total, "competent": int(gate.sum()), "excluded": int(total - gate.sum())}
    return {p: r[gate] for p, r in rows.items()}, {**block, "per_network": [bool(v) for v in gate]}


def _gated(
    curves: Mapping[str, np.ndarray], competence: Sequence[bool] | None, reach: Sequence[bool] | None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The curves of the networks that pass both gates (a gate not given passes all) and the
    ``competence`` and ``reach`` blocks of the gates given."""
    total = np.atleast_2d(np.asarray(curves["FF1"])).shape[0] if "FF1" in curves else 0
    keep = np.ones(total, bool)
    blocks: dict[str, Any] = {}
    for name, flags, passed, failed in (
        ("competence", competence, "competent", "excluded"),
        ("reach", reach, "held", "collapsed"),
    ):
        if flags is None:
            continue
        gate = np.asarray(flags)
        if gate.dtype != bool or gate.shape != (total,):
            raise ValueError(f"{name} must be {total} booleans (one per network), got {_short(list(flags))}")
        blocks[name] = {
            "networks": total,
            passed: int(gate.sum()),
            failed: int(total - gate.sum()),
            "per_network": [bool(v) for v in gate],
        }
        keep &= gate
    kept, _ = gate_curves(curves, [bool(v) for v in keep])
    return kept, blocks
