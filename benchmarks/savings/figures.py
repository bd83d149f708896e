"""Figures of a protocol run (matplotlib, written off-screen as PNG).

* ``learning_curves.png``: FF1 and FF2 learning curves aligned at phase onset (and the practice
  control's FFC and the reset control's FFR where the run has them), mean across networks with a
  95% bootstrap band (the same
  orientation as the metrics);
* ``hand_paths.png``: the 8 test reaches at NF1 end, FF1 start and end, NF2 end, FF2 start
  (first network);
* ``savings_index.png``: the savings index of every network, with the mean and its 95% CI;
* ``reach_quality.png``: the test reaches' endpoint error and hand path length at every curve
  point, phase after phase (mean and range across networks), against the collapse criterion
  (:func:`benchmarks.savings.reach.reach_held`), for runs that record them.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from benchmarks.safe_io import atomic_write_bytes
from benchmarks.savings.metrics import bootstrap_ci


def png(fig) -> bytes:
    """A figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    return buffer.getvalue()


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _point(result: dict) -> str:
    """What one point of a curve is: a batch of 8 reaches, or an update of more."""
    reaches = result.get("updates", {}).get("reaches_per_update", 8)
    return "batch" if reaches == 8 else f"update ({reaches} reaches)"


def learning_curves_figure(result: dict):
    """FF1 vs FF2 curves aligned at onset, and the practice control's FFC (dashed grey) and the reset
    control's FFR (dotted) where the run has them: mean and 95% CI band across networks."""
    sign = result["metrics"]["aggregate"]["orientation"]
    fig = _figure(6, 4)
    ax = fig.add_subplot()
    phases = [("FF1", "tab:blue", "-"), ("FF2", "tab:red", "-")]
    controls = {"FFC": ("0.35", "--", "practice control"), "FFR": ("tab:purple", ":", "reset control")}
    phases += [
        (phase, color, style) for phase, (color, style, _) in controls.items() if phase in result["learning_curves"]
    ]
    for phase, color, style in phases:
        curves = sign * np.asarray(result["learning_curves"][phase]) * 100  # cm
        mean = curves.mean(0)
        band = (
            np.array(
                [[bootstrap_ci(curves[:, b]).low, bootstrap_ci(curves[:, b]).high] for b in range(curves.shape[1])]
            )
            if curves.shape[0] > 1
            else np.stack([mean, mean], 1)
        )
        x = np.arange(curves.shape[1])
        what = f": {controls[phase][2]}" if phase in controls else ""
        ax.plot(x, mean, color=color, ls=style, label=f"{phase}{what} (n={curves.shape[0]})")
        ax.fill_between(x, band[:, 0], band[:, 1], color=color, alpha=0.15 if phase in controls else 0.25, lw=0)
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_xlabel(f"{_point(result)} since field onset")
    ax.set_ylabel("lateral deviation (cm)")
    ax.set_title("Relearning the curl field: FF2 vs FF1")
    ax.legend()
    return fig


def hand_paths_figure(snapshots: dict, network: int = 0):
    """Hand paths of the 8 test reaches at the protocol's landmarks."""
    labels = [label for label in ("NF1 end", "FF1 start", "FF1 end", "NF2 end", "FF2 start") if label in snapshots]
    if not labels:
        return None
    fig = _figure(3 * len(labels), 3.2)
    for i, label in enumerate(labels):
        ax = fig.add_subplot(1, len(labels), i + 1)
        hand = np.asarray(snapshots[label]["hand_position"])[network] * 100
        target = np.asarray(snapshots[label]["target"]) * 100
        for reach in hand:
            ax.plot(reach[:, 0], reach[:, 1], color="tab:blue", lw=1)
        ax.plot(target[:, 0], target[:, 1], "o", color="tab:red", ms=5, mfc="none")
        ax.set_title(label)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"test reaches, network {network} (targets 10 cm away)")
    return fig


def savings_index_figure(result: dict):
    """Savings index log(r_FF2 / r_FF1) per network (of those past the competence gate), mean and 95% CI."""
    index = np.asarray(result["metrics"]["per_network"]["savings_index"], np.float64)
    ci = result["metrics"]["aggregate"]["savings_index"]
    gate = result["metrics"].get("competence")
    kept = np.ones(len(gate["per_network"]) if gate else len(index), bool)
    for block in (gate, result["metrics"].get("reach")):
        if block:
            kept &= np.asarray(block["per_network"], bool)
    networks = np.flatnonzero(kept)  # their run indices
    fig = _figure(5, 3.5)
    ax = fig.add_subplot()
    colours = ["tab:green" if v > 0 else "tab:gray" for v in index]
    ax.bar(np.arange(len(index)), np.nan_to_num(index), color=colours, tick_label=[str(n) for n in networks])
    if len(networks) < len(kept):
        ax.set_title(f"{len(kept) - len(networks)} of {len(kept)} networks do not reach or lost their reach: not shown")
    ax.axhline(0, color="k", lw=0.8)
    ax.axhspan(ci["low"], ci["high"], color="tab:orange", alpha=0.2, label="mean, 95% CI")
    ax.axhline(ci["estimate"], color="tab:orange")
    ax.set_xlabel("network")
    ax.set_ylabel("savings index log(r_FF2 / r_FF1)")
    ax.legend()
    return fig


