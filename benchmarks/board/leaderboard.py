"""The savings leaderboard: validate submissions, recompute their metrics, rank and render them.

A submission is a run folder holding the ``result.json`` that ``savings-gym run`` writes (format
``savings-gym-result``, version 1; :data:`SUBMISSION_SCHEMA`). Validation trusts nothing: the
schema (checked with ``jsonschema``), a known env id and version, a known preset with curve lengths
that match it, at least :data:`MIN_NETWORKS` networks, finite curves, metrics that match the ones
recomputed from the raw curves with :func:`benchmarks.savings.metrics.savings`, and no duplicate of an
entry already on the board. Each problem names the file, the field and the reason. A submission
may also hold ``latent/latent.json`` (``savings-gym latent``): its NF2 persistence is recomputed
from the per-network projections and shown as a column.

Ranking: by the most reliable savings measure, :data:`RANK_MEASURE` (chosen by
:func:`split_half_reliability` on the shipped entries: the early error reduction, FF2 minus FF1,
:func:`benchmarks.savings.metrics.fit_free`), of every network, summarised by its interquartile mean (IQM)
with a 95% bootstrap CI over networks (rliable's recommendation; one task, so the stratified
bootstrap is the plain one, done with scipy: the ``rliable`` package drags in arch, seaborn and
pandas). An entry's rank counts the entries whose CI lies entirely on the savings side of its own,
so entries with overlapping CIs share a rank (shown as ``2=``). Only entries with at least
:data:`MIN_NETWORKS` networks with a value of the measure are ranked. The fitted savings index
log(r_FF2 / r_FF1) stays as a column (split-half reliability 0.28 against 0.89: an exponential fit
of 24 windows is ill-conditioned on short or slow curves), with the ``n (fits)`` column showing how
many networks have both fits.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import html
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

import savings_gym
from benchmarks.safe_io import (
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    UnsafeFileError,
    atomic_write_bytes,
    parse_json,
    png_problem,
    read_regular,
    text_problem,
)
from benchmarks.savings.metrics import (
    COLLAPSE_MIN_ENDPOINT_ERROR,
    COLLAPSE_MIN_PATH_FRACTION,
    COMPETENCE_MAX_ENDPOINT_ERROR,
    _short,
    bootstrap_ci,
    check_recomputed,
    competent,
    iqm,
    mismatches,
    reach_held,
)
from benchmarks.savings.protocol import PHASES, PRESETS, RESET_PHASE, RESULT_UNITS, Preset, find_preset
from savings_gym.envs import task_overrides, task_params
from savings_gym.schedule import PAPER_BATCH_SIZE, PRACTICE_PHASES

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
        """(networks whose reach held, networks) (:func:`benchmarks.savings.metrics.reach_held`); None for a
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
        (:data:`benchmarks.savings.protocol.RETIRED_PRESETS`)."""
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


# -- reading a run folder ------------------------------------------------------------------------
def _read(folder: Path, relative: str, limit: int, problems: list, required: bool = True) -> bytes | None:
    """A file of a run folder, read safely; a problem is appended (and None returned) if it is not
    a regular file inside the folder, is over ``limit`` bytes, or (when ``required``) is missing."""
    try:
        return read_regular(folder, relative, limit)
    except FileNotFoundError:
        if required:
            problems.append((str(folder / relative), "-", "no such file; a submission is a run folder holding it"))
    except UnsafeFileError as error:
        problems.append((str(folder / relative), "-", str(error)))
    return None


def _parse(data: bytes, name: str, problems: list) -> Any:
    try:
        return parse_json(data, MAX_JSON_DEPTH)
    except ValueError as error:
        problems.append((name, "-", str(error)))
        return None


def _schema_problems(instance: Any, schema: dict, name: str, prefix: str = "") -> list[tuple[str, str, str]]:
    validator = jsonschema.Draft202012Validator(schema)
    return [
        (
            name,
            "/".join([p for p in (prefix,) if p] + [str(p) for p in e.absolute_path]) or "(top level)",
            _cut(e.message),
        )
        for e in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    ]


def _cut(text: str, limit: int = 200) -> str:
    """A message cut to ``limit`` characters (jsonschema quotes the offending value whole)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def load(path: str | Path, submission: dict[str, str] | None = None, format_only: bool = False) -> Entry:
    """Reads and checks a run folder: the one path by which every command reads a run.

    Checks: the folder and its files are real folders and regular files (no symbolic links, FIFOs
    or devices), read with byte limits (:data:`MAX_BYTES`, :data:`MAX_LATENT_BYTES`,
    :data:`MAX_FIGURE_BYTES`) and a JSON nesting limit; the schema; submission strings
    (:func:`check_text`); a known env id and preset; a curve for every network in every phase the
    preset runs, finite and of the preset's lengths; the reported metrics against their
    recomputation (:func:`benchmarks.savings.metrics.check_recomputed`); latent/latent.json's persistence
    against the projections; figures/learning_curves.png is a PNG. Board rules are
    :func:`board_problems`'s.

    Args:
        path: the run folder.
        submission: ``name``, ``description`` and/or ``link`` replacing those of the submission
            block (``add --name ...``), checked like the rest.
        format_only: the file's format only: what breaks a rule of the board rather than the format
            (a preset the board does not know, e.g. ``--phases``, ``--lr`` or ``--reaches-per-update``,
            whose curves are then checked against the lengths and updates the file records; ``--task``
            constants) goes to
            ``Entry.refused`` instead of raising (:func:`validate_format`).

    Raises:
        SubmissionError: listing every problem found (file, field, reason).
    """
    folder = Path(path)
    name = str(folder / RESULT_FILE)
    problems: list[tuple[str, str, str]] = []
    refused: list[tuple[str, str, str]] = []
    rules = refused if format_only else problems  # where the board's admission rules report
    data = _read(folder, RESULT_FILE, MAX_BYTES, problems)
    result = None if data is None else _parse(data, name, problems)
    if problems:
        raise SubmissionError(problems)
    problems += _schema_problems(result, SUBMISSION_SCHEMA, name)
    if problems:
        raise SubmissionError(problems)
    if submission:
        result = copy.deepcopy(result)
        result["submission"].update(submission)
        problems += _schema_problems(
            result["submission"], SUBMISSION_SCHEMA["properties"]["submission"], name, "submission"
        )
        data = (json.dumps(result, indent=1, allow_nan=True) + "\n").encode()
    for key in ("name", "description", "link", "code_version"):
        why = check_text(result["submission"][key], allow_empty=key != "name")
        if why:
            problems.append((name, f"submission/{key}", why))
    config = result["config"]
    if config["env_id"] not in savings_gym.ENV_IDS:
        problems.append(
            (
                name,
                "config/env_id",
                f"unknown env id or version {_short(config['env_id'])}; known: {list(savings_gym.ENV_IDS)}",
            )
        )
    else:
        rules += _task_problems(config, name)
    reaches = config["preset"].get("reaches_per_update", PAPER_BATCH_SIZE)
    preset, _ = find_preset(config["preset"]["name"], config["preset"]["batches"], reaches)
    if config["preset"]["name"] not in PRESETS:
        rules.append(
            (name, "config/preset/name", f"unknown preset {_short(config['preset']['name'])}; known: {sorted(PRESETS)}")
        )
    elif preset is None:
        current = PRESETS[config["preset"]["name"]]
        if current.batches != config["preset"]["batches"]:
            where, why = "batches", f"{_short(config['preset']['batches'])} differ from preset {current.name!r}'s"
            why += f" {current.batches}"
        else:
            where, why = "reaches_per_update", f"{reaches} differs from preset {current.name!r}'s"
            why += f" {current.reaches_per_update} (absent: 8)"
        rules.append((name, f"config/preset/{where}", why))
    if preset is None and format_only:  # the lengths the file says it ran
        recorded = config["preset"]
        try:
            preset = Preset(str(recorded["name"]), dict(recorded["batches"]), reaches_per_update=reaches)
        except ValueError as error:  # reaches per update that split a phase
            problems.append((name, "config/preset/reaches_per_update", str(error)))
    networks = config["networks"]
    controls = {}
    for key in ("practice_control", "reset_control"):
        controls[key] = config.get(key, False)
        if not isinstance(controls[key], bool):
            problems.append((name, f"config/{key}", f"must be true or false, got {_short(controls[key])}"))
            controls[key] = False
    curves = _checked_curves(result["learning_curves"], preset, networks, name, problems, **controls)
    gate = _checked_competence(result.get("competence"), networks, name, problems)
    held = _checked_reach(result, curves, networks, name, problems)
    metrics: dict = {}
    if not problems:
        metrics, mismatched = check_recomputed(result["metrics"], curves, competence=gate, reach=held)
        problems += [
            (name, where, f"reported {_short(got)} but the curves give {_short(want)}")
            for where, got, want in mismatched
        ]
    files = {RESULT_FILE: data}
    latent = _validated_latent(folder, networks, problems, files)
    figure = _read(folder, FIGURE_FILE, MAX_FIGURE_BYTES, problems, required=False)
    if figure is not None:
        why = png_problem(figure)
        if why:
            problems.append((str(folder / FIGURE_FILE), "-", why))
        files[FIGURE_FILE] = figure
    if problems:
        raise SubmissionError(problems)
    return Entry(folder, result, metrics, fingerprint(result), latent, files, refused)


