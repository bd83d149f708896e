"""Rendering the leaderboard: the ranked table as Markdown (README) and as a standalone HTML page with
learning-curve figures. Every submitted string is escaped (:func:`markdown_escape`, ``html.escape``)."""

from __future__ import annotations

import base64
import html
import math
import re
from pathlib import Path

from benchmarks.board.entries import entries
from benchmarks.board.ranking import UNRANKED, rows
from benchmarks.board.schema import (
    MIN_NETWORKS,
    SAFE_LINK,
    SAVINGS_MEASURES,
)
from benchmarks.safe_io import (
    atomic_write_bytes,
)
from benchmarks.savings.reach import (
    COLLAPSE_MIN_ENDPOINT_ERROR,
    COLLAPSE_MIN_PATH_FRACTION,
    COMPETENCE_MAX_ENDPOINT_ERROR,
)

# -- rendering ------------------------------------------------------------------------------------
RANKING_TEXT = (
    "Ranked by the interquartile mean over networks of the early error reduction in FF2 minus that in FF1 "
    "(the fraction of the first error removed in the first sixth of the phase; the most reliable savings "
    "measure on the shipped entries, split-half reliability 0.89), with a 95% bootstrap CI; entries whose "
    f"CIs overlap share a rank (=). Entries with fewer than {MIN_NETWORKS} networks with a value are listed "
    "unranked. The other measures are columns: batches to half the first error (FF1 minus FF2), the ratio of "
    "the areas under the FF2 and FF1 curves (each over its first error; below 1 is savings) and the fitted "
    "savings index log(r_FF2 / r_FF1), whose n (fits) shows how many networks have both fits. Only networks that "
    f"reach count: the competence gate (mean endpoint error of the null-field test reaches before FF1 below "
    f"{COMPETENCE_MAX_ENDPOINT_ERROR * 100:.0f} cm) leaves the others out of every measure, and the competent "
    "column shows k of n (not recorded: a result from before the gate). A learning curve can also fall because "
    "the learner stopped reaching: networks whose test-reach endpoint error, averaged over 10 batches, exceeds "
    f"the larger of twice their null-field error and {COLLAPSE_MIN_ENDPOINT_ERROR * 100:.0f} cm, or whose hand "
    f"travels less than {COLLAPSE_MIN_PATH_FRACTION:.0%} of the reach, in any phase are left out too (reach held: "
    "k of n). Entries are "
    "ranked among those of the same preset, current presets first. A preset marked (retired) is an earlier "
    "definition of it (quick before 2026-12-02 had no NF1 phase, so part of its savings is practice): its "
    "entries are ranked with each other, below the current preset's."
)


COLUMNS = (
    ("rank", "rank"),
    ("name", "entry"),
    ("preset", "preset"),
    ("networks", "n (fits)"),
    ("competent", "competent"),
    ("reach_held", "reach held"),
    ("early_reduction_difference", "early error reduction FF2 - FF1 (IQM, 95% CI)"),
    ("half_error_difference", "batches to half error FF1 - FF2 (IQM, 95% CI)"),
    ("area_ratio", "area ratio FF2 / FF1 (IQM, 95% CI)"),
    ("savings_index", "savings index log(r_FF2/r_FF1) (IQM, 95% CI)"),
    ("fraction_with_savings", "with savings"),
    ("first_error_FF1_cm", "first FF1 error (cm)"),
    ("first_error_FF2_cm", "first FF2 error (cm)"),
    ("rate_FF1", "FF1 rate (IQM)"),
    ("washout_cm", "washout after-effect (cm)"),
    ("persistence_NF2", "NF2 persistence of preparatory shift (95% CI)"),
)


INTERVALS = (*SAVINGS_MEASURES, "persistence_NF2")


_INTERVAL_FORMAT = {"early_reduction_difference": "{:+.3f}", "half_error_difference": "{:+.1f}", "area_ratio": "{:.3f}"}


