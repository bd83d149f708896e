"""Ranking leaderboard entries.

By the most reliable savings measure, :data:`~benchmarks.board.schema.RANK_MEASURE` (chosen by
:func:`split_half_reliability` on the
shipped entries: the early error reduction, FF2 minus FF1, :func:`benchmarks.savings.metrics.fit_free`), of
every network, summarised by its interquartile mean (IQM) with a 95% bootstrap CI over networks
(rliable's recommendation; one task, so the stratified bootstrap is the plain one, done with scipy:
the ``rliable`` package drags in arch, seaborn and pandas). An entry's rank counts the entries whose CI
lies entirely on the savings side of its own, so entries with overlapping CIs share a rank (shown as
``2=``). Only entries with at least :data:`~benchmarks.board.schema.MIN_NETWORKS` networks with a value of
the measure are ranked. The fitted savings index log(r_FF2 / r_FF1) stays as a column (split-half
reliability 0.28 against 0.89: an exponential fit of 24 windows is ill-conditioned on short or slow
curves), with the ``n (fits)`` column showing how many networks have both fits."""

from __future__ import annotations

import math

import numpy as np

from benchmarks.board.schema import (
    RANK_MEASURE,
    SAVINGS_MEASURES,
    Entry,
    network_values,
)
from benchmarks.savings.metrics import (
    bootstrap_ci,
    iqm,
)


def split_half_reliability(board_entries: list[Entry]) -> dict[str, dict[str, float]]:
    """How reliably each savings measure tells networks apart: every entry's FF1, NF2 and FF2 curves
    are split into their even and odd batches, the measures computed on each half, and the two
    halves' per-network values correlated *within each entry* (Spearman's rank correlation, robust to
    the fits' outliers); the entries' correlations are averaged with equal weight (the board ranks
    entries, so each is one replicate; with 5-8 networks an entry's r is often near +-1, where
    Fisher's z would let one entry decide) and stepped up to the full length by the Spearman-Brown
    formula 2r / (1 + r). A measure that is mostly measurement noise scores near 0.

    Within, not pooled: pooled across entries, differences between entries (a faithful run's phases
    are 5x the quick preset's, so its batches-to-half values are ~10x larger) make any measure look
    reliable; that is what the faithful entry did to the pooled figure on 2026-12-03.

    Returns:
        measure -> ``{"r_half": ..., "reliability": ..., "networks": ..., "entries": ...}`` (networks
        with a value in both halves, in the entries with at least :data:`RELIABILITY_MIN_NETWORKS`).
    """
    from scipy import stats

    from benchmarks.savings.metrics import savings

    per_entry: dict[str, list[float]] = {m: [] for m in SAVINGS_MEASURES}
    counted: dict[str, int] = {m: 0 for m in SAVINGS_MEASURES}
    for entry in board_entries:
        curves = {p: c for p, c in entry.curves().items() if p in ("FF1", "NF2", "FF2")}
        halves = [savings({p: c[:, start::2] for p, c in curves.items()}) for start in (0, 1)]
        for measure in SAVINGS_MEASURES:
            values = np.stack([network_values(h, measure) for h in halves], axis=1)
            values = values[np.isfinite(values).all(axis=1)]
            if len(values) < RELIABILITY_MIN_NETWORKS or np.ptp(values[:, 0]) == 0 or np.ptp(values[:, 1]) == 0:
                continue
            r = float(stats.spearmanr(values[:, 0], values[:, 1]).statistic)
            per_entry[measure].append(r)
            counted[measure] += len(values)
    result = {}
    for measure in SAVINGS_MEASURES:
        r = float(np.mean(per_entry[measure])) if per_entry[measure] else math.nan
        result[measure] = {
            "r_half": r,
            "reliability": 2 * r / (1 + r) if math.isfinite(r) and r > -1 else math.nan,
            "networks": counted[measure],
            "entries": len(per_entry[measure]),
        }
    return result


RELIABILITY_MIN_NETWORKS = 5
"""Entries with fewer networks with a value in both halves give no correlation to average."""


