"""The two-state (dual-rate) model of adaptation: the linear null model of savings.

Smith, Ghazizadeh & Shadmehr (2006, PLoS Biology 4:e179) model adaptation as the sum of a fast
and a slow process, each a leaky integrator of the error:

    x(n) = x_f(n) + x_s(n),   e(n) = f(n) - x(n)
    x_f(n+1) = A_f x_f(n) + B_f e(n),   x_s(n+1) = A_s x_s(n) + B_s e(n)

with f(n) the perturbation on trial n (here, a batch: +1 for field A, -1 for -A, 0 in the null
field, a fraction during a ramp) and e(n) = 0 on error-clamp (channel) trials, where the channel
removes the error. The fast process learns and forgets quickly (A_f < A_s, B_f > B_s). The model
explains spontaneous recovery and anterograde interference, and it predicts savings only while
the washout leaves the slow state non-zero: after a complete washout its relearning is its first
learning again. So FF2 relearnt faster than the model fitted to the run predicts is savings that a
linear two-rate memory cannot explain.

:data:`PUBLISHED` holds the values used in that paper's simulations, A_f 0.92, B_f 0.03, A_s 0.996,
B_s 0.004 (as quoted by independent re-implementations of its Figure 1; the paper's own text was
not reachable here).

A run's learning curve is the lateral deviation per batch (m), not the model's error in units of
the perturbation, so the fit maps one to the other with a scale and a baseline:
deviation(n) = baseline + scale * e(n). :func:`fit_two_state` fits the four rates, the scale and the
baseline per network to all the run's phases (scipy's least squares);
:func:`relearning_beyond_model` compares the measured FF2 curve with the one the fitted model
predicts, by the same exponential fits and fit-free measure as savings (:mod:`benchmarks.savings.metrics`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import optimize

from benchmarks.savings.metrics import WINDOW, bootstrap_ci, fit_exponential, normalised_area
from savings_gym.schedule import PAPER_BATCH_SIZE, Schedule


@dataclass(frozen=True)
class TwoStateParams:
    """Retention (A) and learning (B) rates of the fast and slow processes, per trial (batch)."""

    a_f: float
    b_f: float
    a_s: float
    b_s: float

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


PUBLISHED = TwoStateParams(a_f=0.92, b_f=0.03, a_s=0.996, b_s=0.004)
"""Smith, Ghazizadeh & Shadmehr 2006's simulation values (see the module docstring)."""


def perturbation(schedule: Schedule, batches: int, reference_gain: float, batch_size: int = PAPER_BATCH_SIZE):
    """The model's input per batch of a schedule: f (the mean gain of the batch's field trials over
    ``reference_gain``, field A's k) and whether the batch is all channel trials (then e = 0).

    Args:
        schedule: the hidden schedule.
        batches: batches to describe (from the schedule's start).
        reference_gain: k of field A (N*s/m), non-zero.
        batch_size: episodes per batch.

    Returns:
        (f, channel): (batches,) float64 and bool arrays.

    Raises:
        ValueError: for a zero reference gain or a non-positive count.
    """
    if not reference_gain or not math.isfinite(reference_gain):
        raise ValueError(f"reference_gain must be a finite non-zero gain (N*s/m), got {reference_gain!r}")
    if batches < 1 or batch_size < 1:
        raise ValueError(f"batches and batch_size must be >= 1, got {batches} and {batch_size}")
    gains, channels = schedule.trials_at(np.arange(batches * batch_size))
    gains, channels = gains.reshape(batches, batch_size), channels.reshape(batches, batch_size)
    field = (~channels).sum(1)
    with np.errstate(invalid="ignore"):
        f = np.where(field > 0, np.where(channels, 0.0, gains).sum(1) / np.maximum(field, 1), 0.0)
    return f / reference_gain, channels.all(1)


def simulate(
    params: TwoStateParams,
    f: np.ndarray,
    channel: np.ndarray | None = None,
    start: tuple[float, float] = (0.0, 0.0),
) -> dict[str, np.ndarray]:
    """Runs the two-state model through a perturbation sequence.

    Args:
        params: the rates.
        f: (N,) perturbation per trial (units of field A).
        channel: (N,) True on error-clamp trials (e = 0); default none.
        start: (x_f, x_s) before the first trial.

    Returns:
        ``x_f``, ``x_s``, ``x`` (the states before each trial, (N,)) and ``e`` (the error each trial
        shows: f - x, the error the model learns from; on channel trials f - x too, what the
        trial would show without the clamp, while learning uses 0).
    """
    f = np.asarray(f, np.float64)
    channel = np.zeros(len(f), bool) if channel is None else np.asarray(channel, bool)
    if channel.shape != f.shape:
        raise ValueError(f"channel must have the shape of f {f.shape}, got {channel.shape}")
    x_f, x_s = np.empty(len(f)), np.empty(len(f))
    fast, slow = start
    for n in range(len(f)):
        x_f[n], x_s[n] = fast, slow
        e = 0.0 if channel[n] else f[n] - fast - slow
        fast = params.a_f * fast + params.b_f * e
        slow = params.a_s * slow + params.b_s * e
    x = x_f + x_s
    return {"x_f": x_f, "x_s": x_s, "x": x, "e": f - x}


