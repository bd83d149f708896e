"""The leaderboard's entries: reading a board folder's entries, checking a submission against them (no near-duplicate
of an entry already there) and adding one. One submission on its own is checked by
:func:`benchmarks.board.validation.load`."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.board.schema import (
    BOARD_PRESETS,
    MAX_BYTES,
    MIN_NETWORKS,
    RESULT_FILE,
    SUBMISSION_SCHEMA,
    Entry,
    SubmissionError,
)
from benchmarks.board.validation import _parse, _read, _schema_problems, load
from benchmarks.safe_io import (
    atomic_write_bytes,
)
from benchmarks.savings.presets import PHASES

# Two networks are the same network when every phase's curve agrees to these tolerances (m): far
# below the spread of honest runs (different seeds differ by ~1e-3 m per batch) and far above what
# re-serialising, rescaling by 1 + 1e-9 or adding 1e-12 to a curve can change.
DUPLICATE_RTOL = 1e-6


DUPLICATE_ATOL = 1e-9


def _network_vectors(curves: dict[str, np.ndarray]) -> np.ndarray | None:
    """(networks, all batches) per-network curves of every phase side by side, phases in order."""
    parts = [curves[p] for p in PHASES if p in curves and curves[p].size]
    if not parts or len({p.shape[0] for p in parts}) > 1:
        return None
    return np.concatenate(parts, axis=1)


def near_duplicates(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> int:
    """How many networks of ``a`` repeat a network of ``b``, in any order, to within
    :data:`DUPLICATE_RTOL` / :data:`DUPLICATE_ATOL` in every batch of every phase.

    Comparing networks one by one, not a hash of the whole file, makes the check blind to network
    order, to tiny perturbations and to a copy padded with or trimmed of networks.
    """
    if sorted(a) != sorted(b) or any(a[p].shape[1:] != b[p].shape[1:] for p in a):
        return 0
    va, vb = _network_vectors(a), _network_vectors(b)
    if va is None or vb is None:
        return 0
    close = np.isclose(va[:, None, :], vb[None, :, :], rtol=DUPLICATE_RTOL, atol=DUPLICATE_ATOL).all(-1)
    return int(close.any(1).sum())


# -- the board ----------------------------------------------------------------------------------
def board_problems(entry: Entry, others: list[Entry]) -> list[tuple[str, str, str]]:
    """Why a valid run may not go on the board beside ``others`` (empty if it may): a preset not
    meant for results, too few networks, or networks that repeat an entry's."""
    name = str(entry.path / RESULT_FILE)
    problems = []
    if entry.preset not in BOARD_PRESETS:
        problems.append(
            (
                name,
                "config/preset/name",
                f"preset {entry.preset!r} is not for results; the board takes {list(BOARD_PRESETS)}",
            )
        )
    networks = entry.result["config"]["networks"]
    if networks < MIN_NETWORKS:
        problems.append(
            (name, "config/networks", f"{networks} networks/seeds; the leaderboard needs at least {MIN_NETWORKS}")
        )
    mine = entry.curves()
    for other in others:
        repeated = near_duplicates(mine, other.curves())
        if repeated:
            problems.append(
                (
                    name,
                    "learning_curves",
                    f"duplicates the entry in {other.path}: {repeated} of {networks} networks repeat its curves",
                )
            )
    return problems


def _board_folder(board: str | Path, create: bool = False) -> Path:
    """The board folder, which must be a real folder (``create``: made if missing)."""
    board = Path(board)
    if board.is_symlink() or (board.exists() and not board.is_dir()):
        raise ValueError(f"--board {board}: expected a leaderboard folder, found a file or link")
    if not board.exists():
        if not create:
            raise ValueError(f"--board {board}: no such folder (a leaderboard is a folder of entries)")
        board.mkdir(parents=True)
    return board


