"""A hostile submitter's attempts (issue 16), each built from a real shipped entry in a temporary
folder: every one is refused with a message naming the file and the reason, and the board rendered
afterwards holds only the honest entry."""

import json
import math
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from benchmarks.board import entries, ranking, rendering, schema
from benchmarks.safe_io import atomic_write_json
from benchmarks.savings.metrics import savings
from benchmarks.savings.presets import PRESETS

SHIPPED = Path(__file__).parent.parent / "leaderboard" / "gru-32-20017918"


@pytest.fixture(scope="module")
def board(tmp_path_factory) -> Path:
    """A board holding one honest entry (the shipped gru-32); the cases must not reach it."""
    board = tmp_path_factory.mktemp("board")
    shutil.copytree(SHIPPED, board / SHIPPED.name)
    return board


def _copy(tmp_path: Path, name: str = "run") -> Path:
    folder = tmp_path / name
    shutil.copytree(SHIPPED, folder)
    return folder


def _edit(folder: Path, change, recompute: bool = False) -> Path:
    """Rewrites result.json after ``change``; ``recompute``: with metrics recomputed from the new
    curves, as a careful forger would."""
    result = json.loads((folder / "result.json").read_text())
    change(result)
    if recompute:
        curves = {k: np.asarray(v, np.float64) for k, v in result["learning_curves"].items()}
        result["metrics"] = json.loads(json.dumps(savings(curves)))
    atomic_write_json(folder / "result.json", result)
    return folder


def _refused(folder, board: Path, *reasons: str, submission=None) -> str:
    """Adds ``folder``: it must be refused naming each reason, and leave the board as it was."""
    before = sorted(p.name for p in board.iterdir())
    with pytest.raises(ValueError) as error:
        entries.add(folder, board, submission)
    message = str(error.value)
    assert "\n" not in message and len(message) < 2000, message
    for reason in reasons:
        assert reason in message, message
    assert sorted(p.name for p in board.iterdir()) == before  # nothing half-added
    return message


def _permute(result: dict) -> None:
    order = [3, 0, 7, 1, 6, 2, 5, 4]
    for phase, rows in result["learning_curves"].items():
        result["learning_curves"][phase] = [rows[i] for i in order]


def _as_smoke(result: dict) -> None:
    """The run cut to the smoke preset's lengths: a well-formed run whose numbers mean nothing."""
    smoke = PRESETS["smoke"]
    curves = result["learning_curves"]
    curves["NF1"] = curves["NF2"]
    result["learning_curves"] = {p: [row[:n] for row in curves[p]] for p, n in smoke.batches.items()}
    result["config"]["preset"] = asdict(smoke)


