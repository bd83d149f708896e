"""Validating one leaderboard submission: read it safely, check it, recompute its metrics.

A submission is a run folder holding the ``result.json`` that ``savings-gym run`` writes (format
``savings-gym-result``, version 1; :data:`~benchmarks.board.schema.SUBMISSION_SCHEMA`). Validation
(:func:`load`) trusts nothing: the schema (checked with ``jsonschema``), a known env id and version, a
known preset with curve lengths that match it, at least :data:`~benchmarks.board.schema.MIN_NETWORKS`
networks, finite curves, and metrics that match the ones recomputed from the raw curves with
:func:`benchmarks.savings.metrics.savings`. Each problem names the file, the field and the reason. A
submission may also hold ``latent/latent.json`` (``savings-gym latent``): its NF2 persistence is
recomputed from the per-network projections and shown as a column. Checks against the entries already
on the board (no duplicates) are :mod:`benchmarks.board.entries`'s; ranking is
:mod:`benchmarks.board.ranking`'s.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

import savings_gym
from benchmarks.board.schema import (
    FIGURE_FILE,
    LATENT_FILE,
    MAX_BYTES,
    MAX_FIGURE_BYTES,
    MAX_LATENT_BYTES,
    RESULT_FILE,
    SUBMISSION_SCHEMA,
    Entry,
    SubmissionError,
    check_text,
    fingerprint,
)
from benchmarks.safe_io import (
    MAX_JSON_DEPTH,
    UnsafeFileError,
    _short,
    parse_json,
    png_problem,
    read_regular,
)
from benchmarks.savings.presets import PHASES, PRESETS, Preset, find_preset
from benchmarks.savings.protocol import RESET_PHASE
from benchmarks.savings.reach import COMPETENCE_MAX_ENDPOINT_ERROR, competent, reach_held
from benchmarks.savings.recompute import check_recomputed, mismatches
from savings_gym.envs import task_overrides, task_params
from savings_gym.schedule import PAPER_BATCH_SIZE, PRACTICE_PHASES


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
    recomputation (:func:`benchmarks.savings.recompute.check_recomputed`); latent/latent.json's persistence
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
    """Whether each network's reach held (:func:`benchmarks.savings.reach.reach_held`), recomputed from the
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