def entries(board: str | Path) -> list[Entry]:
    """Every entry of a leaderboard folder (one sub-folder per entry), each validated in full.

    Raises:
        ValueError: for a board that is not a folder.
        SubmissionError: naming every entry that is invalid, not a real folder, or repeats another.
    """
    board = _board_folder(board)
    found, problems = [], []
    for child in sorted(board.iterdir()):
        if child.name.startswith("."):  # add's temporary folders; never entries
            continue
        if child.is_symlink() or not child.is_dir():
            problems.append((str(child), "-", "not an entry: a board holds only entry folders"))
            continue
        try:
            entry = load(child)
        except SubmissionError as error:
            problems += error.problems
            continue
        problems += board_problems(entry, found)
        found.append(entry)
    if problems:
        raise SubmissionError(problems)
    return found


def _board_curves(board: Path) -> list[Entry]:
    """The board's entries for the duplicate check of a submission: read by the same safe path, but
    only as far as their curves (a broken entry is :func:`entries`'s and ``render``'s to report)."""
    found = []
    for child in sorted(board.iterdir()):
        if child.name.startswith(".") or child.is_symlink() or not child.is_dir():
            continue
        problems: list = []
        data = _read(child, RESULT_FILE, MAX_BYTES, problems)
        result = None if data is None else _parse(data, str(child), problems)
        if problems or _schema_problems(result, SUBMISSION_SCHEMA, str(child)):
            continue
        found.append(Entry(child, result, {}, ""))
    return found


def validate(path: str | Path, board: str | Path | None = None, submission: dict[str, str] | None = None) -> Entry:
    """Checks a run folder for the board: :func:`load`, then :func:`board_problems` against the
    entries of ``board`` (which must exist) unless it is None.

    Raises:
        SubmissionError: listing every problem found (file, field, reason).
        ValueError: for a board that is not a folder.
    """
    others = [] if board is None else _board_curves(_board_folder(board))
    entry = load(path, submission)
    here = entry.path.resolve()
    problems = board_problems(entry, [o for o in others if o.path.resolve() != here])
    if problems:
        raise SubmissionError(problems)
    return entry


def validate_format(path: str | Path) -> Entry:
    """Checks a run folder's format only, e.g. a smoke run's: :func:`load`'s checks (schema, types,
    units, hashes, curves of the lengths the file records, metrics recomputed), not the board's
    admission rules. ``Entry.refused`` lists those the run breaks (preset, task constants, networks:
    :func:`board_problems` without the duplicate check), which :func:`validate` would raise.

    Raises:
        SubmissionError: listing every format problem found (file, field, reason).
    """
    entry = load(path, format_only=True)
    named = {where for _, where, _ in entry.refused}
    entry.refused += [p for p in board_problems(entry, []) if p[1] not in named]  # one reason per field
    return entry


def add(path: str | Path, board: str | Path, submission: dict[str, str] | None = None) -> Path:
    """Validates a run folder and copies it onto the board as a new entry folder; returns that folder.

    Exactly the validated bytes are written, into a temporary folder inside the board that is
    renamed into place at the end, so a failure leaves nothing behind.

    Args:
        path: the run folder.
        board: the leaderboard folder (made if missing).
        submission: ``name``, ``description`` and/or ``link`` to set in the copy's submission
            block (a run writes its agent as the name and leaves the others empty).
    """
    board = Path(board)
    entry = validate(path, board if os.path.lexists(board) else None, submission)
    board = _board_folder(board, create=True)  # only now: a refused first entry leaves no empty board
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", entry.name).strip("-.")[:40] or "entry"
    target = board / f"{slug}-{entry.fingerprint[:8]}"
    if target.exists():
        raise SubmissionError([(str(entry.path / RESULT_FILE), "-", f"already on the board as {target}")])
    staging = Path(tempfile.mkdtemp(prefix=".adding-", dir=board))
    try:
        for relative, data in entry.files.items():
            atomic_write_bytes(staging / relative, data)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
