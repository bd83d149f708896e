"""Pretrain the template learner from random weights (``ReinforceFromScratch`` of examples/reinforce.py)
in ``ArmReach-v0`` until it passes the competence gate, and plot its curve: the experimenter's loop
around a learner of one's own.

Every ``--check-every`` batches the networks play the protocol's 8 null-field test reaches; a
network passes the gate when their mean endpoint error is below 5 cm
(:func:`benchmarks.savings.reach.competent`, the threshold the protocol applies before FF1). Training stops
when every network passes or ``--batches`` are spent. The training episodes go through
:class:`savings_gym.wrappers.VectorEpisodeLog` (``episodes.csv``, and TensorBoard with
``--tensorboard DIR``), which the learner never sees. Writes, in ``--out``: ``episodes.csv``,
``curve.json`` (the test reaches' endpoint error per network at every check, m), ``curve.png`` and
``weights.pt`` (``{"nets": [state dict of network k]}``, for a learner that starts from them).

    python examples/pretrain_reach.py --networks 2 --batches 2000 --out runs/reinforce-reach
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from agents.interface import ProtocolEnvs  # noqa: E402
from benchmarks.savings.reach import COMPETENCE_MAX_ENDPOINT_ERROR, competent, reach_quality
from examples.reinforce import ReinforceFromScratch  # noqa: E402
from savings_gym.schedule import PAPER_BATCH_SIZE, null_schedule  # noqa: E402
from savings_gym.wrappers import VectorEpisodeLog  # noqa: E402


def pretrain(
    networks: int,
    batches: int,
    check_every: int,
    out: Path,
    seed: int = 0,
    hidden: int = 64,
    lr: float = 0.02,
    noise: float = 0.05,
    tensorboard: Path | None = None,
) -> dict:
    """Trains :class:`examples.reinforce.ReinforceFromScratch` in ``ArmReach-v0`` until every network
    is competent or ``batches`` are spent; writes and returns the curve (see the module docstring)."""
    for name, value, least in (("networks", networks, 1), ("batches", batches, 0), ("check_every", check_every, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"--{name.replace('_', '-')} must be an integer >= {least}, got {value!r}")
    out.mkdir(parents=True, exist_ok=True)
    learner = ReinforceFromScratch(
        ProtocolEnvs(null_schedule(), "ArmReach-v0"), networks, seed=seed, hidden=hidden, lr=lr, noise=noise
    )
    learner.env = VectorEpisodeLog(learner.env, out / "episodes.csv", tensorboard)
    curve: dict = {"batch": [], "endpoint_error": [], "competent": []}
    done = 0
    while True:
        record = learner.evaluate(0.0)
        error = reach_quality(record.hand_position, record.target)["endpoint_error"]
        curve["batch"].append(done)
        curve["endpoint_error"].append(error.tolist())
        curve["competent"].append(competent(error).tolist())
        print(f"batch {done}: endpoint error {', '.join(f'{e * 100:.1f}' for e in error)} cm", flush=True)
        if all(curve["competent"][-1]) or done >= batches:
            break
        for _ in range(min(check_every, batches - done)):
            learner.train(PAPER_BATCH_SIZE)
            done += 1
    learner.env.close()
    torch.save({"nets": [net.state_dict() for net in learner.nets]}, out / "weights.pt")
    curve["criterion_max_endpoint_error_m"] = COMPETENCE_MAX_ENDPOINT_ERROR
    (out / "curve.json").write_text(json.dumps(curve, indent=1))
    plot(curve, out / "episodes.csv", out / "curve.png")
    passed = sum(curve["competent"][-1])
    print(f"{passed} of {networks} networks pass the competence gate after {done} batches; wrote {out}")
    return curve


def plot(curve: dict, episodes: Path, path: Path) -> None:
    """Two panels: the mean training return per batch (from the episode log) and the test reaches'
    endpoint error per network against the gate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(episodes) as handle:
        rows = list(csv.DictReader(handle))
    batch = np.array([int(r["episode"]) // PAPER_BATCH_SIZE for r in rows], int)
    returns = np.array([float(r["return"]) for r in rows])
    sums, counts = np.bincount(batch, returns), np.bincount(batch)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6, 6), sharex=True)
    top.plot(np.flatnonzero(counts), sums[counts > 0] / counts[counts > 0])
    top.set_ylabel("mean training return")
    errors = np.asarray(curve["endpoint_error"]) * 100
    for n in range(errors.shape[1]):
        bottom.plot(curve["batch"], errors[:, n], marker="o", label=f"network {n}")
    bottom.axhline(COMPETENCE_MAX_ENDPOINT_ERROR * 100, color="k", linestyle="--", label="competence gate")
    bottom.set(xlabel="batch (8 episodes per network)", ylabel="test endpoint error (cm)")
    bottom.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--networks", type=int, default=2)
    parser.add_argument("--batches", type=int, default=2000, help="budget (batches of 8 episodes per network)")
    parser.add_argument("--check-every", type=int, default=50, help="batches between test reaches")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.02, help="SGD learning rate")
    parser.add_argument("--noise", type=float, default=0.05, help="std of the exploration noise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tensorboard", type=Path, default=None, help="folder for TensorBoard scalars")
    parser.add_argument("--out", type=Path, default=Path("runs/reinforce-reach"))
    args = parser.parse_args(argv)
    try:
        pretrain(
            args.networks,
            args.batches,
            args.check_every,
            args.out,
            args.seed,
            args.hidden,
            args.lr,
            args.noise,
            args.tensorboard,
        )
    except ValueError as error:
        parser.error(str(error))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
