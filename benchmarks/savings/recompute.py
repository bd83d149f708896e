"""Checking a result's reported metrics against the ones recomputed from its raw curves, within stated
tolerances: what the leaderboard does with every submission (:func:`check_recomputed`)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from benchmarks.safe_io import _short
from benchmarks.savings.metrics import CONTROLS, N_RESAMPLES, WINDOW, orient, savings, window_average
from benchmarks.savings.reach import _gated

# -- recomputation ---------------------------------------------------------------------------------
# How far a reported metric may lie from its recomputation, per kind of metric (tests/test_metrics.py
# recomputes on networks permuted and curves moved by 1 ulp and checks each bound holds with room):
VALUE_RTOL = 1e-9  # deterministic arithmetic on the same numbers: first errors, bootstraps, t-tests


VALUE_ATOL = 1e-15


# An exponential fit is only determined up to its residual: where the curve barely decays over the
# phase (rate x windows << 1) amplitude and rate trade off along a flat valley, and Nelder-Mead ends
# anywhere on it (rates moved 50% under a 1-ulp change of the curve). So a reported fit is checked
# by its residual: it must fit the curve as well as ours, to these tolerances (the loss is in m).
# Nelder-Mead stops on the size of its simplex, not at the minimum: in such a valley the residual
# where it stops varied by up to 1.1e-4 relative between 1-ulp-apart curves of the shipped entries.
FIT_LOSS_RTOL = 1e-3


FIT_LOSS_ATOL = 1e-12


# a sign-flip p-value counts resamples: a tie broken the other way by rounding moves it by a count
P_VALUE_ATOL = 2 / (N_RESAMPLES + 1)


def fit_loss(curve: np.ndarray, fit: Mapping[str, float], window: int = WINDOW) -> float:
    """The residual (m) that :func:`fit_exponential` minimises, of a fit's parameters on a curve."""
    y = window_average(curve, window)
    x = np.arange(len(y), dtype=np.float64)
    return float(np.linalg.norm(y - (fit["amplitude"] * np.exp(-fit["rate"] * x) + fit["offset"])))


def check_recomputed(
    reported: Any,
    curves: Mapping[str, np.ndarray],
    window: int = WINDOW,
    competence: Sequence[bool] | None = None,
    reach: Sequence[bool] | None = None,
) -> tuple[dict, list]:
    """Recomputes the savings metrics and compares a reported copy with them, metric by metric.

    With ``competence`` (one flag per network, :func:`competent`) and/or ``reach`` (:func:`reach_held`),
    over the networks that pass both only, as :func:`savings` computes them, and the reported
    ``competence`` / ``reach`` blocks must match too.

    Values computed by deterministic arithmetic are compared within :data:`VALUE_RTOL`; each fit by
    its residual (:data:`FIT_LOSS_RTOL`), and the rates, indices and aggregates that follow from the
    fits are recomputed from the *reported* fits, so an ill-conditioned fit ending elsewhere on
    another machine does not reject an honest result. The ``fit_free`` and ``practice_control``
    blocks are checked where reported (results written before they existed lack them; the board
    shows the recomputed ones either way).

    Returns:
        The recomputed metrics (what a leaderboard shows) and the mismatches as (field, reported,
        expected) triples, the first per metric.
    """
    if competence is not None or reach is not None:
        curves, blocks = _gated(curves, competence, reach)
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            ours, problems = check_recomputed(reported, curves, window)
        ours = {**ours, **blocks}
        for name, block in blocks.items():
            if not problems:
                got = reported.get(name) if isinstance(reported, dict) else None
                problems += mismatches(got, block, f"metrics/{name}")[:1]
        return ours, problems
    ours = savings(curves, window)
    problems: list[tuple[str, Any, Any]] = []
    if not isinstance(reported, dict) or not isinstance(reported.get("per_network"), dict):
        return ours, [("metrics", _short(reported), "an object with per_network and aggregate")]
    if reported.get("window") != window:
        problems.append(("metrics/window", reported.get("window"), window))
    got = reported["per_network"]
    n = len(ours["per_network"]["rate_FF1"])
    for key in ours["per_network"]:
        if not isinstance(got.get(key), list) or len(got[key]) != n:
            return ours, [*problems, (f"metrics/per_network/{key}", _short(got.get(key)), f"a list of {n} values")]
    for key in ("first_error_FF1", "first_error_FF2", "faster_first_trial"):
        problems += mismatches(got[key], ours["per_network"][key], f"metrics/per_network/{key}")[:1]
    fits = {"FF1": ("per_network", got["fit_FF1"]), "FF2": ("per_network", got["fit_FF2"])}
    for phase in (phase for phase in CONTROLS if phase in curves):
        block = CONTROLS[phase][0]
        control = reported.get(block)
        given = control.get("per_network", {}).get(f"fit_{phase}") if isinstance(control, dict) else None
        if not isinstance(given, list) or len(given) != n:
            return ours, [*problems, (f"metrics/{block}/per_network/fit_{phase}", _short(given), f"{n} fits")]
        fits[phase] = (f"{block}/per_network", given)
    sign = orient(curves)
    for phase, (block, given) in fits.items():
        rows = np.atleast_2d(np.asarray(curves[phase], np.float64))
        for i, (fit, mine) in enumerate(zip(given, _fits_of(ours, phase), strict=True)):
            problem = _fit_problem(fit, mine, sign * rows[i], window)
            if problem:
                problems.append((f"metrics/{block}/fit_{phase}/{i}", _short(fit), problem))
                break
    if problems:
        return ours, problems
    implied = savings(curves, window, fits={phase: given for phase, (_, given) in fits.items()})
    for key in ("rate_FF1", "rate_FF2", "savings_index", "has_savings"):
        problems += mismatches(got[key], implied["per_network"][key], f"metrics/per_network/{key}")[:1]
    problems += mismatches(reported.get("aggregate"), implied["aggregate"], "metrics/aggregate")[:1]
    for block in ("fit_free", *(block for block, _, _ in CONTROLS.values())):
        if block in reported or block != "fit_free" and block in implied:
            problems += mismatches(reported.get(block), implied.get(block), f"metrics/{block}")[:1]
    return ours, problems