def _checked_competence(
    given: Any, networks: int, name: str, problems: list[tuple[str, str, str]]
) -> list[bool] | None:
    """The competence gate's flags, recomputed from the reported endpoint errors (the reaches are not
    in the file: their errors are taken on trust like the curves, the flags never are); None for a
    result from before the gate (``competence`` absent or null)."""
    if given is None:
        return None
    where = "competence/per_network"
    per = given.get("per_network") if isinstance(given, dict) else None
    errors = per.get("endpoint_error") if isinstance(per, dict) else None
    if (
        not isinstance(errors, list)
        or len(errors) != networks
        or not all(isinstance(e, int | float) and not isinstance(e, bool) and math.isfinite(e) for e in errors)
    ):
        why = f"must be {networks} finite numbers (m), got {_short(errors)}"
        problems.append((name, f"{where}/endpoint_error", why))
        return None
    flags = [bool(v) for v in competent(np.asarray(errors, np.float64))]
    if per.get("competent") != flags:
        problems.append(
            (
                name,
                f"{where}/competent",
                f"reported {_short(per.get('competent'))} but endpoint errors below "
                f"{COMPETENCE_MAX_ENDPOINT_ERROR} m give {_short(flags)}",
            )
        )
    return flags


def _checked_reach(
    result: dict, curves: dict[str, np.ndarray], networks: int, name: str, problems: list[tuple[str, str, str]]
) -> list[bool] | None:
    """Whether each network's reach held (:func:`benchmarks.savings.metrics.reach_held`), recomputed from the
    file's reach curves (taken on trust like the learning curves; the flags never are) at the env
    id's default reach distance (the board takes no ``--task`` runs); None for a result from before
    reach quality was recorded (``reach_curves`` absent), or with problems appended."""
    given = result.get("reach_curves")
    if given is None:
        return None
    if set(given) != set(curves):
        problems.append((name, "reach_curves", f"phases {sorted(given)} differ from the curves' {sorted(curves)}"))
        return None
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for phase, rows in given.items():
        arrays[phase] = {}
        for key, values in rows.items():
            where = f"reach_curves/{phase}/{key}"
            try:
                array = np.asarray(values, np.float64)
            except (OverflowError, ValueError):
                problems.append((name, where, f"must be {networks} curves of equal length"))
                return None
            if array.shape != curves[phase].shape:
                problems.append((name, where, f"shape {array.shape}, the learning curves' is {curves[phase].shape}"))
                return None
            if not (np.isfinite(array) & (array >= 0)).all():
                problems.append((name, where, "must hold finite distances >= 0 (m)"))
                return None
            arrays[phase][key] = array
    competence = result.get("competence")
    if not isinstance(competence, dict) or any(where.startswith("competence") for _, where, _ in problems):
        problems.append((name, "reach_curves", "need the competence gate's endpoint errors (competence/per_network)"))
        return None
    errors = competence["per_network"]["endpoint_error"]  # checked by _checked_competence
    distance = task_params(result["config"]["env_id"]).reach_distance
    held = [bool(v) for v in reach_held(arrays, np.asarray(errors, np.float64), distance)["held"]]
    block = result.get("reach_held")
    reported = block.get("per_network", {}).get("held") if isinstance(block, dict) else None
    if reported != held:
        why = f"reported {_short(reported)} but the curves give {_short(held)}"
        problems.append((name, "reach_held/per_network/held", why))
    return held