@dataclass(frozen=True)
class TwoStateFit:
    """A two-state model fitted to one learning curve: deviation = baseline + scale * (f - x).

    Attributes:
        params: the fitted rates.
        scale: deviation (m) per unit of unlearnt perturbation.
        baseline: deviation (m) with no perturbation left.
        rmse: root-mean-square residual (m).
        success: the optimiser's verdict.
    """

    params: TwoStateParams
    scale: float
    baseline: float
    rmse: float
    success: bool

    def predict(self, f: np.ndarray, channel: np.ndarray | None = None) -> np.ndarray:
        """The learning curve (m) the fitted model predicts through ``f``."""
        return self.baseline + self.scale * simulate(self.params, f, channel)["e"]

    def to_dict(self) -> dict:
        return {**asdict(self.params), "scale": self.scale, "baseline": self.baseline, "rmse": self.rmse,
                "success": self.success}  # fmt: skip


def _rates(theta: np.ndarray) -> TwoStateParams:
    # A_f < A_s and B_s < B_f by construction: logits of A_f, of where A_s lies in (A_f, 1), of B_s,
    # and of where B_f lies in (B_s, 1)
    a_f, u, b_s, v = 1 / (1 + np.exp(-np.clip(theta[:4], -30, 30)))
    return TwoStateParams(float(a_f), float(b_s + (1 - b_s) * v), float(a_f + (1 - a_f) * u), float(b_s))


def _logits(params: TwoStateParams) -> np.ndarray:
    def logit(p: float) -> float:
        p = min(max(p, 1e-9), 1 - 1e-9)
        return math.log(p / (1 - p))

    u = (params.a_s - params.a_f) / (1 - params.a_f)
    v = (params.b_f - params.b_s) / (1 - params.b_s)
    return np.array([logit(params.a_f), logit(u), logit(params.b_s), logit(v)])


def fit_two_state(
    curve: np.ndarray,
    f: np.ndarray,
    channel: np.ndarray | None = None,
    fitted: np.ndarray | None = None,
    starts: Sequence[TwoStateParams] = (PUBLISHED, TwoStateParams(0.8, 0.1, 0.99, 0.01)),
) -> TwoStateFit:
    """Fits the two-state model to one learning curve (one network), by least squares over the
    batches marked ``fitted`` (default: all but the channel batches, whose deviation the channel
    holds at zero), from each of ``starts``, keeping the best.

    Args:
        curve: (N,) deviation per batch (m), every phase in schedule order.
        f, channel: the model's input (:func:`perturbation`).
        fitted: (N,) bool, the batches whose residuals count.
        starts: initial rates.

    Raises:
        ValueError: for shapes that differ or fewer than 7 batches to fit.
    """
    curve, f = np.asarray(curve, np.float64), np.asarray(f, np.float64)
    channel = np.zeros(len(f), bool) if channel is None else np.asarray(channel, bool)
    fitted = ~channel if fitted is None else np.asarray(fitted, bool)
    if not curve.shape == f.shape == channel.shape == fitted.shape or curve.ndim != 1:
        raise ValueError(
            f"curve, f, channel and fitted must be (N,) arrays of one length, got shapes {curve.shape}, "
            f"{f.shape}, {channel.shape}, {fitted.shape}"
        )
    use = fitted & np.isfinite(curve)
    if use.sum() < 7:
        raise ValueError(f"need at least 7 finite batches to fit 6 parameters, got {int(use.sum())}")

    def residuals(theta: np.ndarray) -> np.ndarray:
        e = simulate(_rates(theta), f, channel)["e"]
        return (theta[5] + theta[4] * e - curve)[use]

    first = curve[use][np.argmax(np.abs(f[use]) > 0)] if np.any(np.abs(f[use]) > 0) else curve[use][0]
    baseline = float(np.median(curve[use][np.abs(f[use]) == 0])) if np.any(f[use] == 0) else 0.0
    best = None
    for start in starts:
        theta0 = np.concatenate([_logits(start), [first - baseline, baseline]])
        result = optimize.least_squares(residuals, theta0, method="trf", x_scale="jac", max_nfev=2000)
        if best is None or result.cost < best.cost:
            best = result
    rmse = float(np.sqrt(2 * best.cost / use.sum()))
    return TwoStateFit(_rates(best.x), float(best.x[4]), float(best.x[5]), rmse, bool(best.success))


