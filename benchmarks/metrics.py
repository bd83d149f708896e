"""Savings metrics: pure functions from arrays to numbers (SPEC.md, "How savings is measured").

Units: positions and deviations in metres, learning rates per window of ``window`` batches.

* :func:`lateral_deviation`: the signed maximum perpendicular distance of a hand path from the
  line joining the hand at step 25 to the target.
* :func:`learning_curve`: per batch, the mean over the 8 test targets.
* :func:`fit_exponential`: ``y = a exp(-r x) + c`` over window averages, by Nelder-Mead with a and
  r in log space; r is the learning rate.
* :func:`savings`: per network, the FF1 and FF2 rates, the savings index log(r_FF2 / r_FF1), the
  first-trial errors, and across networks a paired t-test, a sign-flip test on the median
  difference and bootstrap 95% confidence intervals (scipy).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize, stats

REFERENCE_STEP = 25  # the paper measures deviation from the line (hand at this step) -> target
WINDOW = 5  # batches per window before fitting, as the paper


def lateral_deviation(
    hand_position: np.ndarray, target: np.ndarray, reference_step: int = REFERENCE_STEP
) -> np.ndarray:
    """Signed maximum lateral deviation of hand paths (m).

    The line runs from the hand position at ``reference_step`` (index into the positions recorded
    after each step) to the target. The deviation is the largest perpendicular distance of the
    path from that line, positive when the hand passes on the clockwise side of the line
    (cross(hand - start, target - start) > 0), negative on the other.

    Args:
        hand_position: (..., T, 2) hand paths.
        target: (..., 2) targets, broadcastable to the paths' leading shape.
        reference_step: index of the line's starting point.

    Returns:
        (...) signed deviations.

    Raises:
        ValueError: for paths too short to hold ``reference_step`` or of the wrong shape.
    """
    hand_position, target = np.asarray(hand_position, np.float64), np.asarray(target, np.float64)
    if hand_position.ndim < 2 or hand_position.shape[-1] != 2:
        raise ValueError(f"hand_position must be (..., T, 2), got shape {hand_position.shape}")
    if hand_position.shape[-2] <= reference_step:
        raise ValueError(f"paths of {hand_position.shape[-2]} steps do not reach reference step {reference_step}")
    start = hand_position[..., reference_step, :]
    line = np.broadcast_to(target, start.shape) - start
    relative = hand_position - start[..., None, :]
    along = (relative * line[..., None, :]).sum(-1) / (line * line).sum(-1)[..., None]
    perpendicular = relative - along[..., None] * line[..., None, :]
    distance = np.linalg.norm(perpendicular, axis=-1)
    peak = distance.argmax(-1)
    at_peak = np.take_along_axis(relative, peak[..., None, None].repeat(2, -1), axis=-2)[..., 0, :]
    sign = np.sign(at_peak[..., 0] * line[..., 1] - at_peak[..., 1] * line[..., 0])
    return sign * np.take_along_axis(distance, peak[..., None], axis=-1)[..., 0]


def learning_curve(deviations: np.ndarray) -> np.ndarray:
    """Mean over the last axis (the 8 test targets): (K, batches, 8) -> (K, batches)."""
    return np.asarray(deviations).mean(-1)


def window_average(curve: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Means of consecutive windows of ``window`` points along the last axis (a partial last window is dropped)."""
    curve = np.asarray(curve, np.float64)
    n = curve.shape[-1] // window
    if n == 0:
        raise ValueError(f"a curve of {curve.shape[-1]} points is shorter than one window of {window}")
    return curve[..., : n * window].reshape(*curve.shape[:-1], n, window).mean(-1)


@dataclass(frozen=True)
class ExponentialFit:
    """``y = amplitude * exp(-rate * x) + offset`` with x in windows.

    ``rate`` is NaN where the curve has no decay to fit (flat, rising, or not finite); ``reason``
    then says which.
    """

    amplitude: float
    rate: float
    offset: float
    success: bool
    reason: str = ""

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.amplitude * np.exp(-self.rate * np.asarray(x, np.float64)) + self.offset