def _fits_of(metrics: Mapping[str, Any], phase: str) -> list[dict]:
    """The per-network fits of ``phase`` in a :func:`savings` dict."""
    if phase in CONTROLS:
        return metrics[CONTROLS[phase][0]]["per_network"][f"fit_{phase}"]
    return metrics["per_network"][f"fit_{phase}"]


def _fit_problem(fit: Any, mine: dict, curve: np.ndarray, window: int) -> str:
    """Why a reported fit is not one of the curve's best fits ("" when it is)."""
    if not isinstance(fit, dict) or not all(
        isinstance(fit.get(k), int | float) and not isinstance(fit.get(k), bool)
        for k in ("amplitude", "rate", "offset")
    ):
        return "needs numeric amplitude, rate and offset"
    if not math.isfinite(mine["rate"]):
        return "" if math.isnan(fit["rate"]) else f"the curve has no decay to fit ({mine['reason']}), so no rate"
    if not (math.isfinite(fit["rate"]) and fit["rate"] > 0):
        return f"the curve decays (fitted rate {mine['rate']:.6g}), the reported rate is {fit['rate']!r}"
    reported, best = fit_loss(curve, fit, window), fit_loss(curve, mine, window)
    if reported > best * (1 + FIT_LOSS_RTOL) + FIT_LOSS_ATOL:
        return f"residual {reported:.9g} m is worse than the best fit's {best:.9g} m"
    return ""


def mismatches(reported: Any, expected: Any, where: str) -> list[tuple[str, Any, Any]]:
    """Fields where two JSON trees differ: numbers within :data:`VALUE_RTOL` (p-values within
    :data:`P_VALUE_ATOL`), NaN equal to NaN, everything else exactly; (field, reported, expected)."""
    if isinstance(expected, dict):
        if not isinstance(reported, dict):
            return [(where, _short(reported), "an object")]
        return [m for key in expected for m in mismatches(reported.get(key), expected[key], f"{where}/{key}")]
    if isinstance(expected, list):
        if not isinstance(reported, list) or len(reported) != len(expected):
            return [(where, _short(reported), f"a list of {len(expected)}")]
        return [
            m for i, (r, e) in enumerate(zip(reported, expected, strict=True)) for m in mismatches(r, e, f"{where}/{i}")
        ]
    if isinstance(expected, float) and isinstance(reported, int | float) and not isinstance(reported, bool):
        if math.isnan(expected) or math.isnan(reported):
            return [] if math.isnan(expected) and math.isnan(reported) else [(where, reported, expected)]
        atol = P_VALUE_ATOL if where.endswith("_p") else VALUE_ATOL
        return (
            [] if math.isclose(reported, expected, rel_tol=VALUE_RTOL, abs_tol=atol) else [(where, reported, expected)]
        )
    same = reported == expected and type(reported) is type(expected)
    return [] if same else [(where, _short(reported), expected)]