CASES = {
    "a loose file, not its folder": (lambda f: f / "result.json", ["is a file; expected a folder"]),
    "curves nudged by 1e-12": (
        lambda f: _edit(
            f,
            lambda r: r["learning_curves"].update(FF1=[[v + 1e-12 for v in c] for c in r["learning_curves"]["FF1"]]),
            recompute=True,
        ),
        ["duplicates the entry", "8 of 8 networks"],
    ),
    "networks reordered, metrics recomputed": (
        lambda f: _edit(f, _permute, recompute=True),
        ["duplicates the entry", "8 of 8 networks"],
    ),
    "curves scaled by 1 + 1e-9, metrics recomputed": (
        lambda f: _edit(
            f,
            lambda r: r["learning_curves"].update(
                {p: [[v * (1 + 1e-9) for v in row] for row in rows] for p, rows in r["learning_curves"].items()}
            ),
            recompute=True,
        ),
        ["duplicates the entry"],
    ),
    "NF2 omitted": (
        lambda f: _edit(f, lambda r: r["learning_curves"].pop("NF2")),
        ["learning_curves/NF2", "missing: preset 'quick' runs NF2"],
    ),
    "forged washout after-effect": (
        lambda f: _edit(f, lambda r: r["metrics"]["aggregate"]["washout_after_effect"].update(estimate=-0.05)),
        ["metrics/aggregate/washout_after_effect/estimate", "the curves give"],
    ),
    "forged savings index": (
        lambda f: _edit(f, lambda r: r["metrics"]["aggregate"]["savings_index"].update(estimate=9.35)),
        ["metrics/aggregate/savings_index/estimate"],
    ),
    "a smoke-preset run of 8 networks": (lambda f: _edit(f, _as_smoke, recompute=True), ["not for results"]),
    "JSON nested 1000 deep": (
        lambda f: (f / "result.json").write_text("[" * 1000 + "]" * 1000) and f,
        ["result.json", "nested 1000 deep"],
    ),
    "a 20 MB field": (
        lambda f: _edit(f, lambda r: r["config"].update(env_id="x" * 20_000_000)),
        ["config/env_id", "characters)"],
    ),
    "result.json is a folder": (
        lambda f: ((f / "result.json").unlink(), (f / "result.json").mkdir()) and f,
        ["result.json", "is a folder, not a regular file"],
    ),
    "result.json lacks keys": (
        lambda f: _edit(f, lambda r: r.pop("learning_curves")),
        ["(top level)", "'learning_curves' is a required property"],
    ),
    "figure not a PNG": (
        lambda f: (f / "figures" / "learning_curves.png").write_bytes(b"<svg onload=alert(1)>") and f,
        ["learning_curves.png", "not a PNG"],
    ),
    "latent.json over its limit": (
        lambda f: (f / "latent" / "latent.json").write_bytes(b" " * (schema.MAX_LATENT_BYTES + 1)) and f,
        ["latent.json", "over the"],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hostile_submission_is_refused_naming_file_and_reason(tmp_path, board, case):
    make, reasons = CASES[case]
    _refused(make(_copy(tmp_path)), board, *reasons)


def _link(target: str, relative: str):
    def make(folder: Path) -> Path:
        (folder / relative).unlink()
        os.symlink(target, folder / relative)
        return folder

    return make


@pytest.mark.parametrize(
    "target, relative",
    [
        ("/etc/passwd", "figures/learning_curves.png"),
        ("/dev/zero", "figures/learning_curves.png"),
        ("/dev/zero", "result.json"),
        ("/etc/hostname", "latent/latent.json"),
    ],
)
def test_links_are_refused_not_followed(tmp_path, board, target, relative):
    _refused(_link(target, relative)(_copy(tmp_path)), board, relative.split("/")[-1], "symbolic link")


def test_a_linked_folder_is_refused(tmp_path, board):
    folder = _copy(tmp_path)
    shutil.rmtree(folder / "figures")
    os.symlink("/etc", folder / "figures")
    _refused(folder, board, "figures", "symbolic link")


def test_a_fifo_does_not_hang_validation(tmp_path, board):
    folder = _copy(tmp_path)
    (folder / "result.json").unlink()
    os.mkfifo(folder / "result.json")
    _refused(folder, board, "result.json", "is a FIFO")


@pytest.mark.parametrize(
    "name",
    ["evil\rname", "bell\x07", "nul\x00", "\x1b[31mred", "rtl\u202eexe.txt", "two\nlines", "zero\u200bwidth"],
)
def test_control_and_bidi_characters_in_names_are_refused(tmp_path, board, name):
    _refused(_copy(tmp_path), board, "submission/name", "only printable characters", submission={"name": name})
    _refused(
        _copy(tmp_path, "described"),
        board,
        "submission/description",
        submission={"description": name},
    )


def test_render_refuses_a_board_with_a_forged_or_malformed_folder(tmp_path):
    board = tmp_path / "board"
    shutil.copytree(SHIPPED, board / SHIPPED.name)
    forged = _edit(_copy(board, "forged"), lambda r: r["metrics"]["aggregate"]["savings_index"].update(estimate=7.0))
    with pytest.raises(schema.SubmissionError, match=f"{forged}/result.json: metrics/aggregate"):
        rendering.render(board, tmp_path / "site")
    shutil.rmtree(forged)
    _edit(_copy(board, "malformed"), lambda r: r["metrics"].pop("per_network"))
    with pytest.raises(schema.SubmissionError, match="malformed/result.json"):
        rendering.render(board, tmp_path / "site")
    shutil.rmtree(board / "malformed")
    shutil.copytree(SHIPPED, board / "copied-again")  # an exact copy committed straight into the board
    with pytest.raises(schema.SubmissionError, match="duplicates the entry"):
        rendering.render(board, tmp_path / "site")
    assert not (tmp_path / "site").exists()


def test_markdown_and_links_from_a_submission_stay_text(tmp_path, board):
    name = "[click](https://evil.example) ![x](https://evil.example/i.png) # *bold* <b>"
    entry = entries.validate(_copy(tmp_path), None, {"name": name, "link": "http://plain.example"})
    table = ranking.rows([entry])
    markdown = rendering.render_markdown(table)
    assert "\\[click\\]\\(https\\://evil" in markdown and "![" not in markdown and "<b>" not in markdown
    page = rendering.render_html(table)
    assert 'href="http://plain' not in page and "http://plain.example" in page
    entry.result["submission"]["link"] = "https://ok.example/x"
    assert 'href="https://ok.example/x"' in rendering.render_html(ranking.rows([entry]))


def test_after_every_attempt_the_board_renders_only_the_honest_entry(tmp_path, board):
    markdown, _ = rendering.render(board, tmp_path / "site")
    rows = [line for line in markdown.read_text().splitlines() if line.startswith("| ") and "quick" in line]
    assert len(rows) == 1 and "gru-32" in rows[0], rows


def test_an_honest_entry_validates_after_permutation_and_a_1_ulp_change(tmp_path):
    """Another machine may list the networks in another order and round differently: the same run
    must still validate (here: its curves permuted and moved by 1 ulp, metrics recomputed)."""
    folder = _edit(
        _copy(tmp_path),
        lambda r: (
            _permute(r),
            r["learning_curves"].update(
                {p: np.nextafter(np.asarray(rows), math.inf).tolist() for p, rows in r["learning_curves"].items()}
            ),
        ),
        recompute=True,
    )
    honest = json.loads((SHIPPED / "result.json").read_text())
    moved = json.loads((folder / "result.json").read_text())
    assert entries.validate(folder).fits == 8
    # the aggregates are blind to network order: those of the curves alone agree to rounding, the
    # savings index (from Nelder-Mead fits, which stop within 1e-8 in log rate) to 1e-6
    for key, rtol in (("first_error_FF1", 1e-9), ("washout_after_effect", 1e-9), ("savings_index", 1e-6)):
        for bound in ("estimate", "low", "high"):
            shipped, recomputed = (r["metrics"]["aggregate"][key][bound] for r in (honest, moved))
            assert math.isclose(recomputed, shipped, rel_tol=rtol, abs_tol=1e-15), (key, bound)


def test_validate_against_a_missing_board_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="no such folder"):
        entries.validate(_copy(tmp_path), tmp_path / "nowhere")