MIN_WINDOWS = 3


def fit_exponential(curve: np.ndarray, window: int = WINDOW) -> ExponentialFit:
    """Fits an exponential decay to a learning curve, as the paper: window averages, then
    Nelder-Mead on (log a, log r, c) from (log y_0, log 0.004, y_last), least squares.

    Args:
        curve: (batches,) errors, oriented so that learning makes them fall (see :func:`savings`).
        window: batches per window.

    Raises:
        ValueError: for a curve with fewer than 3 windows.
    """
    y = window_average(curve, window)
    if y.ndim != 1:
        raise ValueError(f"fit one curve at a time, got shape {np.shape(curve)}")
    if len(y) < MIN_WINDOWS:
        raise ValueError(f"need at least {MIN_WINDOWS} windows of {window} batches to fit, got {len(y)}")
    if not np.isfinite(y).all():
        return ExponentialFit(math.nan, math.nan, math.nan, False, "curve has NaN or inf")
    if not y[0] > y[-1] or not y[0] > 0:
        return ExponentialFit(math.nan, math.nan, math.nan, False, "curve does not decay")
    x = np.arange(len(y), dtype=np.float64)

    def loss(theta: np.ndarray) -> float:
        return float(np.linalg.norm(y - (np.exp(theta[0]) * np.exp(-np.exp(theta[1]) * x) + theta[2])))

    result = optimize.minimize(
        loss,
        [math.log(y[0]), math.log(0.004), y[-1]],
        method="Nelder-Mead",
        options={"maxiter": 10000, "xatol": 1e-8, "fatol": 1e-12},
    )
    la, lr, c = result.x
    return ExponentialFit(float(math.exp(la)), float(math.exp(lr)), float(c), bool(result.success))


@dataclass(frozen=True)
class Interval:
    """A point estimate with a 95% confidence interval."""

    estimate: float
    low: float
    high: float


