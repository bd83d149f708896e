"""The savings leaderboard: validate submissions, recompute their metrics, rank and render them.

A submission is a run folder holding the ``result.json`` that ``savings-gym run`` writes (format
``savings-gym-result``, version 1; :data:`SUBMISSION_SCHEMA`). Validation trusts nothing: the
schema (checked with ``jsonschema``), a known env id and version, a known preset with curve lengths
that match it, at least :data:`MIN_NETWORKS` networks, finite curves, metrics that match the ones
recomputed from the raw curves with :func:`benchmarks.metrics.savings`, and no duplicate of an
entry already on the board. Each problem names the file, the field and the reason. A submission
may also hold ``latent/latent.json`` (``savings-gym latent``): its NF2 persistence is recomputed
from the per-network projections and shown as a column.

Ranking: the savings index of every network, summarised by its interquartile mean (IQM) with a 95%
bootstrap CI over networks (rliable's recommendation; one task, so the stratified bootstrap is
the plain one, done with scipy: the ``rliable`` package drags in arch, seaborn and pandas). An
entry's rank counts the entries whose CI lies entirely above its own, so entries with
overlapping CIs share a rank (shown as ``2=``). Only entries with at least :data:`MIN_NETWORKS`
networks *with both fits* (a finite savings index) are ranked: a network whose FF1 or FF2 error
does not fall has no learning rate, and an IQM over two or three fits would rank on almost nothing.
The others stay on the board, listed after the ranked ones as ``unranked``, and the ``n (fits)``
column shows every entry's networks and how many of them have both fits.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
from scipy import stats

import savings_gym
from benchmarks.metrics import savings
from benchmarks.protocol import PHASES, PRESETS, atomic_write_bytes, atomic_write_json

RESULT_FILE = "result.json"
LATENT_FILE = "latent/latent.json"
MIN_NETWORKS = 5
MAX_BYTES = 50 * 1024 * 1024
METRIC_RTOL = 1e-6

_number_matrix = {"type": "array", "minItems": 1, "items": {"type": "array", "items": {"type": "number"}}}
SUBMISSION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "savings-gym submission (result.json), version 1",
    "type": "object",
    "required": ["format", "version", "submission", "config", "versions", "learning_curves", "metrics"],
    "properties": {
        "format": {"const": "savings-gym-result"},
        "version": {"const": 1},
        "submission": {
            "type": "object",
            "required": ["name", "description", "link", "code_version"],
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 80},
                "description": {"type": "string", "maxLength": 2000},
                "link": {"type": "string", "maxLength": 500},
                "code_version": {"type": "string", "maxLength": 100},
            },
            "additionalProperties": False,
        },
        "config": {
            "type": "object",
            "required": ["agent", "networks", "seed", "seeds", "env_id", "preset"],
            "properties": {
                "agent": {"type": "string", "minLength": 1, "maxLength": 80},
                "networks": {"type": "integer", "minimum": 1},
                "seed": {"type": "integer"},
                "seeds": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
                "env_id": {"type": "string"},
                "preset": {
                    "type": "object",
                    "required": ["name", "batches", "field_gain", "lr"],
                    "properties": {
                        "name": {"type": "string"},
                        "batches": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
                    },
                },
            },
        },
        "versions": {"type": "object", "additionalProperties": {"type": "string"}},
        "learning_curves": {
            "type": "object",
            "required": ["FF1", "FF2"],
            "properties": {phase: _number_matrix for phase in PHASES},
            "additionalProperties": False,
        },
        "metrics": {"type": "object", "required": ["window", "per_network", "aggregate"]},
    },
}


class SubmissionError(ValueError):
    """A submission was rejected; ``problems`` lists (file, field, reason) triples."""

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = problems
        super().__init__("submission rejected:\n" + "\n".join(f"  {f}: {field}: {why}" for f, field, why in problems))


@dataclass
class Entry:
    """A validated submission."""

    path: Path
    result: dict
    fingerprint: str
    latent: dict | None = None

    @property
    def name(self) -> str:
        return self.result["submission"]["name"]

    @property
    def fits(self) -> int:
        """Networks with both fits (a finite savings index)."""
        return int(np.isfinite(np.asarray(self.result["metrics"]["per_network"]["savings_index"], np.float64)).sum())

    @property
    def ranked(self) -> bool:
        """Whether the board ranks the entry: at least :data:`MIN_NETWORKS` networks with both fits."""
        return self.fits >= MIN_NETWORKS


def fingerprint(result: dict) -> str:
    """A hash of the raw learning curves: two submissions with the same curves are duplicates."""
    canonical = json.dumps(result["learning_curves"], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _result_file(path: str | Path) -> Path:
    path = Path(path)
    return path / RESULT_FILE if path.is_dir() else path


def validate(path: str | Path, board: str | Path | None = None) -> Entry:
    """Checks a submission (a run folder or its result.json) and recomputes its metrics.

    Args:
        path: the submission.
        board: a leaderboard folder whose entries the submission must not duplicate.

    Raises:
        SubmissionError: listing every problem found (file, field, reason).
    """
    file = _result_file(path)
    name = str(file)
    if not file.exists():
        raise SubmissionError([(name, "-", "no such file; a submission is a run folder holding result.json")])
    size = file.stat().st_size
    if size > MAX_BYTES:
        raise SubmissionError([(name, "-", f"{size} bytes is over the {MAX_BYTES}-byte limit")])
    try:
        result = json.loads(file.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SubmissionError([(name, "-", f"not valid JSON ({error})")]) from error
    validator = jsonschema.Draft202012Validator(SUBMISSION_SCHEMA)
    problems = [
        (name, "/".join(str(p) for p in e.absolute_path) or "(top level)", e.message)
        for e in sorted(validator.iter_errors(result), key=lambda e: list(e.absolute_path))
    ]
    if problems:
        raise SubmissionError(problems)
    config = result["config"]
    if config["env_id"] not in savings_gym.ENV_IDS:
        problems.append(
            (
                name,
                "config/env_id",
                f"unknown env id or version {config['env_id']!r}; known: {list(savings_gym.ENV_IDS)}",
            )
        )
    preset = PRESETS.get(config["preset"]["name"])
    if preset is None:
        problems.append(
            (name, "config/preset/name", f"unknown preset {config['preset']['name']!r}; known: {sorted(PRESETS)}")
        )
    elif config["preset"]["batches"] != preset.batches:
        problems.append(
            (
                name,
                "config/preset/batches",
                f"{config['preset']['batches']} differ from preset {preset.name!r}'s {preset.batches}",
            )
        )
    networks = config["networks"]
    if networks < MIN_NETWORKS:
        problems.append(
            (name, "config/networks", f"{networks} networks/seeds; the leaderboard needs at least {MIN_NETWORKS}")
        )
    curves = {}
    for phase, rows in result["learning_curves"].items():
        field = f"learning_curves/{phase}"
        lengths = {len(r) for r in rows}
        if len(rows) != networks:
            problems.append((name, field, f"{len(rows)} curves for {networks} networks"))
        if len(lengths) > 1:
            problems.append((name, field, f"curves of different lengths {sorted(lengths)}"))
            continue
        array = np.asarray(rows, np.float64)
        if not np.isfinite(array).all():
            problems.append((name, field, "holds NaN or inf"))
        if preset is not None and array.shape[1] != preset.batches.get(phase, -1):
            problems.append(
                (name, field, f"{array.shape[1]} batches, preset {preset.name!r} has {preset.batches.get(phase)}")
            )
        curves[phase] = array
    if not problems:
        recomputed = savings(curves)
        mismatch = _first_mismatch(result["metrics"], json.loads(json.dumps(recomputed)), "metrics")
        if mismatch:
            problems.append((name, mismatch[0], f"reported {mismatch[1]!r} but the curves give {mismatch[2]!r}"))
    latent = _validated_latent(file.parent, networks, problems)
    entry = Entry(file.parent, result, fingerprint(result), latent)
    if board is not None and not problems:
        for other in entries(board):
            if other.fingerprint == entry.fingerprint and other.path.resolve() != entry.path.resolve():
                problems.append((name, "learning_curves", f"duplicates the entry in {other.path}"))
    if problems:
        raise SubmissionError(problems)
    return entry


def _validated_latent(folder: Path, networks: int, problems: list[tuple[str, str, str]]) -> dict | None:
    """The submission's preparatory-activity results, if it has them, with the NF2 persistence
    recomputed from the per-network projections (problems are appended, not raised)."""
    from benchmarks.latent import persistence

    file = folder / LATENT_FILE
    if not file.exists():
        return None
    name = str(file)
    try:
        latent = json.loads(file.read_text())
        projections = np.asarray(latent["per_network"]["projection_NF2"], np.float64)
        reported = latent["persistence_NF2"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
        problems.append((name, "per_network/projection_NF2", f"not a savings-gym latent result ({error!r})"))
        return None
    if projections.shape != (networks,) or not np.isfinite(projections).all():
        problems.append(
            (name, "per_network/projection_NF2", f"needs {networks} finite values, got shape {projections.shape}")
        )
        return None
    mismatch = _first_mismatch(reported, json.loads(json.dumps(persistence(projections))), "persistence_NF2")
    if mismatch:
        problems.append((name, mismatch[0], f"reported {mismatch[1]!r} but the projections give {mismatch[2]!r}"))
    return latent


def _first_mismatch(reported: Any, expected: Any, where: str) -> tuple[str, Any, Any] | None:
    """The first field where two JSON trees differ (numbers within a relative 1e-6; NaN equals NaN)."""
    if isinstance(expected, dict):
        if not isinstance(reported, dict):
            return where, reported, expected
        for key in expected:
            found = _first_mismatch(reported.get(key), expected[key], f"{where}/{key}")
            if found:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(reported, list) or len(reported) != len(expected):
            return where, reported, expected
        for i, (r, e) in enumerate(zip(reported, expected, strict=True)):
            found = _first_mismatch(r, e, f"{where}/{i}")
            if found:
                return found
        return None
    if isinstance(expected, float) and isinstance(reported, int | float) and not isinstance(reported, bool):
        if math.isnan(expected) and math.isnan(reported):
            return None
        return (
            None
            if math.isclose(reported, expected, rel_tol=METRIC_RTOL, abs_tol=1e-12)
            else (where, reported, expected)
        )
    return None if reported == expected else (where, reported, expected)


def entries(board: str | Path) -> list[Entry]:
    """Every entry of a leaderboard folder (one sub-folder per entry), validated structurally."""
    board = Path(board)
    found = []
    for file in sorted(board.glob(f"*/{RESULT_FILE}")):
        result = json.loads(file.read_text())
        latent_file = file.parent / LATENT_FILE
        latent = json.loads(latent_file.read_text()) if latent_file.exists() else None
        found.append(Entry(file.parent, result, fingerprint(result), latent))
    return found


def add(path: str | Path, board: str | Path, submission: dict[str, str] | None = None) -> Path:
    """Validates a submission and copies it into the board as a new folder; returns that folder.

    Args:
        path: the submission (a run folder or its result.json).
        board: the leaderboard folder.
        submission: ``name``, ``description`` and/or ``link`` to set in the copy's submission
            block (a run writes its agent as the name and leaves the others empty); checked
            against the schema like the rest.
    """
    entry = validate(path, board)
    if submission:
        result = copy.deepcopy(entry.result)
        result["submission"].update(submission)
        validator = jsonschema.Draft202012Validator(SUBMISSION_SCHEMA["properties"]["submission"])
        problems = [
            (str(entry.path / RESULT_FILE), "/".join(["submission", *map(str, e.absolute_path)]), e.message)
            for e in validator.iter_errors(result["submission"])
        ]
        if problems:
            raise SubmissionError(problems)
        entry = Entry(entry.path, result, entry.fingerprint, entry.latent)
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", entry.name).strip("-")[:40] or "entry"
    target = Path(board) / f"{slug}-{entry.fingerprint[:8]}"
    target.mkdir(parents=True, exist_ok=True)
    if submission:
        atomic_write_json(target / RESULT_FILE, entry.result)
    else:
        atomic_write_bytes(target / RESULT_FILE, (entry.path / RESULT_FILE).read_bytes())
    if entry.latent is not None:
        atomic_write_bytes(target / LATENT_FILE, (entry.path / LATENT_FILE).read_bytes())
    figure = entry.path / "figures" / "learning_curves.png"
    if figure.exists():
        (target / "figures").mkdir(exist_ok=True)
        shutil.copyfile(figure, target / "figures" / "learning_curves.png")
    return target


# -- ranking --------------------------------------------------------------------------------------
def iqm(values: np.ndarray) -> float:
    """Interquartile mean: the mean of the middle 50% (robust to a few outlying seeds)."""
    return float(stats.trim_mean(values, 0.25))


def iqm_ci(values: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """IQM with a 95% percentile-bootstrap CI over seeds (NaNs dropped)."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return math.nan, math.nan, math.nan
    if len(values) < 2 or np.ptp(values) == 0:
        return iqm(values), iqm(values), iqm(values)
    boot = stats.bootstrap(
        (values,),
        lambda x, axis: stats.trim_mean(x, 0.25, axis=axis),
        n_resamples=9999,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    return iqm(values), float(boot.confidence_interval.low), float(boot.confidence_interval.high)


UNRANKED = "unranked"


def rows(board_entries: list[Entry]) -> list[dict]:
    """One row per entry: the ranked ones, best savings index first, then the unranked ones
    (fewer than :data:`MIN_NETWORKS` networks with both fits), also by savings index."""
    table = []
    for entry in board_entries:
        per = entry.result["metrics"]["per_network"]
        agg = entry.result["metrics"]["aggregate"]
        index = iqm_ci(np.asarray(per["savings_index"], np.float64))
        washout = agg.get("washout_after_effect", {}).get("estimate", math.nan)
        kept = entry.latent["persistence_NF2"] if entry.latent else {}
        table.append(
            {
                "name": entry.name,
                "agent": entry.result["config"]["agent"],
                "preset": entry.result["config"]["preset"]["name"],
                "networks": entry.result["config"]["networks"],
                "fits": entry.fits,
                "ranked": entry.ranked,
                "savings_index": index,
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
    table.sort(
        key=lambda r: (not r["ranked"], -r["savings_index"][0] if math.isfinite(r["savings_index"][0]) else math.inf)
    )
    ranked = [row for row in table if row["ranked"]]
    for row in table:
        if not row["ranked"]:
            row["rank"] = UNRANKED
            continue
        better = sum(1 for other in ranked if other["savings_index"][1] > row["savings_index"][2])
        shared = any(other is not row and _overlap(other, row) for other in ranked)
        row["rank"] = f"{better + 1}{'=' if shared else ''}"
    return table


def _overlap(a: dict, b: dict) -> bool:
    (_, lo_a, hi_a), (_, lo_b, hi_b) = a["savings_index"], b["savings_index"]
    return bool(lo_a <= hi_b and lo_b <= hi_a)


# -- rendering ------------------------------------------------------------------------------------
COLUMNS = (
    ("rank", "rank"),
    ("name", "entry"),
    ("preset", "preset"),
    ("networks", "n (fits)"),
    ("savings_index", "savings index (IQM, 95% CI)"),
    ("fraction_with_savings", "with savings"),
    ("first_error_FF1_cm", "first FF1 error (cm)"),
    ("first_error_FF2_cm", "first FF2 error (cm)"),
    ("rate_FF1", "FF1 rate (IQM)"),
    ("washout_cm", "washout after-effect (cm)"),
    ("persistence_NF2", "NF2 persistence of preparatory shift (95% CI)"),
)
INTERVALS = ("savings_index", "persistence_NF2")


def _cell(row: dict, key: str) -> str:
    value = row[key]
    if key == "savings_index" and row["fits"] == 1:  # a single value has no interval
        return f"{value[0]:+.2f} (one fit)"
    if key in INTERVALS:
        return f"{value[0]:+.2f} [{value[1]:+.2f}, {value[2]:+.2f}]" if math.isfinite(value[0]) else "-"
    if key == "networks":
        return f"{value} ({row['fits']})"
    if key == "fraction_with_savings":
        return f"{value * 100:.0f}%" if math.isfinite(value) else "-"
    if isinstance(value, float):
        return f"{value:.3f}" if math.isfinite(value) else "-"
    return str(value)


def _sort_key(row: dict, key: str) -> str:
    value = row[key][0] if key in INTERVALS else row[key]
    if key == "rank":  # unranked entries sort after every rank (JavaScript's parseFloat reads "Infinity")
        return "Infinity" if value == UNRANKED else str(int(str(value).rstrip("=")))
    return "" if isinstance(value, float) and not math.isfinite(value) else str(value)


def _markdown_escape(text: str) -> str:
    return html.escape(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(table: list[dict]) -> str:
    lines = [
        "# Savings leaderboard",
        "",
        "Ranked by the interquartile mean of the per-network savings index log(r_FF2 / r_FF1), with a 95% "
        "bootstrap CI; entries whose CIs overlap share a rank (`=`). Only entries with at least "
        f"{MIN_NETWORKS} networks with both fits (an FF1 and an FF2 learning rate) are ranked; `n (fits)` "
        "shows each entry's networks and how many have both fits. Generated by "
        "`savings-gym leaderboard render`.",
        "",
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in table:
        lines.append("| " + " | ".join(_markdown_escape(_cell(row, key)) for key, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def _curve_png(result: dict) -> str:
    """FF1 vs FF2 learning curves as a base64 PNG (inline in the page: nothing is fetched)."""
    from benchmarks.figures import learning_curves_figure, png

    return base64.b64encode(png(learning_curves_figure(result))).decode()


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>savings-gym leaderboard</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 80em; }}
table {{ border-collapse: collapse; }} th, td {{ padding: 4px 8px; border-bottom: 1px solid #ccc; text-align: left; }}
th {{ cursor: pointer; background: #eee; }} th:hover {{ background: #ddd; }}
.entry {{ margin-top: 2em; }} img {{ max-width: 40em; }}
</style></head><body>
<h1>Savings leaderboard</h1>
<p>Ranked by the interquartile mean of the per-network savings index log(r_FF2 / r_FF1) with a 95% bootstrap
CI; entries whose CIs overlap share a rank (=). Only entries with at least {min_fits} networks with both fits (an FF1
and an FF2 learning rate) are ranked; n (fits) shows each entry's networks and how many have both fits. Click a
column header to sort.</p>
<table id="board"><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>
{details}
<script>
document.querySelectorAll("#board th").forEach(function (th, column) {{
  th.addEventListener("click", function () {{
    var body = document.querySelector("#board tbody");
    var rows = Array.from(body.rows);
    var ascending = th.dataset.order !== "asc";
    rows.sort(function (a, b) {{
      var x = a.cells[column].dataset.key, y = b.cells[column].dataset.key;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
      return ascending ? c : -c;
    }});
    rows.forEach(function (r) {{ body.appendChild(r); }});
    document.querySelectorAll("#board th").forEach(function (h) {{ delete h.dataset.order; }});
    th.dataset.order = ascending ? "asc" : "desc";
  }});
}});
</script></body></html>
"""


def render_html(table: list[dict]) -> str:
    """A self-contained page: sortable table, and per entry its description, link and curves."""
    esc = html.escape
    header = "".join(f"<th>{esc(title)}</th>" for _, title in COLUMNS)
    body, details = [], []
    for i, row in enumerate(table):
        cells = "".join(f'<td data-key="{esc(_sort_key(row, key))}">{esc(_cell(row, key))}</td>' for key, _ in COLUMNS)
        body.append(f"<tr>{cells}</tr>")
        link = row["link"]
        link_html = f'<a href="{esc(link)}">{esc(link)}</a>' if link.startswith(("https://", "http://")) else esc(link)
        details.append(
            f'<div class="entry" id="entry-{i}"><h2>{esc(row["name"])}</h2><p>{esc(row["description"])}'
            f'</p><p>{link_html}</p><img alt="FF1 vs FF2 learning curves of {esc(row["name"])}" '
            f'src="data:image/png;base64,{_curve_png(row["entry"].result)}"></div>'
        )
    return _PAGE.format(header=header, body="".join(body), details="".join(details), min_fits=MIN_NETWORKS)


def render(board: str | Path, out: str | Path) -> tuple[Path, Path]:
    """Writes LEADERBOARD.md and index.html for every entry of a board."""
    table = rows(entries(board))
    out = Path(out)
    atomic_write_bytes(out / "LEADERBOARD.md", render_markdown(table).encode())
    atomic_write_bytes(out / "index.html", render_html(table).encode())
    return out / "LEADERBOARD.md", out / "index.html"