def iqm_ci(values: np.ndarray) -> tuple[float, float, float]:
    """IQM (:func:`benchmarks.savings.metrics.iqm`) with its 95% bootstrap CI over networks (NaNs dropped;
    :func:`benchmarks.savings.metrics.bootstrap_ci`: deterministic, blind to network order)."""
    ci = bootstrap_ci(values, statistic=iqm)
    return ci.estimate, ci.low, ci.high


UNRANKED = "unranked"


def rows(board_entries: list[Entry]) -> list[dict]:
    """One row per entry: the ranked ones, most savings by :data:`RANK_MEASURE` first, then the
    unranked ones (fewer than :data:`MIN_NETWORKS` networks with a value of it)."""
    table = []
    for entry in board_entries:
        per = entry.metrics["per_network"]  # recomputed: a reported number never reaches the board
        agg = entry.metrics["aggregate"]
        washout = agg.get("washout_after_effect", {}).get("estimate", math.nan)
        kept = entry.latent["persistence_NF2"] if entry.latent else {}
        measures = {m: iqm_ci(network_values(entry.metrics, m)) for m in SAVINGS_MEASURES}
        table.append(
            {
                "name": entry.name,
                "agent": entry.result["config"]["agent"],
                # a retired definition is named: its numbers are not comparable with the current preset's
                "preset": f"{entry.preset} (retired)" if entry.retired_preset else entry.preset,
                "networks": entry.result["config"]["networks"],
                "competent": entry.competence,
                "reach_held": entry.reach,
                "fits": entry.fits,
                "with_savings": entry.with_savings,
                "measured": entry.measured,
                "ranked": entry.ranked,
                **measures,
                "fraction_with_savings": agg["fraction_with_savings"],
                "first_error_FF1_cm": agg["first_error_FF1"]["estimate"] * 100,
                "first_error_FF2_cm": agg["first_error_FF2"]["estimate"] * 100,
                "rate_FF1": iqm(np.asarray(per["rate_FF1"], np.float64)[np.isfinite(per["rate_FF1"])])
                if np.isfinite(per["rate_FF1"]).any()
                else math.nan,
                "washout_cm": washout * 100,
                "persistence_NF2": tuple(kept.get(k, math.nan) for k in ("estimate", "low", "high")),
                "description": entry.result["submission"]["description"],
                "link": entry.result["submission"]["link"],
                "entry": entry,
            }
        )
    direction = SAVINGS_MEASURES[RANK_MEASURE]

    def savings_first(row: dict) -> tuple[bool, str, bool, float]:
        value = direction * row[RANK_MEASURE][0]
        retired = row["entry"].retired_preset
        return retired, row["preset"], not row["ranked"], -value if math.isfinite(value) else math.inf

    table.sort(key=savings_first)
    for row in table:
        if not row["ranked"]:
            row["rank"] = UNRANKED
            continue
        # ranks compare entries of one preset: other lengths and rates give other numbers
        rivals = [other for other in table if other["ranked"] and other["preset"] == row["preset"]]
        better = sum(1 for other in rivals if _clearly_more_savings(other, row))
        shared = any(other is not row and _overlap(other, row) for other in rivals)
        row["rank"] = f"{better + 1}{'=' if shared else ''}"
    return table


def _clearly_more_savings(a: dict, b: dict) -> bool:
    """Whether ``a``'s CI of the ranking measure lies entirely on the savings side of ``b``'s."""
    (_, lo_a, hi_a), (_, lo_b, hi_b) = a[RANK_MEASURE], b[RANK_MEASURE]
    return bool(lo_a > hi_b) if SAVINGS_MEASURES[RANK_MEASURE] > 0 else bool(hi_a < lo_b)


def _overlap(a: dict, b: dict) -> bool:
    (_, lo_a, hi_a), (_, lo_b, hi_b) = a[RANK_MEASURE], b[RANK_MEASURE]
    return bool(lo_a <= hi_b and lo_b <= hi_a)