def _task_problems(config: dict, name: str) -> list[tuple[str, str, str]]:
    """Entries compare like with like: a result that records its task constants (files since
    2026-12-02 do) must have run on its env id's defaults, not on ``--task`` overrides."""
    recorded = config.get("task")
    if recorded is None:
        return []
    if not isinstance(recorded, dict):
        return [(name, "config/task", f"must be an object of task constants, got {_short(recorded)}")]
    changed = task_overrides(config["env_id"], recorded)
    if not changed:
        return []
    defaults = dataclasses.asdict(task_params(config["env_id"]))
    first = list(changed.items())[:4]
    shown = ", ".join(f"{key} {_short(value)} (default {defaults.get(key)!r})" for key, value in first)
    return [(name, "config/task", f"the board compares runs on the env's default task; this one changed {shown}")]


def _checked_curves(
    given: dict,
    preset: Any,
    networks: int,
    name: str,
    problems: list[tuple[str, str, str]],
    practice_control: bool = False,
    reset_control: bool = False,
) -> dict[str, np.ndarray]:
    """The learning curves as arrays; problems are appended for a missing phase (every phase the
    preset runs, NF2 always: the washout after-effect is read from it; NFC and FFC exactly when the
    run had the practice control, FFR exactly when it had the reset control), a wrong count of
    networks or batches, ragged or non-finite curves."""
    order = (*PHASES, *PRACTICE_PHASES, RESET_PHASE)
    needed = {"NF2"} | ({p for p, n in preset.batches.items() if n > 0} if preset is not None else set())
    controls = {"practice": (set(PRACTICE_PHASES), practice_control), "reset": ({RESET_PHASE}, reset_control)}
    for control, (phases, had) in controls.items():
        for phase in sorted(phases - set(given) if had else set(), key=order.index):
            problems.append((name, f"learning_curves/{phase}", f"missing: the run had the {control} control"))
        for phase in sorted(phases & set(given) if not had else set(), key=order.index):
            why = f"a {control}-control curve, but config/{control}_control is not true"
            problems.append((name, f"learning_curves/{phase}", why))
    for phase in sorted(needed - set(given), key=order.index):
        problems.append((name, f"learning_curves/{phase}", f"missing: preset {config_name(preset)} runs {phase}"))
    curves = {}
    for phase, rows in given.items():
        where = f"learning_curves/{phase}"
        lengths = {len(r) for r in rows}
        if len(rows) != networks:
            problems.append((name, where, f"{len(rows)} curves for {_short(networks)} networks"))
        if len(lengths) > 1:
            problems.append((name, where, f"curves of different lengths {sorted(lengths)[:5]}"))
            continue
        try:
            array = np.asarray(rows, np.float64).reshape(len(rows), -1)
        except (OverflowError, ValueError):
            problems.append((name, where, "holds a number too large for a float"))
            continue
        if not np.isfinite(array).all():
            problems.append((name, where, "holds NaN or inf"))
        expected = _expected_batches(preset, phase) if preset is not None else array.shape[1]
        if array.shape[1] != expected:
            unit = "batches" if preset is None or preset.reaches_per_update == PAPER_BATCH_SIZE else "updates"
            problems.append((name, where, f"{array.shape[1]} {unit}, preset {config_name(preset)} has {expected}"))
        curves[phase] = array
    return curves


