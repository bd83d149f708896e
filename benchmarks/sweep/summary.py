"""A sweep's summary: savings grouped by hidden size (and field gain) over its cells' result files, with
bootstrap CIs, as a table and the savings-vs-hidden figure."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.safe_io import atomic_write_bytes, atomic_write_json, read_json
from benchmarks.savings.metrics import bootstrap_ci, format_ci
from benchmarks.sweep.cells import FIGURE, MANIFEST, RESULT, SUMMARY, SWEEP_VERSION, _load_manifest


# -- aggregation ----------------------------------------------------------------------------------
def _interval(values: np.ndarray, scale: float = 1.0) -> dict[str, float]:
    ci = bootstrap_ci(np.asarray(values, np.float64) * scale)
    return {"estimate": ci.estimate, "low": ci.low, "high": ci.high}


def group_savings(results: list[dict]) -> dict[str, Any]:
    """Savings of a group of cells, their networks pooled (each network is an independent learner).

    Returns:
        ``networks`` (all); ``competent``, those past the competence gate, over which everything
        else is computed (:func:`benchmarks.savings.metrics.savings`); ``networks_with_fit``; the mean
        savings index log(r_FF2 / r_FF1), the fraction of networks with r_FF2 > r_FF1 (among
        those with both fits), the first-batch errors of FF1 and FF2 (cm) and the fraction of
        networks with a smaller FF2 one, each with a 95% bootstrap CI over networks
        (:func:`benchmarks.savings.metrics.bootstrap_ci`); and ``pretrained_endpoint_error_cm``, the mean
        endpoint error of the networks on the 8 test reaches when pretraining ended (None where
        no cell recorded it), because savings means little in networks that never learned to reach.
    """

    def pooled(key: str) -> np.ndarray:
        return np.concatenate([np.asarray(r["metrics"]["per_network"][key], np.float64) for r in results])

    index = pooled("savings_index")
    valid = np.isfinite(index)
    first1, first2 = pooled("first_error_FF1"), pooled("first_error_FF2")
    # each pretraining run records the mean over its networks: weight the cells by their networks
    competence = [
        (r["config"]["pretrained_meta"]["test_endpoint_error_m"], r["config"]["networks"])
        for r in results
        if "test_endpoint_error_m" in r["config"].get("pretrained_meta", {})
    ]
    pretrained_error = (
        100 * sum(error * n for error, n in competence) / sum(n for _, n in competence) if competence else None
    )
    total = sum(
        r["metrics"].get("competence", {}).get("networks", len(r["metrics"]["per_network"]["savings_index"]))
        for r in results
    )
    return {
        "networks": int(total),
        "competent": int(len(index)),
        "networks_with_fit": int(valid.sum()),
        "savings_index": _interval(index),
        "fraction_with_savings": _interval(pooled("has_savings")[valid]),
        "first_error_FF1_cm": _interval(first1, 100),
        "first_error_FF2_cm": _interval(first2, 100),
        "fraction_smaller_first_error": _interval(first2 < first1),
        "pretrained_endpoint_error_cm": pretrained_error,
    }


def aggregate(out: str | Path, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
    """Savings per (agent, hidden size, field gain), seeds pooled, from the finished cells' result
    files; writes ``summary.json`` and ``figures/savings_vs_hidden.png`` (each atomically).

    Raises:
        ValueError: when ``out`` is not a sweep folder.
    """
    out = Path(out)
    if manifest is None:
        if not (out / MANIFEST).exists():
            raise ValueError(f"{out} holds no {MANIFEST}: run `savings-gym sweep ... --out {out}` first")
        manifest = _load_manifest(out)
    groups: dict[tuple[str, int | None, float], list[tuple[str, dict]]] = {}
    missing = []
    for name in manifest["cells"]:
        file = out / name / RESULT
        if not os.path.lexists(file):
            missing.append(name)
            continue
        result = read_json(out, f"{name}/{RESULT}")
        config = result["config"]
        key = (config["agent"], config.get("hidden"), float(config["preset"]["field_gain"]))  # hidden None: no RNN
        groups.setdefault(key, []).append((name, result))
    rows = []
    for (agent, hidden, gain), members in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1] or 0, g[0][2])):
        rows.append(
            {
                "agent": agent,
                "hidden": hidden,
                "field_gain": gain,
                "cells": [name for name, _ in members],
                "seeds": sorted(r["config"]["seed"] for _, r in members),
                **group_savings([r for _, r in members]),
            }
        )
    sized = any(row["hidden"] is not None for row in rows)
    summary = {
        "format": "savings-gym-sweep-summary",
        "version": SWEEP_VERSION,
        "groups": rows,
        "missing_cells": missing,
        "figure": str(FIGURE) if sized else None,
    }
    if sized:
        from benchmarks.savings.figures import png

        atomic_write_bytes(out / FIGURE, png(savings_vs_hidden_figure(rows)))
    atomic_write_json(out / SUMMARY, summary)
    return summary


def savings_vs_hidden_figure(rows: list[dict]):
    """Savings index, fraction of networks with savings and first-batch errors against hidden size,
    one line per (agent, field gain), 95% CIs as error bars."""
    from benchmarks.savings.figures import _figure

    fig = _figure(13, 3.8)
    panels = [fig.add_subplot(1, 3, i + 1) for i in range(3)]
    series: dict[tuple[str, float], list[dict]] = {}
    for row in rows:
        if row["hidden"] is None:  # a feed-forward learner has no size to place
            continue
        series.setdefault((row["agent"], row["field_gain"]), []).append(row)

    def draw(ax, members: list[dict], key: str, label: str, **style) -> None:
        x = np.array([m["hidden"] for m in members], np.float64)
        y = np.array([m[key]["estimate"] for m in members])
        error = np.abs(np.array([[m[key]["low"] for m in members], [m[key]["high"] for m in members]]) - y)
        ax.errorbar(x, y, yerr=np.nan_to_num(error), marker="o", capsize=3, label=label, **style)

    for (agent, gain), members in series.items():
        members = sorted(members, key=lambda m: m["hidden"])
        label = f"{agent}, k={gain:g}"
        draw(panels[0], members, "savings_index", label)
        draw(panels[1], members, "fraction_with_savings", label)
        draw(panels[2], members, "first_error_FF1_cm", f"{label} FF1", ls="--")
        draw(panels[2], members, "first_error_FF2_cm", f"{label} FF2")
    titles = ("savings index log(r_FF2 / r_FF1)", "networks with r_FF2 > r_FF1", "first-batch error (cm)")
    sizes = sorted({row["hidden"] for row in rows if row["hidden"] is not None})
    for ax, title in zip(panels, titles, strict=True):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, labels=[str(size) for size in sizes])
        ax.minorticks_off()
        ax.set_xlabel("hidden units")
        ax.set_title(title)
        ax.legend(fontsize=7)
    panels[0].axhline(0, color="0.6", lw=0.8)
    panels[1].set_ylim(-0.05, 1.05)
    fig.suptitle("savings vs network size (mean over networks, 95% bootstrap CIs)")
    return fig


SUMMARY_COLUMNS = (
    "agent",
    "hidden",
    "k (N*s/m)",
    "networks (competent, fits)",
    "savings index",
    "with savings",
    "first error FF1 (cm)",
    "first error FF2 (cm)",
    "pretrained endpoint error (cm)",
)


def summary_rows(summary: dict[str, Any]) -> list[list[str]]:
    """The groups of a sweep summary as rows of text under :data:`SUMMARY_COLUMNS`."""
    rows = []
    for g in summary["groups"]:
        competence = g["pretrained_endpoint_error_cm"]
        rows.append(
            [
                g["agent"],
                str(g["hidden"]),
                f"{g['field_gain']:g}",
                f"{g['networks']} ({g.get('competent', g['networks'])}, {g['networks_with_fit']})",
                format_ci(g["savings_index"], "{:+.2f}"),
                format_ci(g["fraction_with_savings"], "{:.2f}"),
                format_ci(g["first_error_FF1_cm"], "{:.2f}"),
                format_ci(g["first_error_FF2_cm"], "{:.2f}"),
                "n/a" if competence is None else f"{competence:.2f}",
            ]
        )
    return rows


def summary_table(summary: dict[str, Any]) -> str:
    """The groups of a sweep summary as a Markdown table."""
    lines = ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|" + "---|" * len(SUMMARY_COLUMNS)]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(summary)]
    if summary["missing_cells"]:
        lines.append(f"(not finished: {', '.join(summary['missing_cells'])})")
    return "\n".join(lines)
