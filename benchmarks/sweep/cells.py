"""One cell of a sweep (a run at one hidden size, seed and field gain), running it, and the sweep
folder's file names and manifest."""

from __future__ import annotations

import os
import re
import socket
import time
import traceback
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from benchmarks.safe_io import atomic_write_json, read_json
from benchmarks.savings.presets import Preset
from benchmarks.savings.run import run

MANIFEST = "sweep.json"


SUMMARY = "summary.json"


FIGURE = Path("figures") / "savings_vs_hidden.png"


RESULT = "result.json"


LOG = "run.log"


SWEEP_VERSION = 1


RAY_EXTRA = "pip install 'savings-gym[sweep]' (or pip install 'ray>=2.9')"


ERROR_CHARS = 4000  # of a failed attempt's traceback kept in the manifest


@dataclass(frozen=True)
class Cell:
    """One protocol run of a sweep.

    Attributes:
        agent: ``gru``, ``lstm``, ``rnn`` or ``sb3:<Algo>``.
        hidden: recurrent units (None: an SB3 agent's default from its hyperparameters).
        field_gain: curl gain of the FF phases (N*s/m).
        seed: the run's seed.
    """

    agent: str
    hidden: int | None
    field_gain: float
    seed: int

    @property
    def name(self) -> str:
        """The cell's folder: readable, and unique within a sweep."""
        agent = re.sub(r"[^A-Za-z0-9_.-]+", "-", self.agent)
        size = "default" if self.hidden is None else str(self.hidden)
        return f"{agent}_h{size}_k{self.field_gain:g}_s{self.seed}"


@dataclass(frozen=True)
class CellSettings:
    """What every cell of a sweep shares (sent to the workers with each cell)."""

    networks: int
    preset: Preset
    device: str = "cpu"
    threads: int = 1
    checkpoint_seconds: float = 120.0

    def preset_for(self, cell: Cell) -> Preset:
        """The preset with the cell's field gain (its name kept: the config records the gain)."""
        return replace(self.preset, field_gain=float(cell.field_gain))


def run_cell(cell: Cell, settings: CellSettings, folder: str) -> dict[str, Any]:
    """Runs (or resumes) one cell; what a local worker or a Ray task executes.

    The run's output goes to ``folder/run.log`` so that parallel cells do not interleave on the
    terminal.

    Returns:
        ``seconds`` of this attempt and ``files``: relative path -> bytes of the result files
        (the driver writes them where the worker's file system is not the driver's).
    """
    if settings.threads:
        torch.set_num_threads(settings.threads)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with open(out / LOG, "a") as log, redirect_stdout(log), redirect_stderr(log):
        print(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} on {socket.gethostname()}", flush=True)
        try:
            run(
                cell.agent,
                cell.hidden,
                settings.networks,
                settings.preset_for(cell),
                out,
                seed=cell.seed,
                device=settings.device,
                progress=False,
                checkpoint_seconds=settings.checkpoint_seconds,
            )
        except Exception:
            traceback.print_exc()  # into the log as well as back to the driver
            raise
    # what the driver needs to aggregate and report; result.json last, its presence marks a finished cell
    returned = [out / "curves.npz", *sorted((out / "figures").glob("*.png")), out / RESULT]
    files = {str(path.relative_to(out)): path.read_bytes() for path in returned if path.exists()}
    return {"seconds": time.time() - started, "files": files}


# -- the sweep ------------------------------------------------------------------------------------
def _load_manifest(out: Path) -> dict[str, Any]:
    file = out / MANIFEST
    if os.path.lexists(file):
        manifest = read_json(out, MANIFEST)  # bounded, no links: a sweep folder may come from elsewhere
        if isinstance(manifest, dict) and manifest.get("format") == "savings-gym-sweep":
            return manifest
    return {"format": "savings-gym-sweep", "version": SWEEP_VERSION, "cells": {}}


def _save_manifest(out: Path, manifest: dict[str, Any]) -> None:
    counts: dict[str, int] = {}
    for entry in manifest["cells"].values():
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    manifest["counts"] = dict(sorted(counts.items()))
    manifest["updated"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    atomic_write_json(out / MANIFEST, manifest)
