"""Metrics on synthetic data with known answers."""

import json
import math

import numpy as np
import pytest

from benchmarks.savings.metrics import (
    FIT_FREE_MEASURES,
    bootstrap_ci,
    early_batches,
    early_reduction,
    fit_exponential,
    fit_free,
    half_error_batches,
    lateral_deviation,
    learning_curve,
    normalised_area,
    savings,
    window_average,
)
from benchmarks.savings.recompute import check_recomputed


def _path(bulge: float, direction=(1.0, 0.0), steps=100):
    """A reach from the origin to 10 cm along ``direction``, bowing sideways by ``bulge`` (m) to the
    left of the direction of motion, still until step 30."""
    d = np.asarray(direction) / np.linalg.norm(direction)
    left = np.array([-d[1], d[0]])
    s = np.clip((np.arange(steps) - 30) / 50, 0, 1)
    return 0.1 * s[:, None] * d + bulge * np.sin(np.pi * s)[:, None] * left, 0.1 * d


def test_straight_reach_has_no_deviation():
    path, target = _path(0.0)
    assert lateral_deviation(path, target) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("direction", [(1, 0), (0, 1), (-1, 1), (0.3, -0.8)])
def test_deviation_magnitude_and_sign(direction):
    left, target = _path(0.02, direction)
    right, _ = _path(-0.02, direction)
    # the hand bowing to the left of its motion is on the counter-clockwise side: negative
    assert lateral_deviation(left, target) == pytest.approx(-0.02, rel=1e-3)
    assert lateral_deviation(right, target) == pytest.approx(0.02, rel=1e-3)


def test_deviation_batches_over_leading_axes():
    paths = np.stack([_path(b)[0] for b in (0.01, -0.03)])
    targets = np.stack([_path(0)[1]] * 2)
    np.testing.assert_allclose(lateral_deviation(paths, targets), [-0.01, 0.03], rtol=1e-3)
    assert learning_curve(np.ones((3, 4, 8))).shape == (3, 4)


def test_deviation_rejects_bad_shapes():
    with pytest.raises(ValueError, match="reference step"):
        lateral_deviation(np.zeros((10, 2)), np.zeros(2))
    with pytest.raises(ValueError, match=r"\(\.\.\., T, 2\)"):
        lateral_deviation(np.zeros((100, 3)), np.zeros(3))


@pytest.mark.parametrize("rate", [0.02, 0.1, 0.5])
def test_fit_recovers_a_known_rate(rate):
    x = np.arange(300) / 5  # 300 batches = 60 windows
    curve = 0.03 * np.exp(-rate * x) + 0.004
    fit = fit_exponential(curve)
    # window averaging shifts x by half a window: the rate is unchanged
    assert fit.rate == pytest.approx(rate, rel=0.03)
    assert fit.offset == pytest.approx(0.004, abs=1e-3)


def test_fit_tolerates_noise():
    rng = np.random.default_rng(0)
    x = np.arange(400) / 5
    rates = [fit_exponential(0.03 * np.exp(-0.1 * x) + 0.004 + rng.normal(0, 0.002, x.size)).rate for _ in range(20)]
    assert np.median(rates) == pytest.approx(0.1, rel=0.15)


@pytest.mark.parametrize(
    "curve, reason",
    [
        (np.full(50, 0.01), "does not decay"),
        (np.linspace(0.0, 0.02, 50), "does not decay"),
        (np.r_[np.full(25, np.nan), np.ones(25)], "NaN"),
    ],
)
def test_fit_degenerate_curves_give_nan_rates(curve, reason):
    fit = fit_exponential(curve)
    assert math.isnan(fit.rate) and not fit.success and reason in fit.reason


def test_fit_refuses_too_short_curves():
    with pytest.raises(ValueError, match="at least 3 windows"):
        fit_exponential(np.linspace(1, 0, 12))
    with pytest.raises(ValueError, match="shorter than one window"):
        window_average(np.ones(3))


def test_savings_on_synthetic_networks():
    x = np.arange(200) / 5
    rng = np.random.default_rng(1)
    ff1 = np.stack([0.03 * np.exp(-0.05 * x) + rng.normal(0, 5e-4, x.size) for _ in range(8)])
    ff2 = np.stack([0.02 * np.exp(-0.15 * x) + rng.normal(0, 5e-4, x.size) for _ in range(8)])
    # a field that pushes the other way gives negative deviations: orientation makes them positive
    result = savings({"FF1": -ff1, "FF2": -ff2, "NF2": ff1[:, :10] * 0.3})
    aggregate = result["aggregate"]
    assert aggregate["orientation"] == -1.0
    assert aggregate["fraction_with_savings"] == 1.0 and aggregate["fraction_smaller_first_error"] == 1.0
    index = aggregate["savings_index"]
    assert index["estimate"] == pytest.approx(math.log(3), rel=0.15)
    assert index["low"] < index["estimate"] < index["high"]
    assert aggregate["rate_ttest"]["t"] > 5 and aggregate["rate_ttest"]["p"] < 1e-3
    # the median is robust to flipping the smallest differences: with 8 networks p cannot go below 1/16
    assert aggregate["rate_ttest"]["sign_flip_p"] <= 0.0625 + 1e-9
    assert len(result["per_network"]["savings_index"]) == 8