def bootstrap_ci(values: np.ndarray, statistic=np.mean, seed: int = 0) -> Interval:
    """``statistic`` of ``values`` with a 95% BCa bootstrap interval (scipy; NaNs dropped)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 2 or np.ptp(values) == 0:
        estimate = float(statistic(values)) if len(values) else math.nan
        return Interval(estimate, estimate, estimate)
    for method in ("BCa", "percentile"):  # BCa can fail on tiny samples: then fall back to percentiles
        result = stats.bootstrap(
            (values,),
            statistic,
            confidence_level=0.95,
            n_resamples=9999,
            method=method,
            random_state=np.random.default_rng(seed),
        )
        low, high = result.confidence_interval
        if np.isfinite(low) and np.isfinite(high):
            break
    return Interval(float(statistic(values)), float(low), float(high))


def orient(curves: Mapping[str, np.ndarray], field_phases: tuple[str, str] = ("FF1", "FF2")) -> float:
    """The sign that makes field errors positive: the sign of the mean first-window FF1 deviation."""
    first = np.asarray(curves[field_phases[0]], np.float64)[..., :WINDOW]
    sign = np.sign(np.nanmean(first))
    return float(sign) if sign != 0 else 1.0


def savings(curves: Mapping[str, np.ndarray], window: int = WINDOW, seed: int = 0) -> dict:
    """Savings metrics from learning curves.

    Args:
        curves: phase name -> (K, batches) mean signed lateral deviation per network and batch;
            needs ``FF1`` and ``FF2`` (``NF1``/``NF2`` used when present).
        window: batches per window for the fits.
        seed: for the bootstrap.

    Returns:
        A JSON-ready dict: per network (``rate_FF1``, ``rate_FF2``, ``savings_index``,
        ``first_error_FF1``, ``first_error_FF2``, ``has_savings``, ``faster_first_trial``), and
        aggregates (means with bootstrap CIs, fraction of networks with savings, paired t-test
        of the rates, sign-flip test of the median rate difference).
    """
    for phase in ("FF1", "FF2"):
        if phase not in curves:
            raise ValueError(f"curves need phase {phase!r}, got {sorted(curves)}")
    ff1, ff2 = (np.atleast_2d(np.asarray(curves[p], np.float64)) for p in ("FF1", "FF2"))
    if ff1.shape[0] != ff2.shape[0]:
        raise ValueError(f"FF1 and FF2 must have the same networks, got {ff1.shape[0]} and {ff2.shape[0]}")
    sign = orient(curves)
    fits1 = [_fit_or_nan(sign * c, window) for c in ff1]
    fits2 = [_fit_or_nan(sign * c, window) for c in ff2]
    rate1 = np.array([f.rate for f in fits1])
    rate2 = np.array([f.rate for f in fits2])
    with np.errstate(divide="ignore", invalid="ignore"):
        index = np.log(rate2 / rate1)
    first1, first2 = sign * ff1[:, 0], sign * ff2[:, 0]
    valid = np.isfinite(index)
    per_network = {
        "rate_FF1": rate1.tolist(),
        "rate_FF2": rate2.tolist(),
        "savings_index": index.tolist(),
        "first_error_FF1": first1.tolist(),
        "first_error_FF2": first2.tolist(),
        "has_savings": [bool(v) for v in (rate2 > rate1)],
        "faster_first_trial": [bool(v) for v in (first2 < first1)],
        "fit_FF1": [asdict(f) for f in fits1],
        "fit_FF2": [asdict(f) for f in fits2],
    }
    aggregate = {
        "networks": int(len(index)),
        "networks_with_fit": int(valid.sum()),
        "orientation": sign,
        "savings_index": asdict(bootstrap_ci(index, seed=seed)),
        "fraction_with_savings": float(np.mean(rate2[valid] > rate1[valid])) if valid.any() else math.nan,
        "fraction_smaller_first_error": float(np.mean(first2 < first1)),
        "first_error_FF1": asdict(bootstrap_ci(first1, seed=seed)),
        "first_error_FF2": asdict(bootstrap_ci(first2, seed=seed)),
        "rate_ttest": _paired_tests(np.log(rate2[valid]), np.log(rate1[valid]), seed),
        "first_error_ttest": _paired_tests(first1, first2, seed),
    }
    if "NF2" in curves:
        nf2 = np.atleast_2d(np.asarray(curves["NF2"], np.float64))
        aggregate["washout_after_effect"] = asdict(bootstrap_ci(-sign * nf2[:, 0], seed=seed))
    return {"window": window, "per_network": per_network, "aggregate": aggregate}


def _fit_or_nan(curve: np.ndarray, window: int) -> ExponentialFit:
    try:
        return fit_exponential(curve, window)
    except ValueError as error:  # too short: reported as a missing fit, not a crash at the end of a run
        return ExponentialFit(math.nan, math.nan, math.nan, False, str(error))


def _paired_tests(a: np.ndarray, b: np.ndarray, seed: int) -> dict:
    """Paired t-test and sign-flip (permutation) test of the median of a - b (two-sided)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or np.ptp(a - b) == 0:
        return {
            "t": math.nan,
            "p": math.nan,
            "median_difference": float(np.median(a - b)) if len(a) else math.nan,
            "sign_flip_p": math.nan,
            "n": int(len(a)),
        }
    t = stats.ttest_rel(a, b)
    flips = stats.permutation_test(
        (a - b,),
        np.median,
        permutation_type="samples",
        n_resamples=9999,
        alternative="two-sided",
        random_state=np.random.default_rng(seed),
    )
    return {
        "t": float(t.statistic),
        "p": float(t.pvalue),
        "median_difference": float(np.median(a - b)),
        "sign_flip_p": float(flips.pvalue),
        "n": int(len(a)),
    }