def _cell(row: dict, key: str) -> str:
    value = row[key]
    if key == "savings_index" and row["fits"] == 1:  # a single value has no interval
        return f"{value[0]:+.2f} (one fit)"
    if key in INTERVALS:
        fmt = _INTERVAL_FORMAT.get(key, "{:+.2f}")
        if not math.isfinite(value[0]):
            return "-"
        return f"{fmt.format(value[0])} [{fmt.format(value[1])}, {fmt.format(value[2])}]"
    if key == "networks":
        return f"{value} ({row['fits']})"
    if key in ("competent", "reach_held"):  # a gate's k of n (results from before it: not recorded)
        return "not recorded" if value is None else f"{value[0]} of {value[1]}"
    if key == "fraction_with_savings":  # a count of the competent fitted networks, never a percentage of one
        return f"{row['with_savings']} of {row['fits']}" if row["fits"] else "-"
    if isinstance(value, float):
        return f"{value:.3f}" if math.isfinite(value) else "-"
    return str(value)


def _sort_key(row: dict, key: str) -> str:
    value = row[key][0] if key in INTERVALS else row[key]
    if key == "rank":  # unranked entries sort after every rank (JavaScript's parseFloat reads "Infinity")
        return "Infinity" if value == UNRANKED else str(int(str(value).rstrip("=")))
    if key in ("competent", "reach_held"):
        return "" if value is None else str(value[0] / value[1])
    return "" if isinstance(value, float) and not math.isfinite(value) else str(value)


# ASCII punctuation but for "-", ",", "/" and ";", which are Markdown syntax only where a table
# cell never puts them (a line's start), so names such as "gru-128" stay readable in the source
_MARKDOWN_SYNTAX = re.compile(r"([!-+.:-@\[-`{-~])")


def markdown_escape(text: str) -> str:
    """``text`` as literal Markdown inside a table cell: ASCII punctuation backslash-escaped (CommonMark
    lets any of it be, and an escaped character is never syntax: no emphasis, code, link, image,
    table pipe, HTML tag or entity, autolink), line breaks as spaces."""
    return _MARKDOWN_SYNTAX.sub(r"\\\1", " ".join(text.splitlines()))


def render_markdown(table: list[dict]) -> str:
    lines = [
        "# Savings leaderboard",
        "",
        f"{RANKING_TEXT} Generated by `savings-gym leaderboard render`.",
        "",
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in table:
        # only the name came from a submission; the other cells are numbers this module formatted
        cells = (markdown_escape(_cell(row, key)) if key == "name" else _cell(row, key) for key, _ in COLUMNS)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _curve_png(result: dict) -> str:
    """FF1 vs FF2 learning curves as a base64 PNG (inline in the page: nothing is fetched)."""
    from benchmarks.savings.figures import learning_curves_figure, png

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
<p>{ranking} Click a column header to sort.</p>
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
        link_html = f'<a href="{esc(link)}">{esc(link)}</a>' if SAFE_LINK.fullmatch(link) else esc(link)
        details.append(
            f'<div class="entry" id="entry-{i}"><h2>{esc(row["name"])}</h2><p>{esc(row["description"])}'
            f'</p><p>{link_html}</p><img alt="FF1 vs FF2 learning curves of {esc(row["name"])}" '
            f'src="data:image/png;base64,{_curve_png(row["entry"].result)}"></div>'
        )
    return _PAGE.format(header=header, body="".join(body), details="".join(details), ranking=html.escape(RANKING_TEXT))


def render(board: str | Path, out: str | Path) -> tuple[Path, Path]:
    """Writes LEADERBOARD.md and index.html for every entry of a board, after validating every entry
    in full (:func:`entries`): a board with an invalid entry is not published.

    Raises:
        SubmissionError: naming each invalid entry; nothing is written.
        ValueError: for a board that is not a folder or an ``out`` that is a file.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out}: expected a folder, found a file")
    table = rows(entries(board))
    atomic_write_bytes(out / "LEADERBOARD.md", render_markdown(table).encode())
    atomic_write_bytes(out / "index.html", render_html(table).encode())
    return out / "LEADERBOARD.md", out / "index.html"
