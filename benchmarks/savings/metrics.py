"""Savings metrics: pure functions from arrays to numbers (SPEC.md, "How savings is measured").

Units: positions and deviations in metres, learning rates per window of ``window`` batches.

A "batch" here is one point of a learning curve: the test reaches before one update. With the
paper's protocol an update is one batch of 8 reaches; with more reaches per update
(:attr:`benchmarks.savings.presets.Preset.reaches_per_update`, ``--reaches-per-update``) every count below
is in updates: a window is 5 updates, the early batches and batches to half error are updates, and
:func:`~benchmarks.savings.reach.reach_held`'s window is 10 updates.

* :func:`lateral_deviation`: the signed maximum perpendicular distance of a hand path from the
  line joining the hand at step 25 to the target.
* :func:`learning_curve`: per batch, the mean over the 8 test targets.
* :func:`fit_exponential`: ``y = a exp(-r x) + c`` over window averages, by Nelder-Mead with a and
  r in log space; r is the learning rate.
* :func:`savings`: per network, the FF1 and FF2 rates, the savings index log(r_FF2 / r_FF1), the
  first-trial errors, and across networks a paired t-test, a sign-flip test on the median
  difference and bootstrap 95% confidence intervals (scipy); beside them the fit-free measures
  (:func:`fit_free`) and, when the run has the practice control (phase ``FFC``) or the reset
  control (``FFR``), every measure of FF2 against the control and of the control against FF1.
* Fit-free measures, per network and phase, of a curve whose first batch is the phase's first
  error e0: the normalised area mean(curve) / e0 (:func:`normalised_area`), the batches until a
  5-batch mean first falls to e0 / 2 (:func:`half_error_batches`, censored at the phase's end) and
  the fraction of e0 removed by the early batches (:func:`early_reduction`).
* Error-clamp (channel) trials: :func:`~benchmarks.savings.paradigms.field_cancelling_force`, the
  lateral force that would cancel the field, and
  :func:`~benchmarks.savings.paradigms.adaptation_index`, the per-trial regression slope of the
  force the arm pushes into the channel onto it (1: fully adapted, 0: naive, negative: adapted the
  other way).
* The competence gate: :func:`~benchmarks.savings.reach.reach_quality` (endpoint error, path length,
  time to target of the null-field test reaches before FF1) and
  :func:`~benchmarks.savings.reach.competent` (endpoint error below
  :data:`~benchmarks.savings.reach.COMPETENCE_MAX_ENDPOINT_ERROR`, 5 cm); :func:`savings` leaves the
  other networks out.

Over 500 lines because the savings measures and their aggregate share the windowing, exponential
fits and bootstrap defined here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

from benchmarks.savings.reach import _gated

REFERENCE_STEP = 25  # the paper measures deviation from the line (hand at this step) -> target
WINDOW = 5  # batches per window before fitting, as the paper
RESET_PHASE = "FFR"
"""The reset control's FF2 (:func:`benchmarks.savings.protocol.reset_learners`): the learners of NF1's start."""
CONTROLS = {"FFC": ("practice_control", "control", "practice"), RESET_PHASE: ("reset_control", "reset", "reset")}
"""Control phase -> (its block in :func:`savings`, the name of FF2's measures against it, the name
of its own measures against FF1): the practice control's FFC and the reset control's FFR."""


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


N_RESAMPLES = 9999
BOOTSTRAP_SEED = 0


def bootstrap_ci(values: np.ndarray, statistic: Callable[..., Any] = np.mean, seed: int = BOOTSTRAP_SEED) -> Interval:
    """``statistic`` of ``values`` with a deterministic 95% percentile-bootstrap interval (NaNs dropped).

    The values are sorted before resampling and the resampling indices come from a fixed seed, so
    the interval depends on the multiset of values only: the same values in another order (networks
    listed differently, another machine) give the same interval. The percentile method is used
    rather than BCa because its bounds are order statistics of the resampled statistics, which move
    continuously with the values; BCa's bias correction counts resamples below the estimate, a step
    function that flips under rounding (many resamples of n values are permutations of the sample,
    so their statistic ties the estimate to the last bit), which moved BCa bounds 6e-5 relative
    when the inputs were scaled by 1 + 1e-15.

    Args:
        values: (n,) samples, e.g. one value per network.
        statistic: a function of an array and an ``axis`` keyword (np.mean, :func:`iqm`).
        seed: seed of the resampling indices.
    """
    values = np.sort(np.asarray(values, np.float64).ravel())
    values = values[np.isfinite(values)]
    if len(values) < 2 or np.ptp(values) == 0:
        estimate = float(statistic(values)) if len(values) else math.nan
        return Interval(estimate, estimate, estimate)
    indices = np.random.default_rng(seed).integers(0, len(values), (N_RESAMPLES, len(values)))
    resampled = np.sort(statistic(values[indices], axis=-1))
    low, high = np.quantile(resampled, [0.025, 0.975])
    return Interval(float(statistic(values)), float(low), float(high))


def format_ci(interval: dict[str, float], fmt: str = "{:+.2f}") -> str:
    """``estimate [low, high]``, or ``n/a`` where there is no estimate (no network with a fit)."""
    if not math.isfinite(interval["estimate"]):
        return "n/a"
    return f"{fmt.format(interval['estimate'])} [{fmt.format(interval['low'])}, {fmt.format(interval['high'])}]"


def iqm(values: np.ndarray, axis: int | None = None) -> float | np.ndarray:
    """Interquartile mean: the mean of the middle 50% (robust to a few outlying seeds)."""
    result = stats.trim_mean(values, 0.25, axis=axis)
    return float(result) if axis is None else result


def orient(curves: Mapping[str, np.ndarray], field_phases: tuple[str, str] = ("FF1", "FF2")) -> float:
    """The sign that makes field errors positive: the sign of the mean first-window FF1 deviation."""
    first = np.asarray(curves[field_phases[0]], np.float64)[..., :WINDOW]
    sign = np.sign(np.nanmean(first))
    return float(sign) if sign != 0 else 1.0


# -- fit-free measures -------------------------------------------------------------------------------
EARLY_FRACTION = 6  # the early batches are the first 1/6 of the shorter field phase (20 of 120), whole windows


def early_batches(length: int, window: int = WINDOW) -> int:
    """How many first batches :func:`early_reduction` looks at, for field phases of ``length`` batches:
    a sixth of the phase in whole windows, at least one window (20 of 120; 530 of 3,201)."""
    return max(window, (length // EARLY_FRACTION) // window * window)


def _initial(curve: np.ndarray) -> float:
    """The phase's first error e0, or NaN when there is no error to remove (e0 <= 0 or not finite)."""
    first = float(curve[0]) if len(curve) else math.nan
    return first if math.isfinite(first) and first > 0 else math.nan