def test_savings_without_savings():
    x = np.arange(200) / 5
    curves = np.stack([0.03 * np.exp(-0.1 * x)] * 4)
    result = savings({"FF1": curves, "FF2": curves})
    assert result["aggregate"]["fraction_with_savings"] == 0.0
    assert result["aggregate"]["savings_index"]["estimate"] == pytest.approx(0.0, abs=1e-6)


def test_savings_input_errors():
    with pytest.raises(ValueError, match="FF2"):
        savings({"FF1": np.ones((2, 50))})
    with pytest.raises(ValueError, match="same networks"):
        savings({"FF1": np.ones((2, 50)), "FF2": np.ones((3, 50))})


def test_bootstrap_ci_edge_cases():
    assert bootstrap_ci(np.array([1.0, 1.0, 1.0])).low == 1.0
    assert math.isnan(bootstrap_ci(np.array([np.nan])).estimate)
    ci = bootstrap_ci(np.random.default_rng(0).normal(2.0, 1.0, 50))
    assert ci.low < 2.0 < ci.high


def test_bootstrap_is_blind_to_order_and_continuous_in_the_values():
    from benchmarks.savings.metrics import bootstrap_ci, iqm

    values = np.array([0.3, -0.2, 0.8, 0.1, 0.45, 0.05, 1.2, -0.4])
    shuffled = np.random.default_rng(3).permutation(values)
    for statistic in (np.mean, iqm):
        a, b = bootstrap_ci(values, statistic), bootstrap_ci(shuffled, statistic)
        assert a == b  # bit for bit: sorted before resampling, fixed seed
        c = bootstrap_ci(values * (1 + 1e-15), statistic)
        for x, y in zip((a.estimate, a.low, a.high), (c.estimate, c.low, c.high), strict=True):
            assert abs(x - y) <= 1e-13 * abs(x)  # moves with its inputs, no BCa step


@pytest.mark.parametrize("entry", ["gru-256-36bf4a3e", "sb3-RecurrentPPO-128-cued-7774bed3"])
def test_each_tolerance_holds_for_permuted_and_1_ulp_moved_curves(entry):
    """Justifies the tolerances of benchmarks.savings.metrics: a shipped run's curves, networks permuted and
    every value moved by 1 ulp, recomputed; the original curves' recomputation must accept it. The
    two entries hold ill-conditioned fits (rates near 1e-4 per window) that move by up to 50%."""
    import json
    from pathlib import Path

    from benchmarks.savings.metrics import savings
    from benchmarks.savings.recompute import check_recomputed

    result = json.loads((Path(__file__).parent.parent / "leaderboard" / entry / "result.json").read_text())
    curves = {p: np.asarray(rows, np.float64) for p, rows in result["learning_curves"].items()}
    order = np.random.default_rng(0).permutation(len(curves["FF1"]))
    permuted = {p: c[order] for p, c in curves.items()}
    moved = savings({p: np.nextafter(c, np.inf) for p, c in permuted.items()})
    assert check_recomputed(moved, permuted)[1] == []
    assert check_recomputed(savings(permuted), {p: np.nextafter(c, np.inf) for p, c in permuted.items()})[1] == []
    assert check_recomputed(result["metrics"], curves)[1] == []  # the shipped metrics, as written


# -- fit-free measures -------------------------------------------------------------------------------
def _exponential(rate, batches=120, first=0.04, networks=8, noise=0.0, seed=0):
    """(networks, batches) curves first * exp(-rate * batch), plus Gaussian noise of std ``noise`` (m)."""
    rng = np.random.default_rng(seed)
    return first * np.exp(-rate * np.arange(batches))[None] + noise * rng.standard_normal((networks, batches))


