"""Reading finished runs back as tables: one run's summary (:func:`summary_table`), a paradigm run's
(:func:`paradigm_summary`), and gradual against abrupt FF1 on the same networks (:func:`gradual_comparison`)."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np

from benchmarks.savings.metrics import bootstrap_ci
from benchmarks.savings.paradigms import paradigm_metrics
from benchmarks.savings.presets import PHASES
from savings_gym.schedule import PAPER_BATCH_SIZE


def summary_table(result: dict) -> str:
    """The savings table printed at the end of a run: every measure against FF1 and, when the run had
    the practice control, against its field phase FFC (and the practice effect, FFC against FF1); with
    the reset control, against its FFR (and FFR against FF1, no savings by construction)."""
    if "paradigm_metrics" in result:
        return paradigm_summary(result)
    metrics = result["metrics"]
    m, p = metrics["aggregate"], metrics["per_network"]

    def ci(d: dict, scale: float = 1.0, fmt: str = "{:+.3f}") -> str:
        if not math.isfinite(d["estimate"]):
            return "-"
        return f"{fmt.format(d['estimate'] * scale)} [{fmt.format(d['low'] * scale)}, {fmt.format(d['high'] * scale)}]"

    def count(fraction: float, n: int) -> str:  # "k of n" (never a percentage of one network)
        return f"{round(fraction * n)} of {n}" if n and math.isfinite(fraction) else "0 of 0"

    def measures(fit_free: dict, index: dict, fraction: float, n_fits: int) -> list[str]:
        agg = fit_free["aggregate"]
        early, half, area = (agg[k] for k in ("early_reduction_difference", "half_error_difference", "area_ratio"))
        return [
            f"{ci(early)} ({count(early['fraction_with_savings'], early['networks'])} > 0)",
            f"{ci(half, fmt='{:+.1f}')}",
            f"{ci(area, fmt='{:.3f}')}",
            f"{ci(index)} ({count(fraction, n_fits)} fits > 0)",
        ]

    reaches = result.get("updates", {}).get("reaches_per_update", PAPER_BATCH_SIZE)
    # a curve point per batch of 8 reaches, or per update of more (``--reaches-per-update``)
    unit, one = ("batches", "batch") if reaches == PAPER_BATCH_SIZE else (f"updates of {reaches} reaches", "update")
    labels = [
        f"early error reduction, first {metrics['fit_free']['early_batches']} {unit} (later - earlier)",
        f"{unit.split()[0]} to half the first error (earlier - later)",
        "area under the curve / first error (later / earlier)",
        "savings index log(r_later / r_earlier), fitted",
    ]
    columns = [
        (
            "FF2 vs FF1",
            measures(metrics["fit_free"], m["savings_index"], m["fraction_with_savings"], m["networks_with_fit"]),
        )
    ]
    control = metrics.get("practice_control")
    for block, (title, versus, own, phase) in {
        "practice_control": ("control FFC", "control", "practice", "FFC"),
        "reset_control": ("reset FFR", "reset", "reset", "FFR"),
    }.items():
        if block in metrics:
            agg = metrics[block]["aggregate"]
            for heading, fit_free, index in (
                (f"FF2 vs {title}", metrics[block][f"fit_free_vs_{versus}"], agg[f"savings_index_vs_{versus}"]),
                (f"{own}: {phase} vs FF1", metrics[block][f"fit_free_{own}"], agg[f"{own}_index"]),
            ):
                columns.append((heading, measures(fit_free, index, index["fraction_above_zero"], index["networks"])))
    width = max(map(len, labels))
    cell = max(len(v) for _, values in columns for v in values)
    lines = []
    gate = result.get("competence")
    if gate is not None:
        quality = gate["per_network"]
        lines.append(
            f"competence gate: {sum(quality['competent'])} of {len(quality['competent'])} networks reach (mean "
            f"endpoint error < {gate['criterion']['max_endpoint_error_m'] * 100:.0f} cm on the null-field test reaches "
            f"before FF1; per network {', '.join(f'{e * 100:.1f}' for e in quality['endpoint_error'])} cm); "
            "the others are left out of every measure below"
        )
    lines += [
        f"savings over {m['networks']} networks, mean and 95% bootstrap CI (positive or below 1: the later faster):",
        ("  " + " " * width + "  " + "  ".join(title.ljust(cell) for title, _ in columns)).rstrip(),
    ]
    for i, label in enumerate(labels):
        row = "  " + label.ljust(width) + "  " + "  ".join(values[i].ljust(cell) for _, values in columns)
        lines.append(row.rstrip())
    cm = "{:.2f}"
    first = (
        f"  first-{one} error (cm): FF1 {ci(m['first_error_FF1'], 100, cm)}, FF2 {ci(m['first_error_FF2'], 100, cm)}"
    )
    if control:
        first += f", FFC {ci(control['aggregate']['first_error_FFC'], 100, cm)}"
    if "reset_control" in metrics:
        first += f", FFR {ci(metrics['reset_control']['aggregate']['first_error_FFR'], 100, cm)}"
    smaller = count(m["fraction_smaller_first_error"], m["networks"])
    lines.append(first + f"; smaller in FF2 than FF1 for {smaller}")
    lines.append(
        f"  paired t-test on log rates FF2 vs FF1: t = {m['rate_ttest']['t']:.2f}, p = {m['rate_ttest']['p']:.3g}; "
        f"sign-flip test on the median p = {m['rate_ttest']['sign_flip_p']:.3g}"
    )
    rates = [
        f"{r1:.4f} -> {r2:.4f}" if math.isfinite(r1) and math.isfinite(r2) else "no fit"
        for r1, r2 in zip(p["rate_FF1"], p["rate_FF2"], strict=True)
    ]
    lines.append(f"  fitted rate per network (per {metrics['window']}-{one} window), FF1 -> FF2: " + ", ".join(rates))
    return "\n".join(lines)


def paradigm_summary(result: dict) -> str:
    """The table printed at the end of a paradigm run (:func:`benchmarks.savings.paradigms.paradigm_metrics`):
    means and 95% bootstrap CIs over the competent networks."""
    metrics = result["paradigm_metrics"]

    def ci(d: dict, scale: float = 1.0, fmt: str = "{:+.3f}") -> str:
        if not math.isfinite(d["estimate"]):
            return "-"
        return f"{fmt.format(d['estimate'] * scale)} [{fmt.format(d['low'] * scale)}, {fmt.format(d['high'] * scale)}]"

    lines = [f"{result['config'].get('env_id')}: {metrics['networks']} networks, mean and 95% bootstrap CI"]
    if "interference" in metrics:
        block = metrics["interference"]
        fit_free = block["fit_free"]["aggregate"]
        lines += [
            "  interference, FFB (-A) against FF1 (A) (below 0 / above 1: -A learnt slower):",
            f"    rate index log(r_FFB / r_FF1), fitted: {ci(block['aggregate']['savings_index'])}",
            f"    area under the curve / first error, FFB / FF1: {ci(fit_free['area_ratio'], fmt='{:.3f}')}",
            f"    first-batch error (cm): FF1 {ci(block['aggregate']['first_error_FF1'], 100, '{:.2f}')}, "
            f"FFB {ci(block['aggregate']['first_error_FF2'], 100, '{:.2f}')}",
        ]
    if "after_effect" in metrics:
        lines.append(
            f"  after-effect, NF2's first window (cm, oriented as FF1): {ci(metrics['after_effect']['aggregate'], 100)}"
        )
    if "spontaneous_recovery" in metrics:
        block = metrics["spontaneous_recovery"]
        lines.append(f"  adaptation index in {block['phase']} (1: field A fully compensated):")
        for name in ("start", "peak", "rebound"):
            lines.append(f"    {name}: {ci(block[name]['aggregate'])}")
        if "end_of_FFB" in block:
            lines.append(f"    FFB's last window (cm, oriented as FF1): {ci(block['end_of_FFB']['aggregate'], 100)}")
    if "relearning" in metrics:
        block = metrics["relearning"]
        lines.append(
            f"  FF2 relearning: rate {ci(block['rate_FF2']['aggregate'], fmt='{:.4f}')} per window, first error "
            f"{ci(block['first_error_FF2']['aggregate'], 100, '{:.2f}')} cm, area / first error "
            f"{ci(block['area_FF2']['aggregate'], fmt='{:.3f}')}"
        )
    return "\n".join(lines)


def gradual_comparison(gradual: dict, abrupt: dict) -> dict:
    """The gradual paradigm against its abrupt version: :func:`benchmarks.savings.paradigms.paradigm_metrics`
    of both runs' learning curves (result dicts of ``ArmCurlFieldGradual-v0`` and ``ArmCurlField-v0``
    with the same preset, networks and seed) and, per network, gradual minus abrupt of the
    after-effect (m, oriented as the field's errors), the FF2 rate and the FF2 area, with bootstrap
    CIs (the same networks start both runs, so the differences are paired).

    Raises:
        ValueError: for runs of other ids or of different phase lengths or networks.
    """
    ids = (gradual["config"].get("env_id"), abrupt["config"].get("env_id"))
    if ids != ("ArmCurlFieldGradual-v0", "ArmCurlField-v0"):
        raise ValueError(f"expected a ArmCurlFieldGradual-v0 run and an ArmCurlField-v0 run, got {ids}")
    shapes = [{p: np.shape(c) for p, c in r["learning_curves"].items() if p in PHASES} for r in (gradual, abrupt)]
    if shapes[0] != shapes[1]:
        raise ValueError(f"the runs' phases differ in batches or networks: {shapes[0]} and {shapes[1]}")
    both = [paradigm_metrics({p: np.asarray(c) for p, c in r["learning_curves"].items()}) for r in (gradual, abrupt)]
    out: dict[str, Any] = {"gradual": both[0], "abrupt": both[1]}
    for name, path in (
        ("after_effect", ("after_effect",)),
        ("rate_FF2", ("relearning", "rate_FF2")),
        ("area_FF2", ("relearning", "area_FF2")),
    ):
        values, sides = [], []
        for metrics in both:
            for key in path:
                metrics = metrics.get(key, {})
            values.append(np.asarray(metrics.get("per_network", []), np.float64))
            sides.append(metrics.get("aggregate"))
        if len(values[0]) and len(values[0]) == len(values[1]):
            difference = values[0] - values[1]
            out[f"{name}_difference"] = {
                "per_network": difference.tolist(),
                "aggregate": asdict(bootstrap_ci(difference)),
                "gradual": sides[0],  # each run's own aggregate, beside the paired difference
                "abrupt": sides[1],
            }
    return out