def _expected_batches(preset: Any, phase: str) -> int:
    """Curve points of a phase of the preset's protocol: its batches of 8 reaches, in updates of the
    preset's reaches per update; the practice control's NFC spans NF1 + FF1 + NF2, its FFC and the
    reset control's FFR are FF2's length."""
    null, field = PRACTICE_PHASES
    if phase == null:
        batches = sum(preset.batches.get(p, 0) for p in ("NF1", "FF1", "NF2"))
    else:
        batches = preset.batches.get("FF2" if phase in (field, RESET_PHASE) else phase, 0)
    return batches * PAPER_BATCH_SIZE // preset.reaches_per_update


def config_name(preset: Any) -> str:
    return repr(preset.name) if preset is not None else "(unknown)"


def _validated_latent(folder: Path, networks: int, problems: list, files: dict[str, bytes]) -> dict | None:
    """The submission's preparatory-activity results, if it has them, with the NF2 persistence
    recomputed from the per-network projections (problems are appended, not raised)."""
    from benchmarks.savings.latent import persistence

    name = str(folder / LATENT_FILE)
    data = _read(folder, LATENT_FILE, MAX_LATENT_BYTES, problems, required=False)
    if data is None:
        return None
    latent = _parse(data, name, problems)
    if latent is None:
        return None
    try:
        projections = np.asarray(latent["per_network"]["projection_NF2"], np.float64)
        reported = latent["persistence_NF2"]
    except (KeyError, TypeError, ValueError) as error:
        problems.append((name, "per_network/projection_NF2", f"not a savings-gym latent result ({_short(error)})"))
        return None
    if projections.shape != (networks,) or not np.isfinite(projections).all():
        problems.append(
            (
                name,
                "per_network/projection_NF2",
                f"needs {_short(networks)} finite values, got shape {projections.shape}",
            )
        )
        return None
    recomputed = json.loads(json.dumps(persistence(projections)))
    for where, got, want in mismatches(reported, recomputed, "persistence_NF2")[:1]:
        problems.append((name, where, f"reported {_short(got)} but the projections give {_short(want)}"))
    files[LATENT_FILE] = data
    return {**latent, "persistence_NF2": recomputed}


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
