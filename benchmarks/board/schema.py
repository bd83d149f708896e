"""What a leaderboard submission is: the result file's JSON Schema (:data:`SUBMISSION_SCHEMA`), the limits
on its files, the savings measures a result holds (and :data:`RANK_MEASURE`, the one that ranks), and
:class:`Entry`, one validated submission.

A submission is a run folder holding the ``result.json`` that ``savings-gym run`` writes (format
``savings-gym-result``, version 1). :mod:`benchmarks.board.validation` checks it against all of this."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.safe_io import (
    MAX_JSON_BYTES,
    text_problem,
)
from benchmarks.savings.presets import PHASES, RESULT_UNITS, find_preset
from benchmarks.savings.protocol import RESET_PHASE
from savings_gym.schedule import PRACTICE_PHASES

RESULT_FILE = "result.json"


LATENT_FILE = "latent/latent.json"


FIGURE_FILE = "figures/learning_curves.png"


MIN_NETWORKS = 5


MAX_BYTES = MAX_JSON_BYTES  # result.json (the paper preset's 8 networks write ~4 MB)


MAX_LATENT_BYTES = 1024 * 1024  # latent/latent.json (a few kB)


MAX_FIGURE_BYTES = 5 * 1024 * 1024  # a PNG figure (~100 kB)


# presets whose numbers are results: ``smoke`` exercises the code and its numbers mean nothing
BOARD_PRESETS = ("quick", "faithful", "rl", "paper")


# a submission's link is shown as a link only when it is an https URL with nothing that could end
# the attribute or the Markdown link it sits in
SAFE_LINK = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~%!$&'*+,;=:@/?#-]*)?")


_number_matrix = {"type": "array", "minItems": 1, "items": {"type": "array", "items": {"type": "number"}}}


_sha256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}


UNITS_BEFORE_UPDATES = {key: text for key, text in RESULT_UNITS.items() if key != "curve_points"} | {
    "rates": "per window of metrics.window batches"
}
"""The ``units`` of result files written before reaches per update (issue 19): one curve point per batch."""


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
                # a learner of one's own: its source file, and the learning rate passed to it (None: not passed)
                "learner": {
                    "type": "object",
                    "required": ["module", "class", "source_sha256"],
                    "properties": {
                        "module": {"type": "string", "minLength": 1},
                        "class": {"type": "string", "minLength": 1},
                        "source_sha256": _sha256,
                        "lr": {"type": ["number", "null"]},
                    },
                },
                "pretrained_sha256": {"anyOf": [_sha256, {"type": "null"}]},
                "preset": {
                    "type": "object",
                    "required": ["name", "batches", "field_gain", "lr"],
                    "properties": {
                        "name": {"type": "string"},
                        "batches": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
                        # absent in files from before it existed: 8 (one batch per update)
                        "reaches_per_update": {"type": "integer", "minimum": 8, "multipleOf": 8},
                    },
                },
            },
        },
        "versions": {"type": "object", "additionalProperties": {"type": "string"}},
        # files since 2026-12-03 say what their numbers are in: lengths in m, as this version writes them
        # (or as it did before reaches per update: rates per window of batches, no curve_points)
        "units": {"enum": [dict(RESULT_UNITS), UNITS_BEFORE_UPDATES]},
        "learning_curves": {
            "type": "object",
            "required": ["FF1", "FF2"],
            "properties": {phase: _number_matrix for phase in (*PHASES, *PRACTICE_PHASES, RESET_PHASE)},
            "additionalProperties": False,
        },
        "reach_curves": {
            "type": "object",
            "properties": {
                phase: {
                    "type": "object",
                    "required": ["endpoint_error", "path_length"],
                    "properties": {"endpoint_error": _number_matrix, "path_length": _number_matrix},
                    "additionalProperties": False,
                }
                for phase in (*PHASES, *PRACTICE_PHASES, RESET_PHASE)
            },
            "additionalProperties": False,
        },
        "metrics": {"type": "object", "required": ["window", "per_network", "aggregate"]},
    },
}


def check_text(text: str, allow_empty: bool = True) -> str:
    """Why a submission string may not be shown ("" if it may): see :func:`benchmarks.safe_io.text_problem`."""
    if not text and not allow_empty:
        return "must not be empty"
    return text_problem(text)


class SubmissionError(ValueError):
    """A submission was rejected; ``problems`` lists (file, field, reason) triples.

    Its message is one line (the CLI prints it as is): every problem, separated by "; ".
    """

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = problems
        super().__init__("submission rejected: " + "; ".join(f"{f}: {field}: {why}" for f, field, why in problems))


@dataclass
class Entry:
    """A validated run folder.

    Attributes:
        path: the folder.
        result: its result.json as submitted (with any submission-block changes of ``add``).
        metrics: the metrics recomputed from the raw curves: what the board and the report show.
        fingerprint: :func:`fingerprint` of the curves (names the entry's folder on the board).
        latent: latent/latent.json, its ``persistence_NF2`` recomputed; None if absent.
        files: relative path -> the exact bytes that were validated (what ``add`` copies).
        refused: read with ``load(..., format_only=True)``: the board's admission rules the run breaks
            (file, field, reason), which :func:`validate` would raise; empty otherwise.
    """

    path: Path
    result: dict
    metrics: dict
    fingerprint: str
    latent: dict | None = None
    files: dict[str, bytes] = field(default_factory=dict)
    refused: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.result["submission"]["name"]

    @property
    def preset(self) -> str:
        return self.result["config"]["preset"]["name"]

    @property
    def fits(self) -> int:
        """Networks with both fits (a finite savings index)."""
        return int(np.isfinite(np.asarray(self.metrics["per_network"]["savings_index"], np.float64)).sum())

    @property
    def competence(self) -> tuple[int, int] | None:
        """(competent networks, networks) by the competence gate; None for a result from before it."""
        block = self.metrics.get("competence")
        return None if block is None else (block["competent"], block["networks"])

    @property
    def reach(self) -> tuple[int, int] | None:
        """(networks whose reach held, networks) (:func:`benchmarks.savings.reach.reach_held`); None for a
        result from before reach quality was recorded."""
        block = self.metrics.get("reach")
        return None if block is None else (block["held"], block["networks"])

    @property
    def with_savings(self) -> int:
        """Competent networks with both fits whose FF2 rate beats their FF1 rate."""
        per = self.metrics["per_network"]
        fitted = np.isfinite(np.asarray(per["savings_index"], np.float64))
        return int((np.asarray(per["has_savings"], bool) & fitted).sum())

    @property
    def retired_preset(self) -> bool:
        """Whether the run used an earlier definition of its preset
        (:data:`benchmarks.savings.presets.RETIRED_PRESETS`)."""
        preset = self.result["config"]["preset"]
        return find_preset(preset["name"], preset["batches"])[1]

    @property
    def measured(self) -> int:
        """Networks with a value of the ranking measure (:data:`RANK_MEASURE`)."""
        return int(np.isfinite(network_values(self.metrics, RANK_MEASURE)).sum())

    @property
    def ranked(self) -> bool:
        """Whether the board ranks the entry: at least :data:`MIN_NETWORKS` networks with a value of
        the ranking measure (a network whose first field error is not positive has none)."""
        return self.measured >= MIN_NETWORKS

    def curves(self) -> dict[str, np.ndarray]:
        """Phase -> (networks, batches) learning curves."""
        return {phase: np.asarray(rows, np.float64) for phase, rows in self.result["learning_curves"].items()}


def fingerprint(result: dict) -> str:
    """A hash of the raw learning curves (exact: :func:`near_duplicates` is the duplicate check)."""
    canonical = json.dumps(result["learning_curves"], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# -- ranking --------------------------------------------------------------------------------------
# Every savings measure the board shows, with the direction in which savings points (+1: higher is
# more savings, -1: lower is); the board ranks by RANK_MEASURE, the most reliable one.
SAVINGS_MEASURES = {
    "savings_index": 1,
    "area_ratio": -1,
    "half_error_difference": 1,
    "early_reduction_difference": 1,
}


# Chosen by split_half_reliability on the shipped entries (benchmarks/RESULTS.md; 2026-12-03, 14
# entries, within-entry correlations averaged over the 13 with 5 or more networks): early reduction
# 0.89, half-error batches 0.84, area ratio 0.80, the fitted savings index 0.28 (2026-12-02, pooled
# over 12 entries: 0.89, 0.85, 0.83, 0.53). tests/test_leaderboard.py recomputes it and fails if
# another measure overtakes.
RANK_MEASURE = "early_reduction_difference"


def network_values(metrics: dict, measure: str) -> np.ndarray:
    """The per-network values of a savings measure (NaN where a network has none) in :func:`savings` metrics."""
    if measure not in SAVINGS_MEASURES:
        raise ValueError(f"measure must be one of {list(SAVINGS_MEASURES)}, got {measure!r}")
    block = metrics["per_network"] if measure == "savings_index" else metrics["fit_free"]["per_network"]
    return np.asarray(block[measure], np.float64)