def relearning_beyond_model(
    measured: np.ndarray, predicted: np.ndarray, sign: float = 1.0, window: int = WINDOW
) -> dict:
    """How much faster the measured relearning is than the model predicts, per network and across
    networks: the log ratio of the exponential rates log(r_measured / r_predicted) (the savings
    index's fit, :func:`benchmarks.savings.metrics.fit_exponential`) and, fit-free, the difference of the
    normalised areas A(predicted) - A(measured) (:func:`benchmarks.savings.metrics.normalised_area`); above
    0 both mean faster than a linear two-rate memory explains. Mean and bootstrap 95% CI of each.

    Args:
        measured, predicted: (K, B) the relearning phase's curves (m), per network.
        sign: orientation making the phase's errors positive (:func:`benchmarks.savings.metrics.orient`).
        window: batches per window of the fits.
    """
    measured = sign * np.asarray(measured, np.float64)
    predicted = sign * np.asarray(predicted, np.float64)
    if measured.shape != predicted.shape or measured.ndim != 2:
        raise ValueError(f"measured and predicted must both be (K, B), got {measured.shape} and {predicted.shape}")
    log_ratio, area = [], []
    for m, p in zip(measured, predicted, strict=True):
        r_m, r_p = fit_exponential(m, window).rate, fit_exponential(p, window).rate
        log_ratio.append(math.log(r_m / r_p) if r_m > 0 and r_p > 0 else math.nan)
        area.append(normalised_area(p) - normalised_area(m))
    return {
        "per_network": {"log_rate_ratio": log_ratio, "area_difference": area},
        "aggregate": {
            "log_rate_ratio": asdict(bootstrap_ci(np.array(log_ratio))),
            "area_difference": asdict(bootstrap_ci(np.array(area))),
        },
    }


def two_state_report(
    curves: Mapping[str, np.ndarray],
    schedule: Schedule,
    reference_gain: float,
    relearning: str = "FF2",
    sign: float = 1.0,
) -> dict:
    """The two-state comparison of a run: fit every network to all its phases, predict the
    relearning phase, and compare (:func:`relearning_beyond_model`).

    Args:
        curves: phase -> (K, batches) deviation (m), as a result file's ``learning_curves``; the
            phases of ``schedule``, in its order, one batch per ``PAPER_BATCH_SIZE`` episodes.
        schedule: the run's hidden schedule.
        reference_gain: k of field A (N*s/m).
        relearning: the phase whose relearning is compared (FF2 in the paper's protocol).
        sign: orientation making the relearning errors positive.

    Returns:
        ``fits`` (per network), ``predicted`` (K, B) relearning curves, and ``beyond_model``.
    """
    names = [p.name for p in schedule.phases if p.name in curves]
    if relearning not in names:
        raise ValueError(f"relearning phase {relearning!r} is not among the run's curves {names}")
    joined = np.concatenate([np.asarray(curves[name], np.float64) for name in names], axis=1)
    lengths = [np.asarray(curves[name]).shape[1] for name in names]
    f, channel = perturbation(schedule, joined.shape[1], reference_gain)
    first = sum(lengths[: names.index(relearning)])
    window = slice(first, first + lengths[names.index(relearning)])
    fits = [fit_two_state(curve, f, channel) for curve in joined]
    predicted = np.array([fit.predict(f, channel)[window] for fit in fits])
    report = {
        "model": "two-state (Smith, Ghazizadeh & Shadmehr 2006), fitted per network to every phase",
        "fits": [fit.to_dict() for fit in fits],
        "predicted": predicted.tolist(),
    }
    if predicted.shape[1] >= 3 * WINDOW:
        report["beyond_model"] = relearning_beyond_model(joined[:, window], predicted, sign)
    else:
        report["beyond_model"] = None
        report["beyond_model_reason"] = f"{relearning} has {predicted.shape[1]} batches, fewer than 3 windows to fit"
    for name in names:  # channel phases: the adaptation the model predicts there (x, in units of A)
        phase = schedule.phases[schedule.names.index(name)]
        if phase.kind == "channel":
            start = sum(lengths[: names.index(name)])
            where = slice(start, start + lengths[names.index(name)])
            states = [simulate(fit.params, f, channel)["x"][where] for fit in fits]
            report.setdefault("predicted_adaptation", {})[name] = np.array(states).tolist()
    return report


def result_report(result: Mapping) -> dict:
    """:func:`two_state_report` of a result file's run: its learning curves, its hidden schedule (the
    ``schedule`` its config records, else the paper's at its preset's lengths) and field A's gain.
    The relearning phase is FF2 (``ArmCurlField-v0``, gradual), else FFB (interference, spontaneous
    recovery: -A after A, which the model predicts too); oriented as the first field phase's errors.

    Raises:
        ValueError: for a result with neither phase.
    """
    from benchmarks.savings.metrics import orient
    from savings_gym.schedule import paper_schedule

    config = result["config"]
    gain = float(config["preset"]["field_gain"])
    schedule = (
        Schedule(config["schedule"]) if "schedule" in config else paper_schedule(gain, config["preset"]["batches"])
    )
    curves = {
        name: np.asarray(c, np.float64) for name, c in result["learning_curves"].items() if name in schedule.names
    }
    relearning = next((name for name in ("FF2", "FFB") if name in curves), None)
    if relearning is None:
        raise ValueError(f"the run has no relearning phase (FF2 or FFB) to compare, its phases are {sorted(curves)}")
    sign = orient({relearning: curves[relearning]}, (relearning, relearning))
    report = two_state_report(curves, schedule, gain, relearning, sign)
    return {"relearning": relearning, **report}