def test_fit_free_measures_of_known_curves():
    curve = _exponential(np.log(2) / 30)[0]  # half the error gone at batch 30
    # the 5-batch mean from batch b is e^(-rb) x 0.9555 of the first error: half at b >= 28.03, so 29
    assert half_error_batches(curve) == (29.0, False)
    assert half_error_batches(np.full(50, 0.04)) == (50.0, True)  # never: censored at the phase's end
    assert normalised_area(np.full(50, 0.04)) == pytest.approx(1.0)
    assert normalised_area(curve) == pytest.approx(np.mean(np.exp(-np.log(2) / 30 * np.arange(120))))
    assert early_reduction(curve, 20) == pytest.approx(1 - np.mean(curve[15:20]) / 0.04)
    assert early_batches(120) == 20 and early_batches(3201) == 530 and early_batches(12) == 5
    for undefined in (np.zeros(30), -curve, np.r_[np.nan, curve]):  # no first error to remove
        assert np.isnan(normalised_area(undefined)) and np.isnan(early_reduction(undefined, 20))
        assert half_error_batches(undefined) == (pytest.approx(np.nan, nan_ok=True), False)
    with pytest.raises(ValueError, match="early batches must lie in"):
        early_reduction(curve, 200)


def _fit_free_of(later, earlier):
    return fit_free(later, earlier, sign=1.0)["aggregate"]


def test_fit_free_measures_find_a_faster_second_phase():
    measures = _fit_free_of(_exponential(0.06, noise=1e-3), _exponential(0.03, noise=1e-3, seed=1))
    assert measures["area_ratio"]["high"] < 0.7 and measures["area_ratio"]["fraction_with_savings"] == 1
    assert measures["half_error_difference"]["low"] > 8  # ~23 -> ~11.5 batches
    assert measures["early_reduction_difference"]["low"] > 0.15
    for name in FIT_FREE_MEASURES:
        assert measures[name]["tests"]["t"] > 5 and measures[name]["tests"]["p"] < 1e-4


@pytest.mark.parametrize("kind", ["identical phases", "no learning", "pure noise"])
def test_fit_free_measures_find_no_savings_where_there_is_none(kind):
    if kind == "identical phases":
        later = earlier = _exponential(0.03, noise=1e-3)
    elif kind == "no learning":
        later, earlier = _exponential(0.0, noise=1e-3), _exponential(0.0, noise=1e-3, seed=1)
    else:  # a first error, then noise about zero: both phases "learn" at once, and alike
        later, earlier = _exponential(5.0, noise=2e-3), _exponential(5.0, noise=2e-3, seed=1)
    measures = _fit_free_of(later, earlier)
    if kind == "identical phases":
        assert measures["area_ratio"]["estimate"] == 1 and measures["half_error_difference"]["estimate"] == 0
        assert measures["early_reduction_difference"]["estimate"] == 0
        assert measures["area_ratio"]["fraction_with_savings"] == 0
        return
    assert measures["area_ratio"]["low"] < 1 < measures["area_ratio"]["high"] or kind == "pure noise"
    for name in ("half_error_difference", "early_reduction_difference"):
        assert measures[name]["low"] <= 0 <= measures[name]["high"], (name, measures[name])
    assert measures["early_reduction_difference"]["tests"]["p"] > 0.01


def test_savings_reports_the_fit_free_measures_and_the_practice_control():
    ff1, ff2, ffc = (_exponential(r, noise=5e-4, seed=s) for s, r in enumerate((0.03, 0.06, 0.035)))
    metrics = savings({"FF1": ff1, "FF2": ff2, "FFC": ffc, "NF2": ff1[:, :10] * 0.1})
    assert metrics["fit_free"]["early_batches"] == 20
    control = metrics["practice_control"]
    against, practice = control["aggregate"]["savings_index_vs_control"], control["aggregate"]["practice_index"]
    assert against["low"] > 0.4 and against["fraction_above_zero"] == 1  # log(0.06 / 0.035) = 0.54
    assert practice["low"] < np.log(0.035 / 0.03) < practice["high"]
    assert control["fit_free_vs_control"]["aggregate"]["early_reduction_difference"]["low"] > 0
    assert "practice_control" not in savings({"FF1": ff1, "FF2": ff2})
    # recomputation accepts the honest copy and names a changed number in the new blocks
    honest = json.loads(json.dumps(metrics))
    assert check_recomputed(honest, {"FF1": ff1, "FF2": ff2, "FFC": ffc, "NF2": ff1[:, :10] * 0.1})[1] == []
    honest["fit_free"]["aggregate"]["area_ratio"]["estimate"] *= 0.5
    honest["practice_control"]["per_network"]["savings_index_vs_control"][0] += 1
    problems = check_recomputed(honest, {"FF1": ff1, "FF2": ff2, "FFC": ffc, "NF2": ff1[:, :10] * 0.1})[1]
    assert [p[0].split("/")[1] for p in problems] == ["fit_free", "practice_control"]