def reach_quality_figure(result: dict):
    """Endpoint error and hand path length of the test reaches at every curve point of the main
    run, phases end to end: mean across networks, the range shaded, the collapse criterion dashed.
    None for a run that did not record them."""
    reach = result.get("reach_curves")
    if not reach:
        return None
    criterion = result["reach_held"]["criterion"]
    fig = _figure(8, 4.5)
    axes = fig.subplots(2, 1, sharex=True)
    start = 0
    for phase in [p for p in reach if p not in ("NFC", "FFC", "FFR")]:  # the main run's phases, in order
        for ax, key in zip(axes, ("endpoint_error", "path_length"), strict=True):
            rows = np.asarray(reach[phase][key]) * 100  # cm
            x = start + np.arange(rows.shape[1])
            ax.plot(x, rows.mean(0), color="tab:red" if phase.startswith("FF") else "tab:blue", lw=1)
            ax.fill_between(x, rows.min(0), rows.max(0), color="0.8", lw=0)
        axes[0].text(start, 0.98, phase, transform=axes[0].get_xaxis_transform(), va="top", fontsize=8)
        start += np.asarray(reach[phase]["endpoint_error"]).shape[1]
        for ax in axes:
            ax.axvline(start, color="0.6", lw=0.5)
    axes[0].axhline(criterion["max_endpoint_error_floor_m"] * 100, color="k", ls="--", lw=0.8)
    axes[1].axhline(criterion["min_path_fraction"] * criterion["reach_distance_m"] * 100, color="k", ls="--", lw=0.8)
    axes[0].set_ylabel("endpoint error (cm)")
    axes[1].set_ylabel("hand path (cm)")
    axes[1].set_xlabel(_point(result))
    held = result["reach_held"]["per_network"]["held"]
    fig.suptitle(f"reach quality of the test reaches: the reach held in {sum(held)} of {len(held)} networks")
    return fig


def paradigm_figure(result: dict):
    """A paradigm run end to end: the mean learning curve through every phase (cm, phases marked),
    beside it the curve of a two-state model fitted to that mean (:mod:`benchmarks.savings.state_space`, the
    linear null model, dashed), and below, where the run has channel phases, the mean adaptation
    index of the channel test reaches."""
    from savings_gym.schedule import Schedule, paper_schedule

    curves = result["learning_curves"]
    config = result["config"]
    schedule = (
        Schedule(config["schedule"])
        if "schedule" in config
        else paper_schedule(config["preset"]["field_gain"], config["preset"]["batches"])
    )
    names = [name for name in schedule.names if name in curves]
    mean = np.concatenate([np.asarray(curves[name], np.float64).mean(0) for name in names])
    adaptation = result.get("adaptation_index") or {}
    fig = _figure(8, 6 if adaptation else 4)
    ax = fig.add_subplot(2 if adaptation else 1, 1, 1)
    ax.plot(mean * 100, color="tab:blue", lw=1, label=f"mean of {len(np.asarray(curves[names[0]]))} networks")
    model_x = None
    try:
        from benchmarks.savings.state_space import fit_two_state, perturbation, simulate

        f, channel = perturbation(schedule, len(mean), float(config["preset"]["field_gain"]))
        fit = fit_two_state(mean, f, channel)
        # a channel clamps the deviation to ~0, so there the model's would-be error is not plotted
        # against it: its adaptation (the fraction of field A compensated) goes beside the index below
        predicted = np.where(channel, np.nan, fit.predict(f, channel))
        ax.plot(predicted * 100, color="0.3", ls="--", lw=1, label="two-state model fitted to it")
        model_x = np.where(channel, simulate(fit.params, f, channel)["x"], np.nan)
    except ValueError:  # too short a run to fit: the figure goes without the reference
        pass
    edge = 0
    for name in names:
        length = np.asarray(curves[name]).shape[1]
        ax.axvline(edge, color="0.8", lw=0.8)
        ax.text(edge + length / 2, 1.0, name, transform=ax.get_xaxis_transform(), ha="center", va="bottom")
        edge += length
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set_ylabel("lateral deviation (cm)")
    ax.legend(loc="lower right", fontsize=8)
    if adaptation:
        ax2 = fig.add_subplot(2, 1, 2)
        for name, index in adaptation.items():
            index = np.asarray(index, np.float64)
            start = sum(np.asarray(curves[n]).shape[1] for n in names[: names.index(name)])
            ax2.plot(start + np.arange(index.shape[1]), np.nanmean(index, 0), color="tab:purple", label=name)
        if model_x is not None and np.isfinite(model_x).any():
            ax2.plot(model_x, color="0.3", ls="--", lw=1, label="two-state model's adaptation (fitted above)")
        ax2.set_xlim(ax.get_xlim())
        ax2.axhline(0, color="0.6", lw=0.8)
        ax2.set_ylabel("adaptation index")
        ax2.set_xlabel("batch")
        ax2.legend(fontsize=8)
    else:
        ax.set_xlabel("batch")
    fig.suptitle(config.get("env_id", ""))
    return fig


def write_figures(folder: Path, result: dict, snapshots: dict) -> None:
    """All figures of a run into ``folder`` (each written atomically): the savings figures where the
    run measured savings, and :func:`paradigm_figure` for a paradigm run."""
    figures = {"hand_paths.png": hand_paths_figure(snapshots)}
    if result.get("metrics"):
        figures["learning_curves.png"] = learning_curves_figure(result)
        figures["savings_index.png"] = savings_index_figure(result)
    if "paradigm_metrics" in result:
        figures["paradigm.png"] = paradigm_figure(result)
    figures["reach_quality.png"] = reach_quality_figure(result)
    for name, fig in figures.items():
        if fig is not None:
            atomic_write_bytes(folder / name, png(fig))
