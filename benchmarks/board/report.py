"""``savings-gym report FOLDER``: one self-contained HTML page for a single run or a sweep."""

from __future__ import annotations

import base64
import html
import json
import math
import os
from pathlib import Path

from benchmarks.board.schema import MAX_FIGURE_BYTES, RESULT_FILE, Entry
from benchmarks.board.validation import load
from benchmarks.safe_io import atomic_write_bytes, png_problem, read_json, read_regular
from benchmarks.savings.summary import summary_table


def _table(pairs: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in pairs)
    return f"<table>{rows}</table>"


def _flat(prefix: str, value) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [pair for key, v in value.items() for pair in _flat(f"{prefix}{key}." if prefix or key else key, v)]
    text = f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else json.dumps(value)
    return [(prefix.rstrip("."), text)]


def _images(folder: Path, names: tuple[str, ...]) -> list[str]:
    """The figures that exist, inlined (the page needs nothing from the network), each read as
    the leaderboard reads one (:func:`benchmarks.safe_io.read_regular`: no links, a size limit)
    and checked to be a PNG.

    Raises:
        ValueError: naming a figure that is a link, not a regular file, too large or not a PNG.
    """
    images = []
    for name in names:
        try:
            data = read_regular(folder, name, MAX_FIGURE_BYTES)
        except FileNotFoundError:
            continue
        except ValueError as error:
            raise ValueError(f"{folder / name}: {error}") from None
        why = png_problem(data)
        if why:
            raise ValueError(f"{folder / name}: {why}")
        encoded = base64.b64encode(data).decode()
        images.append(f'<img alt="{html.escape(name)}" src="data:image/png;base64,{encoded}">')
    return images


def _latent_section(entry: Entry) -> str:
    """The preparatory-activity results of ``savings-gym latent``, when the run has them."""
    latent = entry.latent
    if latent is None:
        from agents.controllers import CELLS

        if entry.result["config"]["agent"] not in CELLS:  # latent reads the BPTT controllers of phase_ends/
            return (
                "<h2>Preparatory activity</h2><p>not analysed: <code>savings-gym latent</code> analyses the "
                f"project's BPTT networks ({', '.join(CELLS)}), whose saved phase ends hold their recurrent "
                "controllers; this learner's do not</p>"
            )
        return "<h2>Preparatory activity</h2><p>not analysed: run <code>savings-gym latent</code> on this folder</p>"
    kept = latent["persistence_NF2"]
    line = (
        f"NF2 projection on the uniform shift, (x - NF1) / (FF1 - NF1): {kept['estimate']:+.3f} "
        f"[{kept['low']:+.3f}, {kept['high']:+.3f}] (95% bootstrap CI) over {latent['networks']} networks; "
        f"one-sample t = {kept['t']:.2f}, p(> 0) = {kept['p_greater_than_0']:.3g}"
    )
    images = _images(entry.path / "latent", ("tdr_plane.png", "shift_projection.png", "causal_test.png"))
    return f"<h2>Preparatory activity</h2><p>{html.escape(line)}</p>{''.join(images)}"


def write_report(run_dir: str | Path) -> Path:
    """Writes ``report.html`` beside a run's result.json: config, metrics and figures (inlined).

    The run is read and checked as the leaderboard reads a submission (:func:`benchmarks.board.validation.load`),
    and the page shows the metrics recomputed from its curves.

    Raises:
        ValueError: if the folder holds no result.json, or (a :class:`~benchmarks.board.schema.SubmissionError`)
            the run does not validate.
    """
    run_dir = Path(run_dir)
    file = run_dir / RESULT_FILE
    if not os.path.lexists(file) and (run_dir / "sweep.json").is_file():
        return write_sweep_report(run_dir)
    if run_dir.is_dir() and not os.path.lexists(file):
        raise ValueError(
            f"{run_dir} holds no result.json (nor sweep.json): run `savings-gym run ... --out {run_dir}` "
            f"(or `savings-gym sweep ... --out {run_dir}`) first"
        )
    entry = load(run_dir)
    result = {**entry.result, "metrics": entry.metrics}
    aggregate = dict(entry.metrics["aggregate"])
    figures = _images(run_dir / "figures", ("learning_curves.png", "hand_paths.png", "savings_index.png"))
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>savings-gym run {html.escape(str(run_dir.name))}</title>
<style>body {{ font-family: sans-serif; margin: 2em; max-width: 70em; }} th {{ text-align: left; padding-right: 1em; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 2px 6px; }} img {{ max-width: 100%; margin: 1em 0; }}
pre {{ background: #f6f6f6; padding: 1em; }}</style></head><body>
<h1>{html.escape(result["submission"]["name"])}</h1>
<h2>Savings</h2><pre>{html.escape(summary_table(result))}</pre>
<h2>Metrics</h2>{_table(_flat("", aggregate))}
<h2>Figures</h2>{"".join(figures) or "<p>no figures</p>"}
{_latent_section(entry)}
<h2>Config</h2>{_table(_flat("", result["config"]))}
<h2>Versions</h2>{_table(_flat("", result["versions"]))}
</body></html>
"""
    out = run_dir / "report.html"
    atomic_write_bytes(out, page.encode())
    return out


def _grid(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_sweep_report(sweep_dir: str | Path) -> Path:
    """Writes ``report.html`` in a sweep folder: savings per (agent, hidden size, field gain) with
    95% bootstrap CIs (recomputed from the cells' result files, :func:`benchmarks.sweep.summary.aggregate`),
    the savings-vs-size figure and every cell's status, attempts and error."""
    from benchmarks.sweep.cells import MANIFEST
    from benchmarks.sweep.summary import SUMMARY_COLUMNS, aggregate, summary_rows

    sweep_dir = Path(sweep_dir)
    summary = aggregate(sweep_dir)
    manifest = read_json(sweep_dir, MANIFEST)

    cells = [
        [name, e["status"], str(e["attempts"]), f"{e.get('seconds', '')}", e.get("error") or ""]
        for name, e in manifest["cells"].items()
    ]
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>savings-gym sweep {html.escape(sweep_dir.name)}</title>
<style>body {{ font-family: sans-serif; margin: 2em; max-width: 80em; }} th {{ text-align: left; }}
td, th {{ border-bottom: 1px solid #ddd; padding: 2px 6px; }} img {{ max-width: 100%; margin: 1em 0; }}</style>
</head><body>
<h1>Sweep {html.escape(sweep_dir.name)}</h1>
<h2>Savings by network size</h2>
<p>Networks of a group's seeds pooled; means with 95% bootstrap CIs over networks.</p>
{_grid(list(SUMMARY_COLUMNS), summary_rows(summary))}
{"".join(_images(sweep_dir / "figures", ("savings_vs_hidden.png",))) or "<p>no finished cells</p>"}
<h2>Cells</h2>{_grid(["cell", "status", "attempts", "seconds", "error"], cells)}
<h2>Spec</h2>{_table(_flat("", manifest.get("spec", {})))}
</body></html>
"""
    out = sweep_dir / "report.html"
    atomic_write_bytes(out, page.encode())
    return out