def normalised_area(curve: np.ndarray) -> float:
    """The area under a learning curve per batch, in units of its first error: mean(curve) / curve[0].

    1 for no learning, near 0 when the error is gone after the first batch; NaN when curve[0] <= 0.
    """
    curve = np.asarray(curve, np.float64)
    return float(np.mean(curve) / _initial(curve))


def half_error_batches(curve: np.ndarray, window: int = WINDOW) -> tuple[float, bool]:
    """Batches until half of the first error is gone: the first b at which the mean of batches
    b .. b + window - 1 is at most curve[0] / 2 (a mean, so that one lucky batch does not count).

    Returns:
        (b, censored): b = the phase's length and censored = True when it never happens; (NaN, False)
        when curve[0] <= 0.
    """
    curve = np.asarray(curve, np.float64)
    e0 = _initial(curve)
    if math.isnan(e0):
        return math.nan, False
    if len(curve) < window:
        return float(len(curve)), True
    means = np.convolve(curve, np.ones(window) / window, mode="valid")
    below = np.flatnonzero(means <= e0 / 2)
    return (float(below[0]), False) if len(below) else (float(len(curve)), True)


def early_reduction(curve: np.ndarray, batches: int, window: int = WINDOW) -> float:
    """The fraction of the first error removed by batch ``batches``: 1 - mean(last window of the
    first ``batches``) / curve[0]. 0 for no learning, 1 when the error is gone; NaN when curve[0] <= 0."""
    curve = np.asarray(curve, np.float64)
    if not window <= batches <= len(curve):
        raise ValueError(f"early batches must lie in [{window}, {len(curve)}] for this curve, got {batches}")
    return float(1 - np.mean(curve[batches - window : batches]) / _initial(curve))


FIT_FREE_MEASURES = ("area_ratio", "half_error_difference", "early_reduction_difference")
"""The fit-free savings measures, each one number per network, and which way savings points:
``area_ratio`` A(later) / A(earlier) of the normalised areas (below 1: savings);
``half_error_difference`` batches to half error, earlier minus later (above 0: savings);
``early_reduction_difference`` early reduction, later minus earlier (above 0: savings)."""


def fit_free(
    later: np.ndarray, earlier: np.ndarray, sign: float, window: int = WINDOW, seed: int = BOOTSTRAP_SEED
) -> dict:
    """The fit-free measures of a later field phase against an earlier one (e.g. FF2 vs FF1).

    Args:
        later, earlier: (K, batches) learning curves of the same K networks (signed; ``sign``
            orients them so that field errors are positive).

    Returns:
        ``early_batches``, ``per_network`` (each phase's area, half-error batches with their
        censoring, early reduction, and the three measures of :data:`FIT_FREE_MEASURES`) and
        ``aggregate``: per measure the mean with a bootstrap CI, the fraction of networks on the
        savings side, and paired t and sign-flip tests of the phases' values (NaN networks left out).
    """
    later, earlier = (sign * np.atleast_2d(np.asarray(c, np.float64)) for c in (later, earlier))
    n_early = early_batches(min(later.shape[1], earlier.shape[1]), window)
    per_phase = {}
    for label, curves in (("later", later), ("earlier", earlier)):
        halves = [half_error_batches(c, window) for c in curves]
        per_phase[label] = {
            "area": np.array([normalised_area(c) for c in curves]),
            "half_error_batches": np.array([h for h, _ in halves]),
            "half_error_censored": [bool(censored) for _, censored in halves],
            # a phase shorter than one window has no early batches to measure (as it has no fit)
            "early_reduction": np.array(
                [early_reduction(c, n_early, window) if n_early <= len(c) else math.nan for c in curves]
            ),
        }
    a, b = per_phase["later"], per_phase["earlier"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((a["area"] > 0) & (b["area"] > 0), a["area"] / b["area"], math.nan)
    measures = {
        "area_ratio": (ratio, ratio < 1, (b["area"], a["area"])),
        "half_error_difference": (
            b["half_error_batches"] - a["half_error_batches"],
            b["half_error_batches"] > a["half_error_batches"],
            (b["half_error_batches"], a["half_error_batches"]),
        ),
        "early_reduction_difference": (
            a["early_reduction"] - b["early_reduction"],
            a["early_reduction"] > b["early_reduction"],
            (a["early_reduction"], b["early_reduction"]),
        ),
    }
    per_network: dict[str, list] = {}
    for label in ("later", "earlier"):
        for key, values in per_phase[label].items():
            per_network[f"{key}_{label}"] = [v if isinstance(v, bool) else float(v) for v in values]
    aggregate = {}
    for name, (values, savings_side, (first, second)) in measures.items():
        per_network[name] = [float(v) for v in values]
        valid = np.isfinite(values)
        aggregate[name] = {
            **asdict(bootstrap_ci(values, seed=seed)),
            "networks": int(valid.sum()),
            "fraction_with_savings": float(np.mean(savings_side[valid])) if valid.any() else math.nan,
            "tests": _paired_tests(first[valid], second[valid], seed),
        }
    return {"early_batches": n_early, "per_network": per_network, "aggregate": aggregate}


def savings(
    curves: Mapping[str, np.ndarray],
    window: int = WINDOW,
    seed: int = BOOTSTRAP_SEED,
    fits: Mapping[str, list[Mapping[str, Any]]] | None = None,
    competence: Sequence[bool] | None = None,
    reach: Sequence[bool] | None = None,
) -> dict:
    """Savings metrics from learning curves.

    Args:
        curves: phase name -> (K, batches) mean signed lateral deviation per network and batch;
            needs ``FF1`` and ``FF2`` (``NF1``/``NF2`` used when present; ``FFC``, the practice
            control's field phase, adds the ``practice_control`` block, and ``FFR``, the reset
            control's, the ``reset_control`` block).
        window: batches per window for the fits.
        seed: for the bootstrap.
        fits: phase -> per-network exponential fits (``amplitude``, ``rate``, ``offset``,
            ``success``, ``reason``) to use instead of fitting, e.g. a submission's own (checked by
            :func:`check_recomputed`); of the competent networks only when ``competence`` is given.
        competence: (K,) whether each network passed the competence gate (:func:`competent`).
            Every metric below is then over the competent networks only (``per_network`` lists
            them alone, ``aggregate.networks`` counts them), and a ``competence`` block counts
            them: ``networks`` (K), ``competent``, ``excluded`` and the per-network flags. None:
            no gate recorded (results from before it), every network counts.
        reach: (K,) whether each network's reach held through its run (:func:`reach_held`); the
            metrics are then also only over those networks, and a ``reach`` block counts them
            (``networks``, ``held``, ``collapsed``, ``per_network``). None: not recorded.

    Returns:
        A JSON-ready dict: per network (``rate_FF1``, ``rate_FF2``, ``savings_index``,
        ``first_error_FF1``, ``first_error_FF2``, ``has_savings``, ``faster_first_trial``), and
        aggregates (:func:`aggregate`); ``fit_free`` (:func:`fit_free`, FF2 against FF1); with
        ``FFC``, ``practice_control``: per network the FFC fit, the savings index against the control
        log(r_FF2 / r_FFC) and the practice index log(r_FFC / r_FF1), their aggregates, and the
        fit-free measures of FF2 against FFC and of FFC against FF1; with ``FFR``, ``reset_control``
        likewise (``savings_index_vs_reset`` log(r_FF2 / r_FFR), ``reset_index`` log(r_FFR / r_FF1),
        ``fit_free_vs_reset``, ``fit_free_reset``: :data:`CONTROLS` names them).
    """
    for phase in ("FF1", "FF2"):
        if phase not in curves:
            raise ValueError(f"curves need phase {phase!r}, got {sorted(curves)}")
    if competence is not None or reach is not None:
        kept, blocks = _gated(curves, competence, reach)
        with warnings.catch_warnings(), np.errstate(all="ignore"):  # no competent network: NaN, not warnings
            warnings.simplefilter("ignore", RuntimeWarning)
            result = savings(kept, window, seed, fits)
        return {**result, **blocks}
    fitted = ("FF1", "FF2", *(phase for phase in CONTROLS if phase in curves))
    rows = {p: np.atleast_2d(np.asarray(curves[p], np.float64)) for p in fitted}
    for phase in fitted[1:]:
        if rows[phase].shape[0] != rows["FF1"].shape[0]:
            raise ValueError(
                f"FF1 and {phase} must have the same networks, got {rows['FF1'].shape[0]} and {rows[phase].shape[0]}"
            )
    sign = orient(curves)
    if fits is None:
        fits = {p: [asdict(_fit_or_nan(sign * c, window)) for c in rows[p]] for p in fitted}
    rate = {p: np.array([f["rate"] for f in fits[p]], np.float64) for p in fitted}
    first = {p: sign * rows[p][:, 0] for p in fitted}
    index = _log_ratio(rate["FF2"], rate["FF1"])
    per_network = {
        "rate_FF1": rate["FF1"].tolist(),
        "rate_FF2": rate["FF2"].tolist(),
        "savings_index": index.tolist(),
        "first_error_FF1": first["FF1"].tolist(),
        "first_error_FF2": first["FF2"].tolist(),
        "has_savings": [bool(v) for v in (rate["FF2"] > rate["FF1"])],
        "faster_first_trial": [bool(v) for v in (first["FF2"] < first["FF1"])],
        "fit_FF1": [dict(f) for f in fits["FF1"]],
        "fit_FF2": [dict(f) for f in fits["FF2"]],
    }
    result = {
        "window": window,
        "per_network": per_network,
        "aggregate": aggregate(per_network, curves, seed),
        "fit_free": fit_free(rows["FF2"], rows["FF1"], sign, window, seed),
    }
    for phase in fitted[2:]:
        block, versus, own = CONTROLS[phase]
        against, effect = _log_ratio(rate["FF2"], rate[phase]), _log_ratio(rate[phase], rate["FF1"])
        result[block] = {
            "per_network": {
                f"rate_{phase}": rate[phase].tolist(),
                f"fit_{phase}": [dict(f) for f in fits[phase]],
                f"first_error_{phase}": first[phase].tolist(),
                f"savings_index_vs_{versus}": against.tolist(),
                f"{own}_index": effect.tolist(),
            },
            "aggregate": {
                f"savings_index_vs_{versus}": _index_summary(against, seed),
                f"{own}_index": _index_summary(effect, seed),
                f"first_error_{phase}": asdict(bootstrap_ci(first[phase], seed=seed)),
                f"first_error_FF2_vs_{phase}": _paired_tests(first[phase], first["FF2"], seed),
            },
            f"fit_free_vs_{versus}": fit_free(rows["FF2"], rows[phase], sign, window, seed),
            f"fit_free_{own}": fit_free(rows[phase], rows["FF1"], sign, window, seed),
        }
    return result


def _log_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log(np.asarray(a, np.float64) / np.asarray(b, np.float64))


def _index_summary(index: np.ndarray, seed: int) -> dict:
    """A log-rate index across networks: mean with bootstrap CI, networks with both fits, the fraction
    above 0 and a one-sample t-test and sign-flip test against 0 (as paired tests of the two log rates)."""
    valid = np.isfinite(index)
    return {
        **asdict(bootstrap_ci(index, seed=seed)),
        "networks": int(valid.sum()),
        "fraction_above_zero": float(np.mean(index[valid] > 0)) if valid.any() else math.nan,
        "tests": _paired_tests(index[valid], np.zeros(int(valid.sum())), seed),
    }


def aggregate(per_network: Mapping[str, list], curves: Mapping[str, np.ndarray], seed: int = BOOTSTRAP_SEED) -> dict:
    """Across networks: means with bootstrap CIs (:func:`bootstrap_ci`), the fraction of networks
    with savings, a paired t-test of the log rates and a sign-flip test of their median difference.

    Args:
        per_network: the per-network block of :func:`savings` (its rates and first errors are used).
        curves: the learning curves (the orientation and the NF2 after-effect come from them).
        seed: for the bootstrap.
    """
    sign = orient(curves)
    rate1, rate2 = (np.asarray(per_network[k], np.float64) for k in ("rate_FF1", "rate_FF2"))
    first1, first2 = (np.asarray(per_network[k], np.float64) for k in ("first_error_FF1", "first_error_FF2"))
    with np.errstate(divide="ignore", invalid="ignore"):
        index = np.log(rate2 / rate1)
    valid = np.isfinite(index)
    result = {
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
        result["washout_after_effect"] = asdict(bootstrap_ci(-sign * nf2[:, 0], seed=seed))
    return result


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
        (np.sort(a - b),),  # sorted: the resampled signs then fall on the same values in any network order
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
